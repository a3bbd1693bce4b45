// Layout ops: pad, slice, concat, permute, broadcast_to, and the embedding pair gather_rows /
// scatter_add_rows. Each moves elements without arithmetic (scatter_add_rows adds).

import { defineOps, type Domain, type OpCase, type VjpContext } from '../op.js';
import { intArrayAttr, normAxis, numAttr } from '../shape.js';
import { type Attrs, OpError, type TensorInfo } from '../types.js';
import { sumToShape } from './grad.js';

/** `pads` as [before, after] per dimension, non-negative integers, one pair per dim. */
export function padsAttr(shape: readonly number[], attrs: Attrs): [number, number][] {
  const pads = attrs.pads;
  const ok = Array.isArray(pads) && pads.length === shape.length
    && pads.every((p) => Array.isArray(p) && p.length === 2 && p.every((v) => Number.isInteger(v) && v >= 0));
  if (!ok) {
    throw new OpError('pad', `attribute 'pads' must be ${shape.length} pairs [before, after] of non-negative integers (one per dim of [${shape}]), got ${JSON.stringify(pads)}`);
  }
  return (pads as number[][]).map(([b, a]) => [b, a]);
}

/** `begin` and `size` resolved against the input shape (size -1 means up to the end). */
export function sliceAttrs(shape: readonly number[], attrs: Attrs): { begin: number[]; size: number[] } {
  const begin = intArrayAttr('slice', attrs, 'begin');
  const size = intArrayAttr('slice', attrs, 'size');
  if (begin.length !== shape.length) throw new OpError('slice', `attribute 'begin' must have ${shape.length} entries (rank of [${shape}]), got ${JSON.stringify(begin)}`);
  if (size.length !== shape.length) throw new OpError('slice', `attribute 'size' must have ${shape.length} entries (rank of [${shape}]), got ${JSON.stringify(size)}`);
  const resolved = size.map((s, i) => {
    const b = begin[i], d = shape[i];
    if (b < 0 || b > d) throw new OpError('slice', `attribute 'begin'[${i}] = ${b} is outside [0, ${d}] for input [${shape}]`);
    const n = s === -1 ? d - b : s;
    if (n < 0 || b + n > d) throw new OpError('slice', `attribute 'size'[${i}] = ${s} from begin ${b} does not fit dim ${d} of [${shape}]`);
    return n;
  });
  return { begin, size: resolved };
}

/** `perm`: a permutation of 0..rank-1; output dim i is input dim perm[i]. */
export function permAttr(rank: number, attrs: Attrs): number[] {
  const perm = intArrayAttr('permute', attrs, 'perm');
  const seen = new Set(perm);
  if (perm.length !== rank || seen.size !== rank || perm.some((p) => p < 0 || p >= rank)) {
    throw new OpError('permute', `attribute 'perm' must be a permutation of 0..${rank - 1}, got ${JSON.stringify(perm)}`);
  }
  return perm;
}

/** The axis of a concat of tensors with shapes `shapes` (checked to agree off the axis). */
export function concatAxis(shapes: readonly (readonly number[])[], attrs: Attrs): number {
  const rank = shapes[0].length;
  const raw = numAttr('concat', attrs, 'axis');
  if (!Number.isInteger(raw) || raw < -rank || raw >= rank) throw new OpError('concat', `attribute 'axis' ${raw} out of range for rank ${rank}`);
  const axis = normAxis('concat', raw, rank);
  shapes.forEach((s, k) => {
    if (s.length !== rank || s.some((d, i) => i !== axis && d !== shapes[0][i])) {
      throw new OpError('concat', `input ${k} [${s}] does not match input 0 [${shapes[0]}] off axis ${axis}`);
    }
  });
  return axis;
}

/** `shape` for broadcast_to: the numpy broadcast of x to it must be `shape` itself. */
export function broadcastTarget(x: readonly number[], attrs: Attrs): number[] {
  const shape = attrs.shape;
  if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new OpError('broadcast_to', `attribute 'shape' must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  const lead = shape.length - x.length;
  const ok = lead >= 0 && x.every((d, i) => d === 1 || d === shape[lead + i]);
  if (!ok) throw new OpError('broadcast_to', `input [${x}] cannot broadcast to attribute 'shape' [${shape}]`);
  return [...shape];
}

/** `numRows` of scatter_add_rows: a non-negative integer. */
export function numRowsAttr(attrs: Attrs): number {
  const n = attrs.numRows;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) throw new OpError('scatter_add_rows', `attribute 'numRows' must be a non-negative integer, got ${String(n)}`);
  return n;
}

/** Row ids drawn around [0, rows): some out of range on both sides, many repeats. */
const idsAround = (rows: number): Domain => ({ kind: 'int', lo: -2, hi: rows + 2 });

const run1 = (c: VjpContext, op: string, ins: TensorInfo[], attrs: Attrs) => c.run(op, ins, attrs)[0];

const concatCases: OpCase[] = [
  { name: 'regular', shapes: [[4, 3], [4, 5], [4, 1]], attrs: { axis: 1 } },
  { name: 'odd', shapes: [[5, 7, 11, 13], [5, 2, 11, 13]], attrs: { axis: 1 } },
  { name: 'leading', shapes: [[2, 7, 3], [5, 7, 3], [1, 7, 3]], attrs: { axis: 0 } },
  { name: 'negative-axis', shapes: [[3, 2, 5], [3, 2, 4]], attrs: { axis: -1 } },
  { name: 'single', shapes: [[3, 4]], attrs: { axis: 0 } },
  { name: 'size-1', shapes: [[1, 9, 1], [1, 9, 1]], attrs: { axis: 2 } },
  { name: 'empty-member', shapes: [[3, 0], [3, 4], [3, 0]], attrs: { axis: 1 } },
  { name: 'empty', shapes: [[0, 3], [0, 3]], attrs: { axis: 1 } },
];

defineOps([
  {
    name: 'pad',
    doc: 'y = x surrounded by `value` (default 0): dim i grows by pads[i] = [before, after] (non-negative integers, one pair per '
      + 'dim), x occupying y[before_i .. before_i + d_i); an empty x gives a tensor full of `value`.',
    inputs: [{ name: 'x', kind: 'float' }],
    outputs: ['y'],
    infer: ([x], attrs) => {
      const pads = padsAttr(x.shape, attrs);
      numAttr('pad', attrs, 'value', 0);
      return [{ shape: x.shape.map((d, i) => d + pads[i][0] + pads[i][1]), dtype: x.dtype }];
    },
    tolerance: 'exact',
    cases: [
      { name: 'regular', shapes: [[4, 33]], attrs: { pads: [[1, 2], [0, 3]] } },
      { name: 'odd', shapes: [[5, 7, 11, 13]], attrs: { pads: [[0, 0], [1, 1], [2, 0], [0, 3]], value: -1.5 } },
      { name: 'size-1', shapes: [[1, 9, 1]], attrs: { pads: [[2, 1], [0, 0], [1, 1]] } },
      { name: 'no-padding', shapes: [[3, 4]], attrs: { pads: [[0, 0], [0, 0]] } },
      { name: 'scalar', shapes: [[]], attrs: { pads: [] } },
      { name: 'empty-input', shapes: [[0, 3]], attrs: { pads: [[1, 1], [0, 2]], value: 0.5 } },
      { name: 'empty', shapes: [[0, 3]], attrs: { pads: [[0, 0], [1, 0]] } },
    ],
    vjp: (c, [x], _o, [dy], attrs) => {
      const pads = padsAttr(x.shape, attrs);
      return [run1(c, 'slice', [dy!], { begin: pads.map((p) => p[0]), size: [...x.shape] })];
    },
  },
  {
    name: 'slice',
    doc: 'y = x[begin_0 : begin_0 + size_0, ...]: `begin` and `size` have one entry per dim, 0 <= begin <= dim, size -1 means '
      + 'up to the end, otherwise begin + size <= dim (a size of 0 gives an empty tensor).',
    inputs: [{ name: 'x', kind: 'float' }],
    outputs: ['y'],
    infer: ([x], attrs) => [{ shape: sliceAttrs(x.shape, attrs).size, dtype: x.dtype }],
    tolerance: 'exact',
    cases: [
      { name: 'regular', shapes: [[4, 33]], attrs: { begin: [1, 5], size: [2, -1] } },
      { name: 'odd', shapes: [[5, 7, 11, 13]], attrs: { begin: [1, 2, 3, 4], size: [3, 4, 5, 6] } },
      { name: 'whole', shapes: [[3, 4]], attrs: { begin: [0, 0], size: [-1, -1] } },
      { name: 'size-1', shapes: [[1, 9, 1]], attrs: { begin: [0, 8, 0], size: [1, 1, -1] } },
      { name: 'scalar', shapes: [[]], attrs: { begin: [], size: [] } },
      { name: 'empty-result', shapes: [[4, 6]], attrs: { begin: [2, 6], size: [2, 0] } },
      { name: 'empty', shapes: [[0, 3]], attrs: { begin: [0, 1], size: [-1, 2] } },
    ],
    vjp: (c, [x], _o, [dy], attrs) => {
      const { begin, size } = sliceAttrs(x.shape, attrs);
      const pads = x.shape.map((d, i) => [begin[i], d - begin[i] - size[i]]);
      return [run1(c, 'pad', [dy!], { pads, value: 0 })];
    },
  },
  {
    name: 'concat',
    doc: 'y = the inputs (one or more, same rank, equal off `axis`) joined along `axis` (negative allowed), in input order; '
      + 'empty inputs contribute nothing.',
    inputs: [{ name: 'xs', kind: 'float', variadic: true }],
    outputs: ['y'],
    infer: (xs, attrs) => {
      const axis = concatAxis(xs.map((x) => x.shape), attrs);
      const shape = [...xs[0].shape];
      shape[axis] = xs.reduce((n, x) => n + x.shape[axis], 0);
      return [{ shape, dtype: xs[0].dtype }];
    },
    tolerance: 'exact',
    cases: concatCases,
    vjp: (c, xs, _o, [dy], attrs) => {
      const axis = concatAxis(xs.map((x) => x.shape), attrs);
      let start = 0;
      return xs.map((x) => {
        const begin = x.shape.map((_d, i) => (i === axis ? start : 0));
        start += x.shape[axis];
        return run1(c, 'slice', [dy!], { begin, size: [...x.shape] });
      });
    },
  },
  {
    name: 'permute',
    doc: 'y = x with its dims reordered: y.shape[i] = x.shape[perm[i]], y[..., j_i, ...] = x[..., j at dim perm[i], ...]; `perm` is a '
      + 'permutation of 0..rank-1.',
    inputs: [{ name: 'x', kind: 'float' }],
    outputs: ['y'],
    infer: ([x], attrs) => [{ shape: permAttr(x.shape.length, attrs).map((p) => x.shape[p]), dtype: x.dtype }],
    tolerance: 'exact',
    cases: [
      { name: 'regular', shapes: [[4, 33]], attrs: { perm: [1, 0] } },
      { name: 'odd', shapes: [[5, 7, 11, 13]], attrs: { perm: [2, 0, 3, 1] } },
      { name: 'nchw-to-nhwc', shapes: [[2, 3, 5, 4]], attrs: { perm: [0, 2, 3, 1] } },
      { name: 'identity', shapes: [[3, 4, 2]], attrs: { perm: [0, 1, 2] } },
      { name: 'size-1', shapes: [[1, 9, 1]], attrs: { perm: [2, 1, 0] } },
      { name: 'scalar', shapes: [[]], attrs: { perm: [] } },
      { name: 'empty', shapes: [[0, 3, 2]], attrs: { perm: [2, 0, 1] } },
    ],
    vjp: (c, [x], _o, [dy], attrs) => {
      const perm = permAttr(x.shape.length, attrs);
      const inverse = new Array<number>(perm.length);
      perm.forEach((p, i) => (inverse[p] = i));
      return [run1(c, 'permute', [dy!], { perm: inverse })];
    },
  },
  {
    name: 'broadcast_to',
    doc: 'y = x broadcast to `shape` by numpy rules: x is right-aligned, may gain leading dims, and each of its dims equals the '
      + 'target\'s or is 1 (a 1 may become 0).',
    inputs: [{ name: 'x', kind: 'float' }],
    outputs: ['y'],
    infer: ([x], attrs) => {
      return [{ shape: broadcastTarget(x.shape, attrs), dtype: x.dtype }];
    },
    tolerance: 'exact',
    cases: [
      { name: 'regular', shapes: [[4, 1]], attrs: { shape: [4, 33] } },
      { name: 'odd', shapes: [[5, 1, 11, 1]], attrs: { shape: [3, 5, 7, 11, 13] } },
      { name: 'leading', shapes: [[13]], attrs: { shape: [5, 7, 13] } },
      { name: 'from-scalar', shapes: [[]], attrs: { shape: [2, 3] } },
      { name: 'identity', shapes: [[3, 4]], attrs: { shape: [3, 4] } },
      { name: 'size-1', shapes: [[1, 9, 1]], attrs: { shape: [1, 9, 1] } },
      { name: 'to-empty', shapes: [[1, 3]], attrs: { shape: [0, 3] } },
      { name: 'empty', shapes: [[0, 1]], attrs: { shape: [2, 0, 5] } },
    ],
    vjp: (c, [x], _o, [dy]) => [sumToShape(c, dy!, x.shape)],
  },
  {
    name: 'gather_rows',
    doc: 'y[..., :] = table[ids[...], :] for table [V, D] and i32 ids of any shape, giving [...ids, D]; an id outside [0, V) gives '
      + 'a row of zeros (embedding lookup). The gradient of table is scatter_add_rows of dy.',
    inputs: [{ name: 'table', kind: 'float' }, { name: 'ids', kind: 'i32' }],
    outputs: ['y'],
    infer: ([table, ids]) => {
      if (table.shape.length !== 2) throw new OpError('gather_rows', `input 'table' must be [V, D], got [${table.shape}]`);
      return [{ shape: [...ids.shape, table.shape[1]], dtype: table.dtype }];
    },
    tolerance: 'exact',
    cases: [
      { name: 'regular', shapes: [[10, 16], [4, 7]], domains: [undefined, idsAround(10)] },
      { name: 'odd', shapes: [[13, 11], [5, 7, 3]], domains: [undefined, idsAround(13)] },
      { name: 'size-1', shapes: [[1, 1], [1]], domains: [undefined, { kind: 'int', lo: 0, hi: 1 }] },
      { name: 'scalar-id', shapes: [[6, 5], []], domains: [undefined, idsAround(6)] },
      { name: 'all-out-of-range', shapes: [[0, 4], [3]], domains: [undefined, idsAround(0)] },
      { name: 'empty', shapes: [[5, 8], [0]], domains: [undefined, idsAround(5)] },
      { name: 'empty-rows', shapes: [[5, 0], [3]], domains: [undefined, idsAround(5)] },
    ],
    // The rows of an f16 table accumulate in f32 (repeated ids add up many terms, and backends may
    // keep scatter_add_rows f32-only: webgpu's float atomics are 32-bit), then come back as f16.
    vjp: (c, [table, ids], _o, [dy]) => {
      if (table.dtype !== 'f16') return [run1(c, 'scatter_add_rows', [ids, dy!], { numRows: table.shape[0] }), null];
      const sum = run1(c, 'scatter_add_rows', [ids, run1(c, 'cast', [dy!], { dtype: 'f32' })], { numRows: table.shape[0] });
      return [run1(c, 'cast', [sum], { dtype: 'f16' }), null];
    },
  },
  {
    name: 'scatter_add_rows',
    autocast: 'f32',
    doc: 'y [numRows, D] = zeros, then y[ids[...], :] += src[..., :] for every id (i32, any shape; src is [...ids, D]); ids outside '
      + '[0, numRows) are ignored; repeated ids accumulate (in any order: tolerance is accumulate). The gradient of src is gather_rows of dy.',
    inputs: [{ name: 'ids', kind: 'i32' }, { name: 'src', kind: 'float' }],
    outputs: ['y'],
    infer: ([ids, src], attrs) => {
      const numRows = numRowsAttr(attrs);
      const ok = src.shape.length === ids.shape.length + 1 && ids.shape.every((d, i) => d === src.shape[i]);
      if (!ok) throw new OpError('scatter_add_rows', `input 'src' must be [...ids, D] with ids [${ids.shape}], got [${src.shape}]`);
      return [{ shape: [numRows, src.shape[src.shape.length - 1]], dtype: src.dtype }];
    },
    tolerance: 'accumulate',
    cases: [
      { name: 'regular', shapes: [[4, 7], [4, 7, 16]], attrs: { numRows: 10 }, domains: [idsAround(10)] },
      { name: 'odd', shapes: [[5, 7, 3], [5, 7, 3, 11]], attrs: { numRows: 13 }, domains: [idsAround(13)] },
      { name: 'many-repeats', shapes: [[300], [300, 5]], attrs: { numRows: 4 }, domains: [idsAround(4)] },
      { name: 'size-1', shapes: [[1], [1, 1]], attrs: { numRows: 1 }, domains: [{ kind: 'int', lo: 0, hi: 1 }] },
      { name: 'scalar-id', shapes: [[], [5]], attrs: { numRows: 6 }, domains: [idsAround(6)] },
      { name: 'no-ids', shapes: [[0], [0, 8]], attrs: { numRows: 5 } },
      { name: 'empty', shapes: [[3], [3, 4]], attrs: { numRows: 0 }, domains: [idsAround(0)] },
    ],
    vjp: (c, [ids], _o, [dy]) => [null, run1(c, 'gather_rows', [dy!, ids], {})],
  },
]);
