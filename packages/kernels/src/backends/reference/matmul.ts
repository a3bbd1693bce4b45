// Reference kernels for src/ops/matmul.ts.
export {};
