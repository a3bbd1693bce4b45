// Reference kernels for src/ops/quantize.ts.
export {};
