// What the cpu backend's test files share: seeded inputs and uploading them.
import type { TensorInfo } from '../src/index.js';
import type { CpuBackend } from '../src/backends/cpu/index.js';

/** n values in [-scale, scale) from a 32-bit LCG: the same on every run. */
export function rand(n: number, seed: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = (s / 4294967296 - 0.5) * 2 * scale;
  }
  return a;
}

/** A fresh backend buffer holding `data` (f32, or i32 for an Int32Array). */
export function upload(b: CpuBackend, data: Float32Array | Int32Array, shape: number[]): TensorInfo {
  const dtype = data instanceof Int32Array ? 'i32' : 'f32';
  const buffer = b.alloc(dtype, data.length);
  b.write(buffer, data);
  return { buffer, offset: 0, shape, dtype };
}
