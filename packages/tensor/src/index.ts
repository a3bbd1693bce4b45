// @ibq/tensor: tensors, scopes, autograd, nn modules, optimizers and checkpoint files.
export { Tensor, apply, autocast, backward, dispose, fromInfo, isGradEnabled, keep, noGrad, tidy } from './engine.js';
export * from './ops.js';
export { Generator, type GeneratorState } from './rng.js';
export * from './optim.js';
export * as nn from './nn/index.js';
export * from './io/index.js';
