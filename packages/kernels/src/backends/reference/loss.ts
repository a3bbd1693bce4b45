// Reference kernels for src/ops/loss.ts.
export {};
