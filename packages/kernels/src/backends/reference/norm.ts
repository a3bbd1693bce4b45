// Reference kernels for src/ops/norm.ts.
export {};
