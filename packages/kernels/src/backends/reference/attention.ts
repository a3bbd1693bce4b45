// Reference kernels for src/ops/attention.ts.
export {};
