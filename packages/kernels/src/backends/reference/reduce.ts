// Reference kernels for src/ops/reduce.ts.
export {};
