// @ibq/ar: the class-conditional autoregressive transformer of IBQ (llama.py's GPT), its
// configs and presets, and the sampler.
export * from './config.js';
export * from './model.js';
export * from './sampler.js';
export * from './streamed.js';
export * from './trainer.js';
