// Optimiser updates (in place), interleaved rope, cross-entropy and its gradient.

import { expSumShifted, extremeRun } from './reduce';

/**
 * torch.optim.Adam / AdamW on elements [i0, i1), float64 per element (as the reference): two
 * elements per f64x2, the same operations in the same order as the scalar tail, so every
 * element gets the same bits whichever path it takes.
 */
export function adamUpdate(param: usize, grad: usize, m: usize, v: usize, i0: i32, i1: i32,
  lr: f64, beta1: f64, beta2: f64, eps: f64, weightDecay: f64, decoupled: bool, stepSize: f64, bc2Sqrt: f64): void {
  const decay = f64x2.splat(1 - lr * weightDecay), wd = f64x2.splat(weightDecay);
  const b1 = f64x2.splat(beta1), c1 = f64x2.splat(1 - beta1), b2 = f64x2.splat(beta2), c2 = f64x2.splat(1 - beta2);
  const bc = f64x2.splat(bc2Sqrt), ep = f64x2.splat(eps), step = f64x2.splat(stepSize);
  let i = i0;
  for (; i + 2 <= i1; i += 2) {
    const o = <usize>i << 2;
    let x = f64x2.promote_low_f32x4(v128.load64_zero(param + o));
    let g = f64x2.promote_low_f32x4(v128.load64_zero(grad + o));
    if (weightDecay != 0) {
      if (decoupled) x = f64x2.mul(x, decay);
      else g = f64x2.add(g, f64x2.mul(wd, x));
    }
    const m0 = f64x2.promote_low_f32x4(v128.load64_zero(m + o));
    const mi = f64x2.add(m0, f64x2.mul(c1, f64x2.sub(g, m0)));
    const vi = f64x2.add(f64x2.mul(b2, f64x2.promote_low_f32x4(v128.load64_zero(v + o))), f64x2.mul(f64x2.mul(c2, g), g));
    const denom = f64x2.add(f64x2.div(f64x2.sqrt(vi), bc), ep);
    v128.store64_lane(param + o, f32x4.demote_f64x2_zero(f64x2.sub(x, f64x2.mul(step, f64x2.div(mi, denom)))), 0);
    v128.store64_lane(m + o, f32x4.demote_f64x2_zero(mi), 0);
    v128.store64_lane(v + o, f32x4.demote_f64x2_zero(vi), 0);
  }
  for (; i < i1; i++) {
    const o = <usize>i << 2;
    let x = <f64>load<f32>(param + o);
    let g = <f64>load<f32>(grad + o);
    if (weightDecay != 0) {
      if (decoupled) x *= 1 - lr * weightDecay;
      else g += weightDecay * x;
    }
    const m0 = <f64>load<f32>(m + o);
    const mi = m0 + (1 - beta1) * (g - m0);
    const vi = beta2 * <f64>load<f32>(v + o) + (1 - beta2) * g * g;
    const denom = Math.sqrt(vi) / bc2Sqrt + eps;
    store<f32>(param + o, <f32>(x - stepSize * (mi / denom)));
    store<f32>(m + o, <f32>mi);
    store<f32>(v + o, <f32>vi);
  }
}

/** shadow -= (1 - decay) (shadow - param) on elements [i0, i1). */
export function emaUpdate(shadow: usize, param: usize, keep: f64, i0: i32, i1: i32): void {
  for (let i = i0; i < i1; i++) {
    const o = <usize>i << 2;
    const s = <f64>load<f32>(shadow + o);
    store<f32>(shadow + o, <f32>(s - keep * (s - <f64>load<f32>(param + o))));
  }
}

/** Interleaved rope over rows [r0, r1) of x [B, L, H, D] (row = one (b, l, h)); sign -1 inverts. */
export function rope(x: usize, cos: usize, sin: usize, y: usize, L: i32, H: i32, D: i32, sign: f64, r0: i32, r1: i32): void {
  const half = D >> 1;
  for (let r = r0; r < r1; r++) {
    const l = (r / H) % L;
    const base = <usize>(r * D) << 2;
    const cs = <usize>(l * half) << 2;
    for (let i = 0; i < half; i++) {
      const c = <f64>load<f32>(cos + cs + (<usize>i << 2)), s = sign * <f64>load<f32>(sin + cs + (<usize>i << 2));
      const pa = x + base + (<usize>i << 3);
      const a = <f64>load<f32>(pa), b = <f64>load<f32>(pa, 4);
      const py = y + base + (<usize>i << 3);
      store<f32>(py, <f32>(a * c - b * s));
      store<f32>(py, <f32>(b * c + a * s), 4);
    }
  }
}

/** loss[n] = lse - logits[n, t] (0 where t == ignore, NaN for other out-of-range t); rows [n0, n1). */
export function crossEntropy(logits: usize, targets: usize, loss: usize, lse: usize, V: i32, ignore: i32, n0: i32, n1: i32): void {
  for (let n = n0; n < n1; n++) {
    const row = logits + (<usize>(n * V) << 2);
    const m = extremeRun(row, V, true);
    const l = <f64>m + Math.log(expSumShifted(row, V, m));
    const t = load<i32>(targets + (<usize>n << 2));
    store<f32>(lse + (<usize>n << 2), <f32>l);
    const v: f64 = t == ignore ? 0 : t >= 0 && t < V ? l - <f64>load<f32>(row + (<usize>t << 2)) : NaN;
    store<f32>(loss + (<usize>n << 2), <f32>v);
  }
}

/** dlogits[n, c] = dloss[n] (exp(logits - lse) - [c == t]); 0 rows where ignored, NaN rows for bad targets. */
export function crossEntropyGrad(dloss: usize, logits: usize, targets: usize, lse: usize, dlogits: usize, V: i32, ignore: i32, n0: i32, n1: i32): void {
  for (let n = n0; n < n1; n++) {
    const row = logits + (<usize>(n * V) << 2), out = dlogits + (<usize>(n * V) << 2);
    const t = load<i32>(targets + (<usize>n << 2));
    if (t == ignore || !(t >= 0 && t < V)) {
      const fill: f32 = t == ignore ? 0 : NaN;
      for (let c = 0; c < V; c++) store<f32>(out + (<usize>c << 2), fill);
      continue;
    }
    const g = <f64>load<f32>(dloss + (<usize>n << 2)), l = <f64>load<f32>(lse + (<usize>n << 2));
    for (let c = 0; c < V; c++) {
      const p = Math.exp(<f64>load<f32>(row + (<usize>c << 2)) - l);
      store<f32>(out + (<usize>c << 2), <f32>(g * (c == t ? p - 1 : p)));
    }
  }
}
