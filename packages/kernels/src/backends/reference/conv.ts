// Reference kernels for src/ops/conv.ts.
export {};
