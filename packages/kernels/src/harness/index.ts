// The harness other packages' tests import: `@ibq/kernels/harness`.
export * from './coverage.js';
export * from './parity.js';
export * from './random.js';
export * from './tolerance.js';
export * from './testBackends.js';
