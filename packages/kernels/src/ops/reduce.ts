// Reductions over a contiguous range of axes (sum, mean, max, min, logsumexp), argmax along
// one axis, softmax and log-softmax. Float in, same float dtype out; argmax gives i32.

import { defineOps, type Domain, type OpCase, type OpDef, type ToleranceClass, type VjpContext, type VjpFn } from '../op.js';
import { boolAttr, normAxis, splitAxes } from '../shape.js';
import { type Attrs, OpError, type TensorInfo } from '../types.js';
import { zeros } from './grad.js';

/**
 * Where a reduction works: the axis range [first, last] (empty when last < first), the
 * [outer, reduced, inner] split every kernel iterates, and the output shape with and without
 * the reduced dimensions kept.
 */
export interface ReduceGeometry {
  first: number;
  last: number;
  outer: number;
  reduced: number;
  inner: number;
  keptShape: number[];
  outShape: number[];
}

/**
 * Reads `axes` (default: every axis; [] reduces nothing, so each output is its one input
 * element) and `keepDims` (default false). Axes may be negative and must form a contiguous
 * ascending range after normalisation.
 */
export function reduceGeometry(op: string, shape: readonly number[], attrs: Attrs): ReduceGeometry {
  const rank = shape.length;
  const raw = attrs.axes ?? [...Array(rank).keys()];
  if (!Array.isArray(raw) || raw.some((a) => !Number.isInteger(a))) {
    throw new OpError(op, `attribute 'axes' must be an array of integers, got ${JSON.stringify(raw)}`);
  }
  const axes = raw.map((a: number) => {
    const n = a < 0 ? a + rank : a;
    if (n < 0 || n >= rank) throw new OpError(op, `attribute 'axes': axis ${a} out of range for rank ${rank}`);
    return n;
  });
  for (let i = 1; i < axes.length; i++) {
    if (axes[i] !== axes[i - 1] + 1) {
      throw new OpError(op, `attribute 'axes' must be a contiguous ascending range, got ${JSON.stringify(raw)}`);
    }
  }
  const keepDims = boolAttr(op, attrs, 'keepDims', false);
  const first = axes.length ? axes[0] : 0;
  const last = axes.length ? axes[axes.length - 1] : -1;
  const [outer, reduced, inner] = splitAxes(shape, first, last);
  const inRange = (i: number) => i >= first && i <= last;
  const keptShape = shape.map((d, i) => (inRange(i) ? 1 : d));
  const outShape = keepDims ? keptShape : shape.filter((_d, i) => !inRange(i));
  return { first, last, outer, reduced, inner, keptShape, outShape };
}

/** Reads the single `axis` of argmax / softmax / log_softmax (required; may be negative). */
export function axisAttr(op: string, attrs: Attrs, rank: number): number {
  const a = attrs.axis;
  if (typeof a !== 'number' || !Number.isInteger(a)) throw new OpError(op, `attribute 'axis' must be an integer, got ${String(a)}`);
  if (a < -rank || a >= rank) throw new OpError(op, `attribute 'axis' ${a} out of range for rank ${rank}`);
  return normAxis(op, a, rank);
}

type Ctx = VjpContext;
const run1 = (c: Ctx, op: string, ins: TensorInfo[], attrs?: Attrs) => c.run(op, ins, attrs)[0];

/** dy (and y) viewed with the reduced dimensions kept as 1, ready to broadcast against x. */
function kept(c: Ctx, t: TensorInfo, x: TensorInfo, attrs: Attrs, op: string): TensorInfo {
  return c.reshape(t, reduceGeometry(op, x.shape, attrs).keptShape);
}

const reduceCases = (extra: OpCase[] = []): OpCase[] => [
  { name: 'regular', shapes: [[4, 33]], attrs: { axes: [1] } },
  { name: 'odd', shapes: [[5, 7, 11, 13]], attrs: { axes: [1, 2] } },
  { name: 'odd-keepdims', shapes: [[5, 7, 11, 13]], attrs: { axes: [-2, -1], keepDims: true } },
  { name: 'leading-strided', shapes: [[37, 5, 3]], attrs: { axes: [0] } },
  { name: 'all-axes', shapes: [[6, 5, 4]] },
  { name: 'long-row', shapes: [[3, 4099]], attrs: { axes: [-1] } },
  { name: 'size-1', shapes: [[1, 9, 1]], attrs: { axes: [0], keepDims: true } },
  { name: 'size-1-reduced', shapes: [[4, 1, 6]], attrs: { axes: [1] } },
  { name: 'no-axes', shapes: [[3, 4]], attrs: { axes: [] } },
  { name: 'scalar', shapes: [[]] },
  { name: 'empty-output', shapes: [[0, 3]], attrs: { axes: [1] } },
  ...extra,
];

/** Upper-bound values where exp overflows f32 unless the maximum is subtracted first. */
const LARGE: Domain = { kind: 'uniform', lo: 60, hi: 100 };
/** Small integers: many ties, for the first-index rule and tie-free exactness. */
const TIES: Domain = { kind: 'int', lo: 0, hi: 4 };

interface ReduceSpec {
  name: string;
  doc: string;
  tolerance: ToleranceClass;
  /** Whether a reduction over zero elements is an error (no identity element). */
  needsElements: boolean;
  extraCases?: OpCase[];
  vjp: VjpFn;
  autocast?: OpDef['autocast'];
}

function reduceRow(s: ReduceSpec): OpDef {
  return {
    name: s.name,
    doc: s.doc,
    inputs: [{ name: 'x', kind: 'float' }],
    outputs: ['y'],
    infer: ([x], attrs) => {
      const g = reduceGeometry(s.name, x.shape, attrs);
      if (s.needsElements && g.reduced === 0) {
        throw new OpError(s.name, `cannot reduce over zero elements (axes ${JSON.stringify(attrs.axes ?? 'all')} of [${x.shape}])`);
      }
      return [{ shape: g.outShape, dtype: x.dtype }];
    },
    tolerance: s.tolerance,
    cases: reduceCases(s.extraCases),
    vjp: s.vjp,
    autocast: s.autocast,
  };
}

const REDUCTIONS: ReduceSpec[] = [
  {
    name: 'sum',
    autocast: 'f32',
    doc: 'y = sum of x over `axes` (a contiguous ascending range, negative allowed; default every axis; [] reduces nothing), '
      + 'reduced dimensions dropped unless `keepDims`; a sum over zero elements is 0.',
    tolerance: 'accumulate',
    needsElements: false,
    extraCases: [{ name: 'empty-reduced', shapes: [[3, 0, 4]], attrs: { axes: [1] } }],
    vjp: (c, [x], _o, [dy], attrs) => [run1(c, 'broadcast_to', [kept(c, dy!, x, attrs, 'sum')], { shape: [...x.shape] })],
  },
  {
    name: 'mean',
    autocast: 'f32',
    doc: 'y = mean of x over `axes` (as sum); the mean over zero elements is NaN, as in PyTorch.',
    tolerance: 'accumulate',
    needsElements: false,
    vjp: (c, [x], _o, [dy], attrs) => {
      const { reduced } = reduceGeometry('mean', x.shape, attrs);
      if (reduced === 0) return [zeros(c, dy!, x.shape)];
      const scaled = run1(c, 'scale', [kept(c, dy!, x, attrs, 'mean')], { mul: 1 / reduced, add: 0 });
      return [run1(c, 'broadcast_to', [scaled], { shape: [...x.shape] })];
    },
  },
  {
    name: 'max',
    doc: 'y = maximum of x over `axes` (as sum); NaN if any reduced element is NaN; zero elements is an error. '
      + 'Gradient: dy goes to every element equal to the maximum (each tie gets the full dy).',
    tolerance: 'exact',
    needsElements: true,
    extraCases: [{ name: 'ties', shapes: [[6, 40]], attrs: { axes: [1] }, domains: [TIES], noGrad: true }],
    vjp: (c, [x], [y], [dy], attrs) => {
      const mask = run1(c, 'equal', [x, kept(c, y, x, attrs, 'max')]);
      return [run1(c, 'mul', [mask, kept(c, dy!, x, attrs, 'max')])];
    },
  },
  {
    name: 'min',
    doc: 'y = minimum of x over `axes` (as sum); NaN if any reduced element is NaN; zero elements is an error. '
      + 'Gradient: dy goes to every element equal to the minimum (each tie gets the full dy).',
    tolerance: 'exact',
    needsElements: true,
    extraCases: [{ name: 'ties', shapes: [[6, 40]], attrs: { axes: [1] }, domains: [TIES], noGrad: true }],
    vjp: (c, [x], [y], [dy], attrs) => {
      const mask = run1(c, 'equal', [x, kept(c, y, x, attrs, 'min')]);
      return [run1(c, 'mul', [mask, kept(c, dy!, x, attrs, 'min')])];
    },
  },
  {
    name: 'logsumexp',
    autocast: 'f32',
    doc: 'y = log(sum(exp(x))) over `axes` (as sum), computed as m + log(sum(exp(x - m))) with m the maximum so large inputs '
      + 'do not overflow; over zero elements, or when every element is -inf, y = -inf (as PyTorch); +inf if any element is +inf.',
    tolerance: 'accumulate',
    needsElements: false,
    extraCases: [
      { name: 'large-values', shapes: [[4, 33]], attrs: { axes: [1] }, domains: [LARGE] },
      { name: 'empty-reduced', shapes: [[3, 0, 4]], attrs: { axes: [1] } },
    ],
    vjp: (c, [x], [y], [dy], attrs) => {
      const p = run1(c, 'exp', [run1(c, 'sub', [x, kept(c, y, x, attrs, 'logsumexp')])]);
      return [run1(c, 'mul', [p, kept(c, dy!, x, attrs, 'logsumexp')])];
    },
  },
];

const axisCases: OpCase[] = [
  { name: 'regular', shapes: [[4, 33]], attrs: { axis: 1 } },
  { name: 'odd', shapes: [[5, 7, 11, 13]], attrs: { axis: 2 } },
  { name: 'odd-last', shapes: [[5, 7, 11, 13]], attrs: { axis: -1 } },
  { name: 'leading-strided', shapes: [[37, 5, 3]], attrs: { axis: 0 } },
  { name: 'long-row', shapes: [[3, 4099]], attrs: { axis: -1 } },
  { name: 'size-1', shapes: [[1, 9, 1]], attrs: { axis: -1 } },
  { name: 'large-values', shapes: [[4, 33]], attrs: { axis: 1 }, domains: [LARGE] },
  { name: 'empty', shapes: [[0, 3]], attrs: { axis: 1 } },
  { name: 'empty-axis', shapes: [[3, 0]], attrs: { axis: 1 } },
];

defineOps([
  ...REDUCTIONS.map(reduceRow),
  {
    name: 'argmax',
    doc: 'y = index (i32) of the maximum of x along `axis` (required, negative allowed); the first index among ties, and the '
      + 'first NaN if any (as PyTorch); the axis is dropped unless `keepDims`; an axis of size 0 is an error.',
    inputs: [{ name: 'x', kind: 'float' }],
    outputs: ['indices'],
    infer: ([x], attrs) => {
      const axis = axisAttr('argmax', attrs, x.shape.length);
      const keepDims = boolAttr('argmax', attrs, 'keepDims', false);
      if (x.shape[axis] === 0) throw new OpError('argmax', `cannot take argmax over axis ${axis} of size 0 in [${x.shape}]`);
      const shape = keepDims ? x.shape.map((d, i) => (i === axis ? 1 : d)) : x.shape.filter((_d, i) => i !== axis);
      return [{ shape, dtype: 'i32' }];
    },
    tolerance: 'exact',
    cases: [
      { name: 'regular', shapes: [[4, 33]], attrs: { axis: 1 } },
      { name: 'odd', shapes: [[5, 7, 11, 13]], attrs: { axis: 3 } },
      { name: 'odd-middle', shapes: [[5, 7, 11, 13]], attrs: { axis: 1, keepDims: true } },
      { name: 'ties', shapes: [[6, 40]], attrs: { axis: -1 }, domains: [TIES] },
      { name: 'ties-strided', shapes: [[40, 6]], attrs: { axis: 0 }, domains: [TIES] },
      { name: 'long-row', shapes: [[3, 4099]], attrs: { axis: 1 } },
      { name: 'size-1', shapes: [[1, 9, 1]], attrs: { axis: 2 } },
      { name: 'empty', shapes: [[0, 3]], attrs: { axis: 1 } },
    ],
  },
  {
    name: 'softmax',
    autocast: 'f32',
    doc: 'y = exp(x - m) / sum(exp(x - m)) along `axis` (required, negative allowed), m the maximum along the axis.',
    inputs: [{ name: 'x', kind: 'float' }],
    outputs: ['y'],
    infer: ([x], attrs) => {
      axisAttr('softmax', attrs, x.shape.length);
      return [{ shape: x.shape, dtype: x.dtype }];
    },
    tolerance: 'accumulate',
    cases: axisCases,
    vjp: (c, _i, [y], [dy], attrs) => {
      const axis = axisAttr('softmax', attrs, y.shape.length);
      const s = run1(c, 'sum', [run1(c, 'mul', [dy!, y])], { axes: [axis], keepDims: true });
      return [run1(c, 'mul', [y, run1(c, 'sub', [dy!, s])])];
    },
  },
  {
    name: 'log_softmax',
    autocast: 'f32',
    doc: 'y = x - m - log(sum(exp(x - m))) along `axis` (required, negative allowed), m the maximum along the axis.',
    inputs: [{ name: 'x', kind: 'float' }],
    outputs: ['y'],
    infer: ([x], attrs) => {
      axisAttr('log_softmax', attrs, x.shape.length);
      return [{ shape: x.shape, dtype: x.dtype }];
    },
    tolerance: 'accumulate',
    cases: axisCases,
    vjp: (c, _i, [y], [dy], attrs) => {
      const axis = axisAttr('log_softmax', attrs, y.shape.length);
      const s = run1(c, 'sum', [dy!], { axes: [axis], keepDims: true });
      return [run1(c, 'sub', [dy!, run1(c, 'mul', [run1(c, 'exp', [y]), s])])];
    },
  },
]);
