// Reference kernels for src/ops/layout.ts.
export {};
