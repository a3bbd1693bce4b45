// Elementwise kernels: unary maps, broadcast binary ops, where, fill, cast.
// Pointers are byte addresses into the shared memory; counts and strides are in elements.
// The host reads the op codes below by name (scripts/gen-wasm-interface.mjs generates them into
// ../wasm-interface.ts); an op NAME here is the host op name in upper case.

import { expv, sigmoidv, siluGradv, siluv } from './vmath';

// Unary op codes.
const NEG = 0, ABS = 1, SIGN = 2, STEP = 3, EXP = 4, LOG = 5, SQRT = 6, RSQRT = 7, SQUARE = 8,
  RECIPROCAL = 9, SIN = 10, COS = 11, TANH = 12, SIGMOID = 13, ERF = 14, RELU = 15, LEAKY_RELU = 16,
  SILU = 17, GELU = 18, SOFTPLUS = 19, SCALE = 20, POW_SCALAR = 21, CLAMP = 22;

// Binary op codes.
const ADD = 0, SUB = 1, MUL = 2, DIV = 3, MAXIMUM = 4, MINIMUM = 5, POW = 6, GREATER = 7,
  GREATER_EQUAL = 8, LESS = 9, LESS_EQUAL = 10, EQUAL = 11;

/** erf in float64: Maclaurin series below 2.5, erfc continued fraction above (as the reference). */
export function erf64(x: f64): f64 {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    let sum = ax, term = ax;
    for (let n = 1; n < 100; n++) {
      term *= (-ax * ax) / <f64>n;
      const add = term / <f64>(2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    const r = 1.1283791670955126 * sum;
    return x < 0 ? -r : r;
  }
  let f = ax, C = ax, D = 0.0;
  for (let n = 1; n < 200; n++) {
    const an = <f64>n / 2;
    D = ax + an * D;
    D = D == 0 ? 1e-300 : 1 / D;
    C = ax + an / C;
    if (C == 0) C = 1e-300;
    const delta = C * D;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-ax * ax) / (f * 1.7724538509055159);
  return x < 0 ? erfc - 1 : 1 - erfc;
}

@inline function unaryScalar(op: i32, v: f32, p0: f64, p1: f64): f32 {
  const x = <f64>v;
  switch (op) {
    case NEG: return -v;
    case ABS: return Mathf.abs(v);
    case SIGN: return v > 0 ? 1 : v < 0 ? -1 : 0;
    case STEP: return v > 0 ? 1 : 0;
    case EXP: return <f32>Math.exp(x);
    case LOG: return <f32>Math.log(x);
    case SQRT: return Mathf.sqrt(v);
    case RSQRT: return <f32>(1 / Math.sqrt(x));
    case SQUARE: return v * v;
    case RECIPROCAL: return <f32>1 / v;
    case SIN: return <f32>Math.sin(x);
    case COS: return <f32>Math.cos(x);
    case TANH: return <f32>Math.tanh(x);
    case SIGMOID: return <f32>(1 / (1 + Math.exp(-x)));
    case ERF: return <f32>erf64(x);
    case RELU: return v > 0 ? v : 0;
    case LEAKY_RELU: return v > 0 ? v : <f32>(p0 * x);
    case SILU: return <f32>(x / (1 + Math.exp(-x)));
    case GELU: return <f32>(0.5 * x * (1 + erf64(x * 0.7071067811865476)));
    case SOFTPLUS: return x > 20 ? v : <f32>Math.log1p(Math.exp(x));
    case SCALE: return <f32>(x * p0 + p1);
    case POW_SCALAR: return <f32>Math.pow(x, p0);
    case CLAMP: return <f32>Math.min(Math.max(x, p0), p1);
  }
  return v;
}

/** y[i] = op(x[i]) for i in [begin, end). x and y may alias. */
export function unary(op: i32, x: usize, y: usize, begin: i32, end: i32, p0: f64, p1: f64): void {
  let i = begin;
  // SIMD for the ops that are plain vector arithmetic.
  if (op == NEG || op == ABS || op == SQUARE || op == RELU || op == CLAMP || op == SQRT) {
    const lo = f32x4.splat(<f32>p0), hi = f32x4.splat(<f32>p1), zero = f32x4.splat(0);
    for (; i + 4 <= end; i += 4) {
      const o = <usize>i << 2;
      const v = v128.load(x + o);
      let r: v128;
      if (op == NEG) r = f32x4.neg(v);
      else if (op == ABS) r = f32x4.abs(v);
      else if (op == SQUARE) r = f32x4.mul(v, v);
      else if (op == RELU) r = v128.and(v, f32x4.gt(v, zero));
      else if (op == SQRT) r = f32x4.sqrt(v);
      else r = f32x4.min(f32x4.max(v, lo), hi);
      v128.store(y + o, r);
    }
  }
  if (op == EXP || op == SIGMOID || op == SILU) {
    // Through expv in f32 (relative error ~1e-7, inside the transcendental class); the tail
    // goes through the same lanes, so an element's result does not depend on where a thread's
    // range starts.
    for (; i + 4 <= end; i += 4) {
      const o = <usize>i << 2;
      v128.store(y + o, expFamily(op, v128.load(x + o)));
    }
    for (; i < end; i++) {
      const o = <usize>i << 2;
      store<f32>(y + o, f32x4.extract_lane(expFamily(op, f32x4.splat(load<f32>(x + o))), 0));
    }
    return;
  }
  for (; i < end; i++) {
    const o = <usize>i << 2;
    store<f32>(y + o, unaryScalar(op, load<f32>(x + o), p0, p1));
  }
}

/** exp, sigmoid = 1/(1+e^-x) and silu = x*sigmoid(x) of four lanes. */
@inline function expFamily(op: i32, v: v128): v128 {
  if (op == EXP) return expv(v);
  return op == SIGMOID ? sigmoidv(v) : siluv(v);
}

/** dx[i] = silu'(x[i]) * dy[i] for i in [begin, end); the tail through the same lanes. */
export function siluGrad(x: usize, dy: usize, dx: usize, begin: i32, end: i32): void {
  let i = begin;
  for (; i + 4 <= end; i += 4) {
    const o = <usize>i << 2;
    v128.store(dx + o, siluGradv(v128.load(x + o), v128.load(dy + o)));
  }
  for (; i < end; i++) {
    const o = <usize>i << 2;
    store<f32>(dx + o, f32x4.extract_lane(siluGradv(f32x4.splat(load<f32>(x + o)), f32x4.splat(load<f32>(dy + o))), 0));
  }
}

@inline function binaryScalar(op: i32, a: f32, b: f32): f32 {
  switch (op) {
    case ADD: return a + b;
    case SUB: return a - b;
    case MUL: return a * b;
    case DIV: return a / b;
    case MAXIMUM: return Mathf.max(a, b);
    case MINIMUM: return Mathf.min(a, b);
    case POW: return <f32>Math.pow(<f64>a, <f64>b);
    case GREATER: return a > b ? 1 : 0;
    case GREATER_EQUAL: return a >= b ? 1 : 0;
    case LESS: return a < b ? 1 : 0;
    case LESS_EQUAL: return a <= b ? 1 : 0;
    case EQUAL: return a == b ? 1 : 0;
  }
  return 0;
}

@inline function binaryVector(op: i32, a: v128, b: v128): v128 {
  switch (op) {
    case ADD: return f32x4.add(a, b);
    case SUB: return f32x4.sub(a, b);
    case MUL: return f32x4.mul(a, b);
    case DIV: return f32x4.div(a, b);
    case MAXIMUM: return f32x4.max(a, b);
    case MINIMUM: return f32x4.min(a, b);
  }
  return a;
}

/** One contiguous output row of n elements; inputs step by sa / sb (0 = broadcast). */
function binaryRow(op: i32, a: usize, sa: i32, b: usize, sb: i32, y: usize, n: i32): void {
  let i = 0;
  if (op <= MINIMUM && (sa == 0 || sa == 1) && (sb == 0 || sb == 1)) {
    const as = sa == 0 ? f32x4.splat(load<f32>(a)) : f32x4.splat(0);
    const bs = sb == 0 ? f32x4.splat(load<f32>(b)) : f32x4.splat(0);
    for (; i + 4 <= n; i += 4) {
      const o = <usize>i << 2;
      const va = sa == 0 ? as : v128.load(a + o);
      const vb = sb == 0 ? bs : v128.load(b + o);
      v128.store(y + o, binaryVector(op, va, vb));
    }
  }
  for (; i < n; i++) {
    store<f32>(y + (<usize>i << 2), binaryScalar(op, load<f32>(a + (<usize>(i * sa) << 2)), load<f32>(b + (<usize>(i * sb) << 2))));
  }
}

/**
 * y[i0,i1,i2] = op(a[...], b[...]) over an output of [n0, n1, n2] (contiguous), inputs read
 * with element strides (0 along broadcast dims). Rows i0 in [begin, end).
 */
export function binary(op: i32, a: usize, sa0: i32, sa1: i32, sa2: i32, b: usize, sb0: i32, sb1: i32, sb2: i32,
  y: usize, n0: i32, n1: i32, n2: i32, begin: i32, end: i32): void {
  for (let i0 = begin; i0 < end; i0++) {
    for (let i1 = 0; i1 < n1; i1++) {
      const pa = a + (<usize>(i0 * sa0 + i1 * sa1) << 2);
      const pb = b + (<usize>(i0 * sb0 + i1 * sb1) << 2);
      const py = y + (<usize>((i0 * n1 + i1) * n2) << 2);
      binaryRow(op, pa, sa2, pb, sb2, py, n2);
    }
  }
}

/** y = cond != 0 ? a : b over [n0, n1, n2], inputs with element strides. */
export function where(c: usize, sc0: i32, sc1: i32, sc2: i32, a: usize, sa0: i32, sa1: i32, sa2: i32,
  b: usize, sb0: i32, sb1: i32, sb2: i32, y: usize, n0: i32, n1: i32, n2: i32): void {
  let py = y;
  for (let i0 = 0; i0 < n0; i0++) {
    for (let i1 = 0; i1 < n1; i1++) {
      let pc = c + (<usize>(i0 * sc0 + i1 * sc1) << 2);
      let pa = a + (<usize>(i0 * sa0 + i1 * sa1) << 2);
      let pb = b + (<usize>(i0 * sb0 + i1 * sb1) << 2);
      const dc = <usize>sc2 << 2, da = <usize>sa2 << 2, db = <usize>sb2 << 2;
      for (let i2 = 0; i2 < n2; i2++) {
        store<f32>(py, load<f32>(pc) != 0 ? load<f32>(pa) : load<f32>(pb));
        py += 4; pc += dc; pa += da; pb += db;
      }
    }
  }
}

/** Writes the 32-bit pattern `bits` to n elements (f32 or i32 fill). */
export function fill32(y: usize, n: i32, bits: i32): void {
  const v = i32x4.splat(bits);
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(y + (<usize>i << 2), v);
  for (; i < n; i++) store<i32>(y + (<usize>i << 2), bits);
}

/** f32 -> i32, truncating toward zero (saturating). */
export function castF32I32(x: usize, y: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(y + (<usize>i << 2), i32x4.trunc_sat_f32x4_s(v128.load(x + (<usize>i << 2))));
  for (; i < n; i++) store<i32>(y + (<usize>i << 2), <i32>load<f32>(x + (<usize>i << 2)));
}

export function castI32F32(x: usize, y: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(y + (<usize>i << 2), f32x4.convert_i32x4_s(v128.load(x + (<usize>i << 2))));
  for (; i < n; i++) store<f32>(y + (<usize>i << 2), <f32>load<i32>(x + (<usize>i << 2)));
}

/** Copies n 32-bit elements (regions may overlap). */
export function copy32(x: usize, y: usize, n: i32): void {
  memory.copy(y, x, <usize>n << 2);
}
