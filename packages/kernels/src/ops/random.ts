// Random ops: uniform, normal and dropout from the counter-based Philox4x32-10 stream.
// The bit-level mapping (key, counter, word, uniform, Box-Muller pairs) is defined in
// src/philox.ts; every backend reproduces it, so a seed gives the same numbers everywhere.

import { defineOps, type OpCase } from '../op.js';
import { MAX_STREAM_INDEX } from '../philox.js';
import { numAttr } from '../shape.js';
import { type Attrs, type DType, OpError, sizeOf } from '../types.js';

/** Reads and checks `seed` and `offset` for a call that draws `count` stream indices. */
export function streamAttrs(op: string, attrs: Attrs, count: number): { seed: number; offset: number } {
  const seed = attrs.seed;
  if (typeof seed !== 'number' || !Number.isInteger(seed) || seed < 0 || seed >= MAX_STREAM_INDEX) {
    throw new OpError(op, `attribute 'seed' must be an integer in [0, 2^53), got ${String(seed)}`);
  }
  const offset = attrs.offset ?? 0;
  if (typeof offset !== 'number' || !Number.isInteger(offset) || offset < 0 || offset + count > MAX_STREAM_INDEX) {
    throw new OpError(op, `attribute 'offset' must be an integer >= 0 with offset + ${count} elements <= 2^53, got ${String(offset)}`);
  }
  return { seed, offset };
}

const OUT_DTYPES: DType[] = ['f32', 'f64'];

/** Reads `shape` and `dtype` of a generator op (no inputs). */
function generatedShape(op: string, attrs: Attrs): { shape: number[]; dtype: DType } {
  const shape = attrs.shape;
  if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new OpError(op, `attribute 'shape' must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  const dtype = (attrs.dtype ?? 'f32') as DType;
  if (!OUT_DTYPES.includes(dtype)) throw new OpError(op, `attribute 'dtype' must be one of ${OUT_DTYPES.join(', ')}, got ${String(dtype)}`);
  return { shape: [...shape], dtype };
}

function finiteAttr(op: string, attrs: Attrs, name: string, dflt: number): number {
  const v = numAttr(op, attrs, name, dflt);
  if (!Number.isFinite(v)) throw new OpError(op, `attribute '${name}' must be finite, got ${v}`);
  return v;
}

// Seeds and offsets that exercise both key words, both counter words and unaligned blocks/pairs.
const BIG_SEED = 2 ** 40 + 12345;
const HIGH_COUNTER_OFFSET = 4 * (2 ** 32 + 1) + 1; // counter (1, 1), starting at word 1

function generatorCases(extra: Attrs): OpCase[] {
  return [
    { name: 'regular', shapes: [], attrs: { ...extra, shape: [4, 33], seed: 42 } },
    { name: 'odd', shapes: [], attrs: { ...extra, shape: [5, 7, 11, 13], seed: BIG_SEED, offset: 3 } },
    { name: 'high-counter', shapes: [], attrs: { ...extra, shape: [3, 7], seed: 7, offset: HIGH_COUNTER_OFFSET } },
    { name: 'size-1', shapes: [], attrs: { ...extra, shape: [1, 9, 1], seed: 1, offset: 5 } },
    { name: 'scalar', shapes: [], attrs: { ...extra, shape: [], seed: 3, offset: 2 } },
    { name: 'empty', shapes: [], attrs: { ...extra, shape: [0, 3], seed: 5 } },
  ];
}

defineOps([
  {
    name: 'random_uniform',
    doc: 'y[i] = low + (high - low) * u(offset + i) for the Philox stream `seed` (src/philox.ts), u in (0, 1); '
      + 'attrs shape, seed (integer in [0, 2^53)), offset (default 0), low (default 0), high (default 1, >= low), dtype (f32 default, or f64). '
      + 'For f32 the affine map is computed in f32 as two separately rounded operations, (high - low) * u then + low, with low and high '
      + 'rounded to f32 first (no fused multiply-add), so every backend gives the same bits.',
    inputs: [],
    outputs: ['y'],
    infer: (_i, attrs) => {
      const { shape, dtype } = generatedShape('random_uniform', attrs);
      streamAttrs('random_uniform', attrs, sizeOf(shape));
      const low = finiteAttr('random_uniform', attrs, 'low', 0);
      const high = finiteAttr('random_uniform', attrs, 'high', 1);
      if (!(low <= high)) throw new OpError('random_uniform', `attribute 'low' (${low}) must not exceed 'high' (${high})`);
      return [{ shape, dtype }];
    },
    tolerance: 'exact',
    cases: [
      ...generatorCases({ low: -2, high: 3 }),
      { name: 'unit-interval', shapes: [], attrs: { shape: [2, 50], seed: 11 } },
    ],
  },
  {
    name: 'random_normal',
    doc: 'y[i] = mean + std * z(offset + i), z the Box-Muller standard normals of the Philox stream `seed` (pairs aligned to even '
      + 'stream indices, src/philox.ts); attrs shape, seed, offset (default 0), mean (default 0), std (default 1, >= 0), dtype (f32 or f64).',
    inputs: [],
    outputs: ['y'],
    infer: (_i, attrs) => {
      const { shape, dtype } = generatedShape('random_normal', attrs);
      streamAttrs('random_normal', attrs, sizeOf(shape));
      finiteAttr('random_normal', attrs, 'mean', 0);
      const std = finiteAttr('random_normal', attrs, 'std', 1);
      if (std < 0) throw new OpError('random_normal', `attribute 'std' must be >= 0, got ${std}`);
      return [{ shape, dtype }];
    },
    tolerance: 'transcendental',
    cases: [
      ...generatorCases({ mean: 0.5, std: 2 }),
      { name: 'standard', shapes: [], attrs: { shape: [2, 51], seed: 11, offset: 1 } },
    ],
  },
  {
    name: 'dropout',
    doc: 'y[i] = x[i] * scale if u(offset + i) >= p (p rounded to f32) else 0, scale = 1/(1-p) rounded to the dtype, u from the Philox '
      + 'stream `seed` (src/philox.ts); p in [0, 1]: p = 0 is the identity, p = 1 gives zeros. attrs p, seed, offset (default 0). '
      + 'The gradient is dropout of dy with the same attrs (the same mask).',
    inputs: [{ name: 'x', kind: 'float' }],
    outputs: ['y'],
    infer: ([x], attrs) => {
      const p = numAttr('dropout', attrs, 'p');
      if (!(p >= 0 && p <= 1)) throw new OpError('dropout', `attribute 'p' must be in [0, 1], got ${p}`);
      streamAttrs('dropout', attrs, sizeOf(x.shape));
      return [{ shape: x.shape, dtype: x.dtype }];
    },
    tolerance: 'elementwise',
    cases: [
      { name: 'regular', shapes: [[4, 33]], attrs: { p: 0.3, seed: 42 } },
      { name: 'odd', shapes: [[5, 7, 11, 13]], attrs: { p: 0.5, seed: BIG_SEED, offset: 7 } },
      { name: 'high-counter', shapes: [[3, 7]], attrs: { p: 0.1, seed: 7, offset: HIGH_COUNTER_OFFSET } },
      { name: 'identity', shapes: [[4, 9]], attrs: { p: 0, seed: 9 } },
      { name: 'all-dropped', shapes: [[4, 9]], attrs: { p: 1, seed: 9 } },
      { name: 'size-1', shapes: [[1, 9, 1]], attrs: { p: 0.25, seed: 1, offset: 2 } },
      { name: 'empty', shapes: [[0, 3]], attrs: { p: 0.5, seed: 5 } },
    ],
    vjp: (ctx, _inputs, _outputs, [dy], attrs) => [ctx.run('dropout', [dy!], attrs)[0]],
  },
]);
