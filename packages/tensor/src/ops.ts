// The tensor-level API: creation functions and the ops models use, each a thin call of an
// op-table op (through `apply`, so gradients come from the op's row). Shape conveniences
// (arbitrary reduction axes, negative axes, scalars as numbers) are resolved here.

import { type Backend, type DType, type TypedArray, normAxis, runOp } from '@ibq/kernels';
import { Tensor, apply, fromInfo } from './engine.js';

// ---------------------------------------------------------------------------------------
// The default backend

let current: Backend | null = null;

export function setBackend(b: Backend): void {
  current = b;
}

export function getBackend(): Backend {
  if (!current) throw new Error('no backend set: call setBackend(await createBackend(name)) first');
  return current;
}

// ---------------------------------------------------------------------------------------
// Creation

export interface CreateOptions {
  dtype?: DType;
  backend?: Backend;
  requiresGrad?: boolean;
}

function typedFor(dtype: DType, values: ArrayLike<number>): TypedArray {
  if (dtype === 'f32') return values instanceof Float32Array ? values : Float32Array.from(values);
  if (dtype === 'f64') return values instanceof Float64Array ? values : Float64Array.from(values);
  if (dtype === 'i32') return values instanceof Int32Array ? values : Int32Array.from(values);
  throw new Error(`cannot create a ${dtype} tensor from host values`);
}

/** A tensor from host values (row-major). */
export function tensor(values: ArrayLike<number>, shape: readonly number[], options: CreateOptions = {}): Tensor {
  const be = options.backend ?? getBackend();
  const dtype = options.dtype ?? (values instanceof Int32Array ? 'i32' : 'f32');
  const n = shape.reduce((a, d) => a * d, 1);
  if (values.length !== n) throw new Error(`tensor(): ${values.length} values do not fill shape [${shape}] (${n})`);
  // A fresh buffer written from the host: no fill kernel first (every batch goes through here).
  const t = fromInfo(be, { buffer: be.alloc(dtype, n), offset: 0, shape: [...shape], dtype });
  if (n > 0) be.write(t.info.buffer, typedFor(dtype, values), 0);
  t.requiresGrad = options.requiresGrad ?? false;
  return t;
}

export function full(shape: readonly number[], value: number, options: CreateOptions = {}): Tensor {
  const [t] = apply('fill', [], { shape: [...shape], value, dtype: options.dtype ?? 'f32' }, options.backend ?? getBackend());
  t.requiresGrad = options.requiresGrad ?? false;
  return t;
}

/** Copies `src` into `dst`'s storage in place, outside the tape (initialisers, EMA swaps). */
export function assign(dst: Tensor, src: Tensor): void {
  if (src.size !== dst.size) throw new Error(`assign: ${src.size} elements into ${dst.size}`);
  runOp(dst.backend, 'cast', [src.info], { dtype: dst.dtype }, { outputs: [dst.info] });
}

export const zeros = (shape: readonly number[], options: CreateOptions = {}) => full(shape, 0, options);
export const ones = (shape: readonly number[], options: CreateOptions = {}) => full(shape, 1, options);

// ---------------------------------------------------------------------------------------
// Elementwise

type Scalar = Tensor | number;

function lift(x: Scalar, like: Tensor): Tensor {
  if (x instanceof Tensor) return x;
  return full([1], x, { dtype: like.dtype, backend: like.backend });
}

function binary(op: string, a: Scalar, b: Scalar): Tensor {
  const like = a instanceof Tensor ? a : (b as Tensor);
  return apply(op, [lift(a, like), lift(b, like)])[0];
}

export const add = (a: Scalar, b: Scalar) => binary('add', a, b);
export const sub = (a: Scalar, b: Scalar) => binary('sub', a, b);
export const mul = (a: Scalar, b: Scalar) => binary('mul', a, b);
export const div = (a: Scalar, b: Scalar) => binary('div', a, b);
export const pow = (a: Scalar, b: Scalar) => binary('pow', a, b);
export const maximum = (a: Scalar, b: Scalar) => binary('maximum', a, b);
export const minimum = (a: Scalar, b: Scalar) => binary('minimum', a, b);
export const greater = (a: Scalar, b: Scalar) => binary('greater', a, b);
export const less = (a: Scalar, b: Scalar) => binary('less', a, b);
export const equal = (a: Scalar, b: Scalar) => binary('equal', a, b);

export const unary = (op: string, x: Tensor, attrs = {}) => apply(op, [x], attrs)[0];
export const neg = (x: Tensor) => unary('neg', x);
export const abs = (x: Tensor) => unary('abs', x);
export const exp = (x: Tensor) => unary('exp', x);
export const log = (x: Tensor) => unary('log', x);
export const sqrt = (x: Tensor) => unary('sqrt', x);
export const rsqrt = (x: Tensor) => unary('rsqrt', x);
export const square = (x: Tensor) => unary('square', x);
export const tanh = (x: Tensor) => unary('tanh', x);
export const sigmoid = (x: Tensor) => unary('sigmoid', x);
export const relu = (x: Tensor) => unary('relu', x);
export const silu = (x: Tensor) => unary('silu', x);
export const gelu = (x: Tensor) => unary('gelu', x);
export const softplus = (x: Tensor) => unary('softplus', x);
export const leakyRelu = (x: Tensor, alpha = 0.01) => unary('leaky_relu', x, { alpha });
/** x*mul + add in one op. */
export const scale = (x: Tensor, mul: number, add = 0) => unary('scale', x, { mul, add });
export const clamp = (x: Tensor, min: number, max: number) => unary('clamp', x, { min, max });
export const where = (cond: Tensor, a: Scalar, b: Scalar) => apply('where', [cond, lift(a, cond), lift(b, cond)])[0];
export const cast = (x: Tensor, dtype: DType) => apply('cast', [x], { dtype })[0];

// ---------------------------------------------------------------------------------------
// Reductions over any axes

function axesOf(x: Tensor, axes?: number | number[]): number[] {
  if (axes === undefined) return [...x.shape.keys()];
  const list = (Array.isArray(axes) ? axes : [axes]).map((a) => normAxis('reduce', a, x.rank));
  return [...new Set(list)].sort((a, b) => a - b);
}

/**
 * Reduction kernels take one contiguous axis range; other axis sets are moved to the end
 * with a permute first.
 */
function reduce(op: string, x: Tensor, axes: number | number[] | undefined, keepDims: boolean): Tensor {
  const ax = axesOf(x, axes);
  if (ax.length === 0) return x;
  const contiguous = ax.every((a, i) => i === 0 || a === ax[i - 1] + 1);
  if (contiguous) return apply(op, [x], { axes: ax, keepDims })[0];
  const rest = [...x.shape.keys()].filter((a) => !ax.includes(a));
  const moved = permute(x, [...rest, ...ax]);
  const r = apply(op, [moved], { axes: ax.map((_, i) => rest.length + i), keepDims: false })[0];
  if (!keepDims) return r;
  return r.reshape(x.shape.map((d, i) => (ax.includes(i) ? 1 : d)));
}

export const sum = (x: Tensor, axes?: number | number[], keepDims = false) => reduce('sum', x, axes, keepDims);
export const mean = (x: Tensor, axes?: number | number[], keepDims = false) => reduce('mean', x, axes, keepDims);
export const max = (x: Tensor, axes?: number | number[], keepDims = false) => reduce('max', x, axes, keepDims);
export const min = (x: Tensor, axes?: number | number[], keepDims = false) => reduce('min', x, axes, keepDims);
export const logsumexp = (x: Tensor, axes?: number | number[], keepDims = false) => reduce('logsumexp', x, axes, keepDims);
export const argmax = (x: Tensor, axis = -1, keepDims = false) => apply('argmax', [x], { axis, keepDims })[0];
export const softmax = (x: Tensor, axis = -1) => apply('softmax', [x], { axis })[0];
export const logSoftmax = (x: Tensor, axis = -1) => apply('log_softmax', [x], { axis })[0];

// ---------------------------------------------------------------------------------------
// Layout

export function permute(x: Tensor, perm: readonly number[]): Tensor {
  if (perm.every((p, i) => p === i)) return x;
  return apply('permute', [x], { perm: [...perm] })[0];
}

/** Swaps two axes. */
export function transpose(x: Tensor, a = -2, b = -1): Tensor {
  const perm = [...x.shape.keys()];
  const i = normAxis('transpose', a, x.rank), j = normAxis('transpose', b, x.rank);
  [perm[i], perm[j]] = [perm[j], perm[i]];
  return permute(x, perm);
}

export const concat = (xs: Tensor[], axis = 0) => apply('concat', xs, { axis: normAxis('concat', axis, xs[0].rank) })[0];

export function slice(x: Tensor, begin: readonly number[], size: readonly number[]): Tensor {
  return apply('slice', [x], { begin: [...begin], size: [...size] })[0];
}

/** Splits `x` along `axis` into pieces of the given sizes. */
export function split(x: Tensor, sizes: number[], axis = -1): Tensor[] {
  const a = normAxis('split', axis, x.rank);
  let at = 0;
  return sizes.map((n) => {
    const begin = x.shape.map((_, i) => (i === a ? at : 0));
    const size = x.shape.map((d, i) => (i === a ? n : d));
    at += n;
    return slice(x, begin, size);
  });
}

export const pad = (x: Tensor, pads: [number, number][], value = 0) => apply('pad', [x], { pads, value })[0];
export const broadcastTo = (x: Tensor, shape: readonly number[]) => apply('broadcast_to', [x], { shape: [...shape] })[0];
export const gatherRows = (table: Tensor, ids: Tensor) => apply('gather_rows', [table, ids])[0];

// ---------------------------------------------------------------------------------------
// Linear algebra and convolution

export const matmul = (a: Tensor, b: Tensor, transA = false, transB = false) => apply('matmul', [a, b], { transA, transB })[0];

export interface Conv2dOptions {
  stride?: number | [number, number];
  /** Symmetric padding, or [top, bottom, left, right]. */
  padding?: number | [number, number, number, number];
}

export function conv2d(x: Tensor, w: Tensor, bias: Tensor | null, o: Conv2dOptions = {}): Tensor {
  const s = o.stride ?? 1, p = o.padding ?? 0;
  const stride = typeof s === 'number' ? [s, s] : s;
  const padding = typeof p === 'number' ? [p, p, p, p] : p;
  return apply('conv2d', bias ? [x, w, bias] : [x, w], { stride, padding })[0];
}

export const upsampleNearest2x = (x: Tensor) => apply('upsample_nearest2x', [x])[0];
/** Bilinear resize (align_corners false); halfPixel false: TF1's legacy ResizeBilinear (no half-pixel offset). */
export const resizeBilinear = (x: Tensor, size: [number, number], o: { halfPixel?: boolean } = {}) =>
  apply('resize_bilinear', [x], o.halfPixel === false ? { size, halfPixel: false } : { size })[0];

export interface Pool2dOptions {
  /** Default: the kernel size. */
  stride?: number | [number, number];
  /** Symmetric padding, or [top, bottom, left, right]. */
  padding?: number | [number, number, number, number];
}

function poolAttrs(kernel: number | [number, number], o: Pool2dOptions): Record<string, unknown> {
  const kernelSize = typeof kernel === 'number' ? [kernel, kernel] : kernel;
  const s = o.stride ?? kernelSize, p = o.padding ?? 0;
  return { kernelSize, stride: typeof s === 'number' ? [s, s] : s, padding: typeof p === 'number' ? [p, p, p, p] : p };
}

/** F.max_pool2d (ceil_mode false); no gradient. */
export const maxPool2d = (x: Tensor, kernel: number | [number, number], o: Pool2dOptions = {}) =>
  apply('max_pool2d', [x], poolAttrs(kernel, o))[0];
/** F.avg_pool2d (ceil_mode false); countIncludePad false divides by the window's elements inside x. No gradient. */
export const avgPool2d = (x: Tensor, kernel: number | [number, number], o: Pool2dOptions & { countIncludePad?: boolean } = {}) =>
  apply('avg_pool2d', [x], { ...poolAttrs(kernel, o), countIncludePad: o.countIncludePad ?? true })[0];
