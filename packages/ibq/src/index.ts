// @ibq/ibq: the IBQ tokenizer exactly as the reference, its configs and checkpoints.
export * from './config.js';
export * from './model.js';
export * from './checkpoint.js';
export * from './discriminator.js';
export * from './trainer.js';
export * from './weights.js';
export * from './presets.js';
