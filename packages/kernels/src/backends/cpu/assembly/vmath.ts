// Vector math: exp of four f32 lanes (Cephes expf: range reduction by ln 2 and a degree-5
// polynomial; relative error ~1e-7), sigmoid / silu / silu's backward built on it, and lane
// reductions. Written for V8's code generation:
// the same results as the textbook form, in about half the instructions.

/**
 * acc + a*b on four f32 lanes: one fused multiply-add in the relaxed-SIMD build of the module
 * (f32x4.relaxed_madd: an FMA where the CPU has one), a multiply and an add in the SIMD128 build.
 */
@inline export function madd(a: v128, b: v128, acc: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, acc);
  return f32x4.add(acc, f32x4.mul(a, b));
}

@inline export function expv(x: v128): v128 {
  const lo = f32x4.splat(-87.33654), hi = f32x4.splat(88.3762626647949);
  const under = f32x4.lt(x, lo); // exp underflows to 0 (and -inf -> 0)
  // pmin/pmax are single instructions under V8 (min/max emulate IEEE NaN rules in several);
  // a NaN passes through both and stays NaN to the end.
  let v = f32x4.pmin(f32x4.pmax(x, lo), hi);
  const fx = f32x4.floor(f32x4.add(f32x4.mul(v, f32x4.splat(1.44269504088896341)), f32x4.splat(0.5)));
  v = f32x4.sub(v, f32x4.mul(fx, f32x4.splat(0.693359375)));
  v = f32x4.sub(v, f32x4.mul(fx, f32x4.splat(-2.12194440e-4)));
  let y = f32x4.splat(1.9875691500e-4);
  y = f32x4.add(f32x4.mul(y, v), f32x4.splat(1.3981999507e-3));
  y = f32x4.add(f32x4.mul(y, v), f32x4.splat(8.3334519073e-3));
  y = f32x4.add(f32x4.mul(y, v), f32x4.splat(4.1665795894e-2));
  y = f32x4.add(f32x4.mul(y, v), f32x4.splat(1.6666665459e-1));
  y = f32x4.add(f32x4.mul(y, v), f32x4.splat(5.0000001201e-1));
  y = f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(y, v), v), v), f32x4.splat(1));
  // 2^fx without a (slow, saturating) float-to-int conversion: fx + (2^23 + 127) holds fx + 127
  // in its low mantissa bits, and << 23 moves them into the exponent field.
  const pow2 = i32x4.shl(f32x4.add(fx, f32x4.splat(8388735.0)), 23);
  return v128.andnot(f32x4.mul(y, pow2), under);
}

/** sigmoid = 1/(1+e^-x) of four lanes, through expv. */
@inline export function sigmoidv(v: v128): v128 {
  const one = f32x4.splat(1);
  return f32x4.div(one, f32x4.add(one, expv(f32x4.neg(v))));
}

/** silu = x*sigmoid(x) of four lanes (the elementwise op and group_norm_silu). */
@inline export function siluv(v: v128): v128 {
  return f32x4.mul(v, sigmoidv(v));
}

/** silu's backward of four lanes: dy*s*(1 + x*(1-s)), s = sigmoid(x) (silu_grad and group_norm_silu_grad). */
@inline export function siluGradv(x: v128, dy: v128): v128 {
  const one = f32x4.splat(1), s = sigmoidv(x);
  return f32x4.mul(dy, f32x4.mul(s, f32x4.add(one, f32x4.mul(x, f32x4.sub(one, s)))));
}

@inline export function hsum(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

@inline export function hsum64(v: v128): f64 {
  return (<f64>f32x4.extract_lane(v, 0) + <f64>f32x4.extract_lane(v, 1)) + (<f64>f32x4.extract_lane(v, 2) + <f64>f32x4.extract_lane(v, 3));
}

@inline export function hmax(v: v128): f32 {
  const a = f32x4.max(v, v128.shuffle<i32>(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(f32x4.max(a, v128.shuffle<i32>(a, a, 1, 0, 3, 2)), 0);
}

/** exp(x) for one f32, through the vector path (the same rounding as expv). */
@inline export function expf1(x: f32): f32 {
  return f32x4.extract_lane(expv(f32x4.splat(x)), 0);
}

// Copies and zero fills of f32/i32 words. memory.copy and memory.fill on a shared memory are
// calls out of the compiled code under V8: on the short rows of the transforms and packings
// they cost more than the copy (config S's Winograd input transform spent most of its time in
// them, and two threads ran it no faster than one).

/** n words from src to dst (the regions must not overlap). */
@inline export function copyWords(dst: usize, src: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(dst + (<usize>i << 2), v128.load(src + (<usize>i << 2)));
  for (; i < n; i++) store<i32>(dst + (<usize>i << 2), load<i32>(src + (<usize>i << 2)));
}

/** n zero words at dst. */
@inline export function zeroWords(dst: usize, n: i32): void {
  const z = i32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(dst + (<usize>i << 2), z);
  for (; i < n; i++) store<i32>(dst + (<usize>i << 2), 0);
}
