// Reference kernels for src/ops/random.ts.
export {};
