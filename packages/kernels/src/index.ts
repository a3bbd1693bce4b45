// @ibq/kernels: the backend contract, the op table, the kernels and the test harness.
export * from './types.js';
export * from './op.js';
export * from './shape.js';
export { registerKernel, getKernel, kernelsOf, inferOp, runOp, reshapeInfo, observeKernels, type KernelObserver, type RunOptions } from './dispatch.js';
export { ReferenceBackend, RefBuffer } from './backends/reference/index.js';
export * from './backends/index.js';
export { philox4x32, splitWords, uniformOfWord } from './philox.js';
