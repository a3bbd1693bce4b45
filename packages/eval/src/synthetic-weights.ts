// Deterministic synthetic InceptionV3 weights and test images, computed identically here and
// in scripts/inception_synthetic.py (numpy), so the parity tests and the benchmark use the same
// 24M random weights as PyTorch without committing 95 MB: every value is a pure function of
// (tensor key, element index) through 32-bit integer hashing (exact in both languages) and
// one float64 expression rounded to float32.
//
// BatchNorm running statistics are not synthetic: the golden script calibrates them on images
// (so activations stay in a sane range through 94 layers) and the fixture carries them.

import type { HostTensor } from '@ibq/tensor';
import { INCEPTION_CONVS, inceptionStateShapes } from './inception.js';

/** FNV-1a over the key's (ASCII) characters. */
export function fnv1a32(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i) & 0xff;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** The "lowbias32" integer finaliser. */
export function lowbias32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/** n values (2u - 1) * scale + offset rounded to float32, u = element i's 24-bit uniform for `key`. */
export function syntheticValues(key: string, n: number, scale: number, offset = 0): Float32Array {
  const seed = fnv1a32(key);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = (lowbias32((lowbias32(i) + seed) >>> 0) >>> 8) / 16777216;
    out[i] = (2 * u - 1) * scale + offset;
  }
  return out;
}

/** A synthetic image batch: values u in [0, 1) (float) for `key`, NCHW. */
export function syntheticImage(key: string, shape: readonly number[]): Float32Array {
  return syntheticValues(key, shape.reduce((a, b) => a * b, 1), 0.5, 0.5);
}

/**
 * The synthetic state dict in the official key layout. `runningStats` (key -> values) supplies
 * the calibrated BatchNorm statistics; without it they are 0 and 1.
 */
export function syntheticInceptionState(runningStats?: Map<string, Float32Array>): Map<string, HostTensor> {
  const shapes = inceptionStateShapes();
  const out = new Map<string, HostTensor>();
  const fanIn = new Map(INCEPTION_CONVS.map((c) => [`${c.name}.conv.weight`, c.inChannels * c.kernel[0] * c.kernel[1]]));
  for (const [key, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    let data: Float32Array;
    if (key.endsWith('.conv.weight')) data = syntheticValues(key, n, Math.sqrt(3 / fanIn.get(key)!));
    else if (key.endsWith('.bn.weight')) data = syntheticValues(key, n, 0.2, 1);
    else if (key.endsWith('.bn.bias')) data = syntheticValues(key, n, 0.1);
    else if (key === 'fc.weight') data = syntheticValues(key, n, Math.sqrt(3 / 2048));
    else if (key === 'fc.bias') data = syntheticValues(key, n, 0.1);
    else {
      const given = runningStats?.get(key);
      if (given && given.length !== n) throw new Error(`synthetic Inception: running statistic ${key} has ${given.length} values, expected ${n}`);
      data = given ?? new Float32Array(n).fill(key.endsWith('running_var') ? 1 : 0);
    }
    out.set(key, { dtype: 'f32', shape, data });
  }
  return out;
}
