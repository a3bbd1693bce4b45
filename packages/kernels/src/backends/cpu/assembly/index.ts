// The cpu backend's wasm module: every kernel export. Built by `npm run build` (asc, SIMD).
// The module imports one shared memory; the host (main thread) owns all allocation above
// heapBase(), so no kernel allocates.

export * from './elementwise';
export * from './gemm';

/** First byte the host allocator may hand out (after the module's static data). */
export function heapBase(): usize {
  return __heap_base;
}
export * from './resample';
export * from './reduce';
export * from './layout';
export * from './quantize';
export * from './misc';
export * from './random';
export * from './norm';
export * from './attention';
export * from './winograd';
export * from './col2im';
