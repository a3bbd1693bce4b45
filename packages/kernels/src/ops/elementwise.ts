// Elementwise ops: unary maps, binary ops with numpy broadcasting, where, fill and cast.
// Float in, same float dtype out; comparisons return 1.0 / 0.0 in the input's float dtype.

import { defineOps, type Domain, type OpCase, type OpDef, type ToleranceClass, type VjpFn } from '../op.js';
import { broadcastShapes, numAttr } from '../shape.js';
import { OpError, isFloat, type DType } from '../types.js';
import { scalar, sumToShape, zeros } from './grad.js';

const POSITIVE: Domain = { kind: 'uniform', lo: 0.1, hi: 4 };
const AWAY: Domain = { kind: 'away', lo: 0.05, hi: 2 };

const unaryCases: OpCase[] = [
  { name: 'regular', shapes: [[4, 33]] },
  { name: 'odd', shapes: [[5, 7, 11, 13]] },
  { name: 'size-1', shapes: [[1, 9, 1]] },
  { name: 'scalar', shapes: [[]] },
  { name: 'empty', shapes: [[0, 3]] },
];

interface UnarySpec {
  name: string;
  doc: string;
  domain?: Domain;
  tolerance?: ToleranceClass;
  attrs?: Record<string, number>;
  vjp?: VjpFn;
  autocast?: OpDef['autocast'];
}

function unaryRow(u: UnarySpec): OpDef {
  return {
    name: u.name,
    doc: u.doc,
    inputs: [{ name: 'x', kind: 'float' }],
    outputs: ['y'],
    infer: ([x], attrs) => {
      for (const k of Object.keys(u.attrs ?? {})) numAttr(u.name, attrs, k, u.attrs![k]);
      return [{ shape: x.shape, dtype: x.dtype }];
    },
    domain: u.domain,
    tolerance: u.tolerance ?? 'transcendental',
    cases: u.attrs ? unaryCases.map((c) => ({ ...c, attrs: { ...u.attrs } })) : unaryCases,
    vjp: u.vjp,
    autocast: u.autocast,
  };
}

// Shorthands for rules: each returns a fresh tensor.
type T = Parameters<VjpFn>[1][number];
const r1 = (ctx: Parameters<VjpFn>[0], op: string, ins: T[], attrs?: Record<string, unknown>) => ctx.run(op, ins, attrs)[0];

/** Unary ops and their scalar semantics (what every backend must compute). */
export const UNARY_OPS: UnarySpec[] = [
  { name: 'neg', doc: 'y = -x', tolerance: 'exact', vjp: (c, _i, _o, [dy]) => [r1(c, 'neg', [dy!])] },
  { name: 'abs', doc: 'y = |x|', tolerance: 'exact', domain: AWAY, vjp: (c, [x], _o, [dy]) => [r1(c, 'mul', [dy!, r1(c, 'sign', [x])])] },
  { name: 'sign', doc: 'y = -1, 0 or 1 by the sign of x (0 for 0)', tolerance: 'exact', domain: AWAY },
  { name: 'step', doc: 'y = 1 if x > 0 else 0', tolerance: 'exact', domain: AWAY },
  { name: 'exp', autocast: 'f32', doc: 'y = e^x', vjp: (c, _i, [y], [dy]) => [r1(c, 'mul', [dy!, y])] },
  { name: 'log', autocast: 'f32', doc: 'y = ln x (NaN for x < 0, -inf at 0)', domain: POSITIVE, vjp: (c, [x], _o, [dy]) => [r1(c, 'div', [dy!, x])] },
  { name: 'sqrt', doc: 'y = sqrt(x)', domain: POSITIVE, vjp: (c, _i, [y], [dy]) => [r1(c, 'div', [r1(c, 'scale', [dy!], { mul: 0.5, add: 0 }), y])] },
  {
    name: 'rsqrt', autocast: 'f32', doc: 'y = 1/sqrt(x)', domain: POSITIVE,
    vjp: (c, _i, [y], [dy]) => [r1(c, 'mul', [dy!, r1(c, 'scale', [r1(c, 'pow_scalar', [y], { exponent: 3 })], { mul: -0.5, add: 0 })])],
  },
  { name: 'square', doc: 'y = x*x', tolerance: 'elementwise', vjp: (c, [x], _o, [dy]) => [r1(c, 'mul', [dy!, r1(c, 'scale', [x], { mul: 2, add: 0 })])] },
  { name: 'reciprocal', autocast: 'f32', doc: 'y = 1/x', domain: { kind: 'away', lo: 0.2, hi: 4 }, tolerance: 'elementwise', vjp: (c, _i, [y], [dy]) => [r1(c, 'neg', [r1(c, 'mul', [dy!, r1(c, 'square', [y])])])] },
  { name: 'sin', doc: 'y = sin x', vjp: (c, [x], _o, [dy]) => [r1(c, 'mul', [dy!, r1(c, 'cos', [x])])] },
  { name: 'cos', doc: 'y = cos x', vjp: (c, [x], _o, [dy]) => [r1(c, 'neg', [r1(c, 'mul', [dy!, r1(c, 'sin', [x])])])] },
  { name: 'tanh', doc: 'y = tanh x', vjp: (c, _i, [y], [dy]) => [r1(c, 'mul', [dy!, r1(c, 'scale', [r1(c, 'square', [y])], { mul: -1, add: 1 })])] },
  { name: 'sigmoid', doc: 'y = 1/(1+e^-x)', vjp: (c, _i, [y], [dy]) => [r1(c, 'mul', [dy!, r1(c, 'mul', [y, r1(c, 'scale', [y], { mul: -1, add: 1 })])])] },
  { name: 'erf', doc: 'y = erf(x)', vjp: (c, [x], _o, [dy]) => [r1(c, 'mul', [dy!, r1(c, 'scale', [r1(c, 'exp', [r1(c, 'scale', [r1(c, 'square', [x])], { mul: -1, add: 0 })])], { mul: 2 / Math.sqrt(Math.PI), add: 0 })])] },
  { name: 'relu', doc: 'y = max(x, 0)', tolerance: 'exact', domain: AWAY, vjp: (c, [x], _o, [dy]) => [r1(c, 'mul', [dy!, r1(c, 'step', [x])])] },
  {
    name: 'leaky_relu', doc: 'y = x if x > 0 else alpha*x', tolerance: 'elementwise', domain: AWAY, attrs: { alpha: 0.2 },
    vjp: (c, [x], _o, [dy], a) => {
      const alpha = a.alpha as number;
      return [r1(c, 'mul', [dy!, r1(c, 'scale', [r1(c, 'step', [x])], { mul: 1 - alpha, add: alpha })])];
    },
  },
  {
    name: 'silu', doc: 'y = x*sigmoid(x) (swish)',
    // One fused pass: the decoder and encoder run SiLU after every GroupNorm.
    vjp: (c, [x], _o, [dy]) => [r1(c, 'silu_grad', [x, dy!])],
  },
  {
    name: 'gelu', doc: 'y = x*Phi(x) = 0.5*x*(1+erf(x/sqrt(2))) (exact, PyTorch\'s default)',
    vjp: (c, [x], _o, [dy]) => {
      const phiCdf = r1(c, 'scale', [r1(c, 'erf', [r1(c, 'scale', [x], { mul: Math.SQRT1_2, add: 0 })])], { mul: 0.5, add: 0.5 });
      const pdf = r1(c, 'scale', [r1(c, 'exp', [r1(c, 'scale', [r1(c, 'square', [x])], { mul: -0.5, add: 0 })])], { mul: 1 / Math.sqrt(2 * Math.PI), add: 0 });
      return [r1(c, 'mul', [dy!, r1(c, 'add', [phiCdf, r1(c, 'mul', [x, pdf])])])];
    },
  },
  { name: 'softplus', autocast: 'f32', doc: 'y = log(1+e^x), and y = x for x > 20 (PyTorch\'s threshold)', vjp: (c, [x], _o, [dy]) => [r1(c, 'mul', [dy!, r1(c, 'sigmoid', [x])])] },
  {
    name: 'scale', doc: 'y = x*mul + add', tolerance: 'elementwise', attrs: { mul: 1.5, add: -0.25 },
    vjp: (c, _i, _o, [dy], a) => [r1(c, 'scale', [dy!], { mul: a.mul as number, add: 0 })],
  },
  {
    name: 'pow_scalar', autocast: 'f32', doc: 'y = x^exponent', domain: POSITIVE, attrs: { exponent: 2.5 },
    vjp: (c, [x], _o, [dy], a) => {
      const p = a.exponent as number;
      return [r1(c, 'mul', [dy!, r1(c, 'scale', [r1(c, 'pow_scalar', [x], { exponent: p - 1 })], { mul: p, add: 0 })])];
    },
  },
  {
    name: 'clamp', doc: 'y = min(max(x, min), max)', tolerance: 'exact', attrs: { min: -1, max: 1 },
    vjp: (c, [x], _o, [dy], a) => {
      const inside = r1(c, 'mul', [
        r1(c, 'greater_equal', [x, scalar(c, x, a.min as number)]),
        r1(c, 'less_equal', [x, scalar(c, x, a.max as number)]),
      ]);
      return [r1(c, 'mul', [dy!, inside])];
    },
  },
];

const binaryCases: OpCase[] = [
  { name: 'regular', shapes: [[4, 33], [4, 33]] },
  { name: 'odd', shapes: [[5, 7, 11, 13], [5, 7, 11, 13]] },
  { name: 'broadcast', shapes: [[5, 1, 11, 1], [7, 1, 13]] },
  { name: 'scalar', shapes: [[3, 4], []] },
  { name: 'size-1', shapes: [[1, 9, 1], [1, 9, 1]] },
  { name: 'empty', shapes: [[0, 3], [3]] },
];

interface BinarySpec {
  name: string;
  doc: string;
  domain?: Domain | Domain[];
  tolerance?: ToleranceClass;
  /** Gradients for a and b before reduction to their shapes. */
  grad?: (c: Parameters<VjpFn>[0], a: T, b: T, y: T, dy: T) => [T | null, T | null];
  autocast?: OpDef['autocast'];
}

function binaryRow(s: BinarySpec): OpDef {
  const vjp: VjpFn | undefined = s.grad
    ? (c, [a, b], [y], [dy]) => {
        const [ga, gb] = s.grad!(c, a, b, y, dy!);
        return [ga ? sumToShape(c, ga, a.shape) : null, gb ? sumToShape(c, gb, b.shape) : null];
      }
    : undefined;
  return {
    name: s.name,
    doc: s.doc,
    inputs: [{ name: 'a', kind: 'float' }, { name: 'b', kind: 'float' }],
    outputs: ['y'],
    infer: ([a, b]) => [{ shape: broadcastShapes(s.name, a.shape, b.shape), dtype: a.dtype }],
    domain: s.domain,
    tolerance: s.tolerance ?? 'elementwise',
    cases: binaryCases,
    vjp,
    autocast: s.autocast,
  };
}

export const BINARY_OPS: BinarySpec[] = [
  { name: 'add', doc: 'y = a + b', grad: (_c, _a, _b, _y, dy) => [dy, dy] },
  { name: 'sub', doc: 'y = a - b', grad: (c, _a, _b, _y, dy) => [dy, r1(c, 'neg', [dy])] },
  { name: 'mul', doc: 'y = a * b', grad: (c, a, b, _y, dy) => [r1(c, 'mul', [dy, b]), r1(c, 'mul', [dy, a])] },
  {
    name: 'div', doc: 'y = a / b', domain: [{ kind: 'uniform', lo: -2, hi: 2 }, { kind: 'away', lo: 0.25, hi: 2 }],
    grad: (c, _a, b, y, dy) => {
      const ga = r1(c, 'div', [dy, b]);
      return [ga, r1(c, 'neg', [r1(c, 'mul', [ga, y])])];
    },
  },
  {
    name: 'maximum', doc: 'y = max(a, b); the gradient goes to a on ties', tolerance: 'exact',
    grad: (c, a, b, _y, dy) => {
      const m = r1(c, 'greater_equal', [a, b]);
      return [r1(c, 'mul', [dy, m]), r1(c, 'mul', [dy, r1(c, 'scale', [m], { mul: -1, add: 1 })])];
    },
  },
  {
    name: 'minimum', doc: 'y = min(a, b); the gradient goes to a on ties', tolerance: 'exact',
    grad: (c, a, b, _y, dy) => {
      const m = r1(c, 'less_equal', [a, b]);
      return [r1(c, 'mul', [dy, m]), r1(c, 'mul', [dy, r1(c, 'scale', [m], { mul: -1, add: 1 })])];
    },
  },
  {
    name: 'pow', autocast: 'f32', doc: 'y = a^b (a > 0 for real results)', tolerance: 'transcendental',
    domain: [{ kind: 'uniform', lo: 0.5, hi: 2 }, { kind: 'uniform', lo: -2, hi: 2 }],
    grad: (c, a, b, y, dy) => [
      r1(c, 'mul', [dy, r1(c, 'mul', [b, r1(c, 'pow', [a, r1(c, 'scale', [b], { mul: 1, add: -1 })])])]),
      r1(c, 'mul', [dy, r1(c, 'mul', [y, r1(c, 'log', [a])])]),
    ],
  },
  { name: 'greater', doc: 'y = 1 if a > b else 0', tolerance: 'exact' },
  { name: 'greater_equal', doc: 'y = 1 if a >= b else 0', tolerance: 'exact' },
  { name: 'less', doc: 'y = 1 if a < b else 0', tolerance: 'exact' },
  { name: 'less_equal', doc: 'y = 1 if a <= b else 0', tolerance: 'exact' },
  { name: 'equal', doc: 'y = 1 if a == b else 0', tolerance: 'exact' },
];

const DTYPES: DType[] = ['f32', 'f16', 'i32', 'f64'];

defineOps([
  ...UNARY_OPS.map(unaryRow),
  {
    name: 'silu_grad',
    doc: "silu's backward in one pass: dx = dy*s*(1 + x*(1-s)) with s = sigmoid(x); x and dy have one shape",
    inputs: [{ name: 'x', kind: 'float' }, { name: 'dy', kind: 'float' }],
    outputs: ['dx'],
    infer: ([x, dy]) => {
      if (x.shape.length !== dy.shape.length || x.shape.some((d, i) => d !== dy.shape[i])) {
        throw new OpError('silu_grad', `x [${x.shape}] and dy [${dy.shape}] must have one shape`);
      }
      return [{ shape: x.shape, dtype: x.dtype }];
    },
    tolerance: 'transcendental',
    backwardOf: 'silu',
    cases: [
      { name: 'regular', shapes: [[4, 33], [4, 33]] },
      { name: 'odd', shapes: [[5, 7, 11, 13], [5, 7, 11, 13]] },
      { name: 'wide', shapes: [[3, 5], [3, 5]], domains: [{ kind: 'uniform', lo: -30, hi: 30 }] },
      { name: 'empty', shapes: [[0, 3], [0, 3]] },
    ],
  },
  ...BINARY_OPS.map(binaryRow),
  {
    name: 'where',
    doc: 'y = a where cond != 0 else b, all three broadcast together',
    inputs: [{ name: 'cond', kind: 'float' }, { name: 'a', kind: 'float' }, { name: 'b', kind: 'float' }],
    outputs: ['y'],
    infer: ([c, a, b]) => [{ shape: broadcastShapes('where', c.shape, a.shape, b.shape), dtype: a.dtype }],
    domain: [{ kind: 'int', lo: 0, hi: 2 }, { kind: 'uniform', lo: -2, hi: 2 }, { kind: 'uniform', lo: -2, hi: 2 }],
    tolerance: 'exact',
    cases: [
      { name: 'regular', shapes: [[4, 33], [4, 33], [4, 33]] },
      { name: 'odd', shapes: [[5, 7, 11, 13], [5, 7, 11, 13], [5, 7, 11, 13]] },
      { name: 'broadcast', shapes: [[5, 1, 11, 1], [7, 1, 13], [1]] },
      { name: 'size-1', shapes: [[1, 9, 1], [1, 9, 1], [1, 9, 1]] },
      { name: 'empty', shapes: [[0, 3], [3], [0, 1]] },
    ],
    gradInputs: [1, 2],
    vjp: (c, [cond, a, b], _o, [dy]) => {
      const z = zeros(c, dy!, [1]);
      return [null, sumToShape(c, r1(c, 'where', [cond, dy!, z]), a.shape), sumToShape(c, r1(c, 'where', [cond, z, dy!]), b.shape)];
    },
  },
  {
    name: 'fill',
    doc: 'a tensor of `shape` and `dtype` whose every element is `value`',
    inputs: [],
    outputs: ['y'],
    infer: (_i, attrs) => {
      const shape = attrs.shape as number[];
      if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 0)) throw new OpError('fill', `attribute 'shape' must be non-negative integers, got ${JSON.stringify(shape)}`);
      const dtype = (attrs.dtype ?? 'f32') as DType;
      if (!DTYPES.includes(dtype)) throw new OpError('fill', `attribute 'dtype' must be one of ${DTYPES.join(', ')}`);
      numAttr('fill', attrs, 'value');
      return [{ shape, dtype }];
    },
    tolerance: 'exact',
    cases: [
      { name: 'regular', shapes: [], attrs: { shape: [4, 33], value: 1.5, dtype: 'f32' } },
      { name: 'odd', shapes: [], attrs: { shape: [5, 7, 11, 13], value: -0.1, dtype: 'f32' } },
      { name: 'int', shapes: [], attrs: { shape: [3, 5], value: -7, dtype: 'i32' } },
      { name: 'empty', shapes: [], attrs: { shape: [0, 3], value: 2, dtype: 'f32' } },
    ],
  },
  {
    name: 'cast',
    doc: 'converts to `dtype`; float to i32 truncates toward zero (out-of-range values are undefined)',
    inputs: [{ name: 'x', kind: 'any' }],
    outputs: ['y'],
    infer: ([x], attrs) => {
      const dtype = attrs.dtype as DType;
      if (!DTYPES.includes(dtype)) throw new OpError('cast', `attribute 'dtype' must be one of ${DTYPES.join(', ')}, got ${String(dtype)}`);
      return [{ shape: x.shape, dtype }];
    },
    domain: { kind: 'uniform', lo: -100, hi: 100 },
    tolerance: 'exact',
    // Float to float (autocast's f16 <-> f32) passes the gradient through in the input's dtype;
    // nothing flows across an integer side.
    vjp: (c, [x], [y], [dy]) => [isFloat(x.dtype) && isFloat(y.dtype) ? r1(c, 'cast', [dy!], { dtype: x.dtype }) : null],
    cases: [
      { name: 'f32-to-i32', shapes: [[5, 7, 11, 13]], attrs: { dtype: 'i32' }, dtypes: ['f32'], noGrad: true },
      { name: 'i32-to-f32', shapes: [[4, 33]], attrs: { dtype: 'f32' }, dtypes: ['i32'], domains: [{ kind: 'int', lo: -1000, hi: 1000 }] },
      { name: 'copy', shapes: [[1, 9, 1]], attrs: { dtype: 'f32' }, dtypes: ['f32'] },
      { name: 'empty', shapes: [[0, 3]], attrs: { dtype: 'i32' }, dtypes: ['f32'], noGrad: true },
    ],
  },
]);
