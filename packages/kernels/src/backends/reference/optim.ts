// Reference kernels for src/ops/optim.ts.
export {};
