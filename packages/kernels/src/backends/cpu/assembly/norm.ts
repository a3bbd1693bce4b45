// The normalisation family: GroupNorm (alone and fused with the SiLU after it), BatchNorm (train,
// eval), LayerNorm, RMSNorm and their fused gradients. Statistics are two-pass (mean, then centred squares) in f32x4 blocks
// folded into f64; the centred pass uses the mean rounded to f32 and corrects for the
// rounding exactly (sum (x-mf)^2 = sum (x-m)^2 + M (m-mf)^2). Each entry point handles a
// range of normalisation sets (or of row chunks), so the host splits them across threads and
// the results do not depend on the thread count.

import { sumRun } from './reduce';
import { hsum64, siluGradv, siluv } from './vmath';

/** Floats per f32x4 block before folding into f64. */
const BLOCK = 256;

/** sum of (x[i] - m)^2 over n contiguous floats, in f64. */
function sqDevRun(p: usize, n: i32, m: f32): f64 {
  const mv = f32x4.splat(m);
  let total: f64 = 0;
  let i = 0;
  while (i + 4 <= n) {
    let acc = f32x4.splat(0);
    const end = min(n, i + BLOCK) & ~3;
    for (; i < end; i += 4) {
      const d = f32x4.sub(v128.load(p + (<usize>i << 2)), mv);
      acc = f32x4.add(acc, f32x4.mul(d, d));
    }
    total += hsum64(acc);
  }
  for (; i < n; i++) { const d = <f64>(load<f32>(p + (<usize>i << 2)) - m); total += d * d; }
  return total;
}

/** sum of x[i]^2 over n contiguous floats, in f64. */
function sqRun(p: usize, n: i32): f64 {
  let total: f64 = 0;
  let i = 0;
  while (i + 4 <= n) {
    let acc = f32x4.splat(0);
    const end = min(n, i + BLOCK) & ~3;
    for (; i < end; i += 4) { const v = v128.load(p + (<usize>i << 2)); acc = f32x4.add(acc, f32x4.mul(v, v)); }
    total += hsum64(acc);
  }
  for (; i < n; i++) { const v = <f64>load<f32>(p + (<usize>i << 2)); total += v * v; }
  return total;
}

/** sum of a[i] * b[i] over n contiguous floats, in f64. */
function dotRun(a: usize, b: usize, n: i32): f64 {
  let total: f64 = 0;
  let i = 0;
  while (i + 4 <= n) {
    let acc = f32x4.splat(0);
    const end = min(n, i + BLOCK) & ~3;
    for (; i < end; i += 4) {
      const o = <usize>i << 2;
      acc = f32x4.add(acc, f32x4.mul(v128.load(a + o), v128.load(b + o)));
    }
    total += hsum64(acc);
  }
  for (; i < n; i++) { const o = <usize>i << 2; total += <f64>load<f32>(a + o) * <f64>load<f32>(b + o); }
  return total;
}

/** sum of dy[i] * (x[i] - m) over n contiguous floats, in f64. */
function dotDevRun(dy: usize, x: usize, n: i32, m: f32): f64 {
  const mv = f32x4.splat(m);
  let total: f64 = 0;
  let i = 0;
  while (i + 4 <= n) {
    let acc = f32x4.splat(0);
    const end = min(n, i + BLOCK) & ~3;
    for (; i < end; i += 4) {
      const o = <usize>i << 2;
      acc = f32x4.add(acc, f32x4.mul(v128.load(dy + o), f32x4.sub(v128.load(x + o), mv)));
    }
    total += hsum64(acc);
  }
  for (; i < n; i++) { const o = <usize>i << 2; total += <f64>load<f32>(dy + o) * (<f64>load<f32>(x + o) - <f64>m); }
  return total;
}

/** (x - m) * a + c of four lanes at byte offset o. */
@inline function affine4(x: usize, o: usize, mv: v128, av: v128, cv: v128): v128 {
  return f32x4.add(f32x4.mul(f32x4.sub(v128.load(x + o), mv), av), cv);
}

/** y[i] = (x[i] - m) * a + c over n contiguous floats. */
function affineRun(x: usize, y: usize, n: i32, m: f32, a: f32, c: f32): void {
  const mv = f32x4.splat(m), av = f32x4.splat(a), cv = f32x4.splat(c);
  let i = 0;
  for (; i + 4 <= n; i += 4) { const o = <usize>i << 2; v128.store(y + o, affine4(x, o, mv, av, cv)); }
  for (; i < n; i++) { const o = <usize>i << 2; store<f32>(y + o, (load<f32>(x + o) - m) * a + c); }
}

/** The same lanes for one float at byte offset o (a run's tail), so no element depends on where a run ends. */
@inline function affine1(x: usize, o: usize, mv: v128, av: v128, cv: v128): v128 {
  return f32x4.add(f32x4.mul(f32x4.sub(f32x4.splat(load<f32>(x + o)), mv), av), cv);
}

/** y[i] = silu((x[i] - m) * a + c) over n contiguous floats (group_norm_silu's forward). */
function affineSiluRun(x: usize, y: usize, n: i32, m: f32, a: f32, c: f32): void {
  const mv = f32x4.splat(m), av = f32x4.splat(a), cv = f32x4.splat(c);
  let i = 0;
  for (; i + 4 <= n; i += 4) { const o = <usize>i << 2; v128.store(y + o, siluv(affine4(x, o, mv, av, cv))); }
  for (; i < n; i++) { const o = <usize>i << 2; store<f32>(y + o, f32x4.extract_lane(siluv(affine1(x, o, mv, av, cv)), 0)); }
}

/** dh[i] = silu'(h) dy[i] with h = (x[i] - m) * a + c recomputed, over n contiguous floats (dh may be dy). */
function siluGradAffineRun(dy: usize, x: usize, dh: usize, n: i32, m: f32, a: f32, c: f32): void {
  const mv = f32x4.splat(m), av = f32x4.splat(a), cv = f32x4.splat(c);
  let i = 0;
  for (; i + 4 <= n; i += 4) { const o = <usize>i << 2; v128.store(dh + o, siluGradv(affine4(x, o, mv, av, cv), v128.load(dy + o))); }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(dh + o, f32x4.extract_lane(siluGradv(affine1(x, o, mv, av, cv), f32x4.splat(load<f32>(dy + o))), 0));
  }
}

/**
 * dx[i] = r ((dy[i] w[i] - meanG) - (x[i] - m) k) over n contiguous floats, in f64 per element
 * (f64x2 lanes): the two terms nearly cancel when a set has few elements or little spread, and
 * f32 would lose the difference. w[i] = w[0] when wStride is 0 (one channel), else a row.
 */
function gradRun(dy: usize, x: usize, w: usize, wStride: i32, dx: usize, n: i32, m: f64, r: f64, meanG: f64, k: f64): void {
  const mv = f64x2.splat(m), rv = f64x2.splat(r), gv = f64x2.splat(meanG), kv = f64x2.splat(k);
  const wsc = f64x2.splat(<f64>load<f32>(w));
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const d4 = v128.load(dy + o), x4 = v128.load(x + o);
    let wl = wsc, wh = wsc;
    if (wStride != 0) {
      const w4 = v128.load(w + o);
      wl = f64x2.promote_low_f32x4(w4);
      wh = f64x2.promote_low_f32x4(v128.shuffle<i32>(w4, w4, 2, 3, 0, 1));
    }
    const dl = f64x2.promote_low_f32x4(d4), dh = f64x2.promote_low_f32x4(v128.shuffle<i32>(d4, d4, 2, 3, 0, 1));
    const xl = f64x2.promote_low_f32x4(x4), xh = f64x2.promote_low_f32x4(v128.shuffle<i32>(x4, x4, 2, 3, 0, 1));
    const rl = f64x2.mul(rv, f64x2.sub(f64x2.sub(f64x2.mul(dl, wl), gv), f64x2.mul(f64x2.sub(xl, mv), kv)));
    const rh = f64x2.mul(rv, f64x2.sub(f64x2.sub(f64x2.mul(dh, wh), gv), f64x2.mul(f64x2.sub(xh, mv), kv)));
    v128.store(dx + o, v128.shuffle<i64>(f32x4.demote_f64x2_zero(rl), f32x4.demote_f64x2_zero(rh), 0, 2));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    const wi = wStride != 0 ? <f64>load<f32>(w + o) : f64x2.extract_lane(wsc, 0);
    const v = r * ((<f64>load<f32>(dy + o) * wi - meanG) - (<f64>load<f32>(x + o) - m) * k);
    store<f32>(dx + o, <f32>v);
  }
}

/** Mean and biased variance (f64) of M elements given their sum and centred sum of squares about mf. */
@inline function variance(sum: f64, sqAboutMf: f64, mf: f32, M: i32): f64 {
  const mean = sum / <f64>M;
  const d = mean - <f64>mf;
  return max(sqAboutMf / <f64>M - d * d, 0);
}

// ---------------------------------------------------------------------------------------------
// GroupNorm: x [N, C, S], G groups of Cg channels; set s = n*G + g is contiguous (Cg*S floats).

/**
 * Forward over sets [s0, s1): mean and rstd per set, y = (x - mean)*rstd*w[c] + b[c], or silu of it
 * (`silu`, constant at each call: the two exports below compile to separate loops).
 */
@inline function groupNormSets(x: usize, w: usize, b: usize, y: usize, mean: usize, rstd: usize,
  G: i32, Cg: i32, S: i32, eps: f64, s0: i32, s1: i32, silu: bool): void {
  const M = Cg * S;
  for (let s = s0; s < s1; s++) {
    const base = <usize>(s * M) << 2;
    let mf: f32 = 0, r: f64 = 1 / Math.sqrt(eps);
    if (M > 0) {
      const sum = sumRun(x + base, M);
      mf = <f32>(sum / <f64>M);
      r = 1 / Math.sqrt(variance(sum, sqDevRun(x + base, M, mf), mf, M) + eps);
    }
    store<f32>(mean + (<usize>s << 2), mf);
    store<f32>(rstd + (<usize>s << 2), <f32>r);
    const g = s % G;
    for (let cc = 0; cc < Cg; cc++) {
      const ch = g * Cg + cc;
      const a = <f32>(r * <f64>load<f32>(w + (<usize>ch << 2)));
      const o = base + (<usize>(cc * S) << 2);
      if (silu) affineSiluRun(x + o, y + o, S, mf, a, load<f32>(b + (<usize>ch << 2)));
      else affineRun(x + o, y + o, S, mf, a, load<f32>(b + (<usize>ch << 2)));
    }
  }
}

/** group_norm over sets [s0, s1). */
export function groupNorm(x: usize, w: usize, b: usize, y: usize, mean: usize, rstd: usize,
  G: i32, Cg: i32, S: i32, eps: f64, s0: i32, s1: i32): void {
  groupNormSets(x, w, b, y, mean, rstd, G, Cg, S, eps, s0, s1, false);
}

/** group_norm_silu over sets [s0, s1): one pass writes silu(h), h never stored. */
export function groupNormSilu(x: usize, w: usize, b: usize, y: usize, mean: usize, rstd: usize,
  G: i32, Cg: i32, S: i32, eps: f64, s0: i32, s1: i32): void {
  groupNormSets(x, w, b, y, mean, rstd, G, Cg, S, eps, s0, s1, true);
}

/**
 * Backward over sets [s0, s1): dx, and per (n, c) the sums A = sum g, B = sum g*(x - mean)
 * (f64 pairs at sums[(n*C + c)*2]) from which groupNormGradChannels makes dweight and dbias.
 * g is dy, or with `silu` dh = silu'(h) dy, h recomputed from x and the statistics and written into
 * dx channel by channel (still in L1 for the sums and for gradRun, which then works in place).
 */
@inline function groupNormGradSets(dy: usize, x: usize, w: usize, b: usize, mean: usize, rstd: usize, dx: usize, sums: usize,
  G: i32, Cg: i32, S: i32, s0: i32, s1: i32, silu: bool): void {
  const M = Cg * S;
  const src = silu ? dx : dy;
  for (let s = s0; s < s1; s++) {
    const base = <usize>(s * M) << 2;
    const mf = load<f32>(mean + (<usize>s << 2));
    const r = <f64>load<f32>(rstd + (<usize>s << 2));
    const g = s % G, n = s / G;
    let sumG: f64 = 0, sumGX: f64 = 0;
    for (let cc = 0; cc < Cg; cc++) {
      const ch = g * Cg + cc;
      const o = base + (<usize>(cc * S) << 2);
      const wc = <f64>load<f32>(w + (<usize>ch << 2));
      if (silu) siluGradAffineRun(dy + o, x + o, dx + o, S, mf, <f32>(r * wc), load<f32>(b + (<usize>ch << 2)));
      const A = sumRun(src + o, S), B = dotDevRun(src + o, x + o, S, mf);
      const sp = sums + (<usize>((n * G * Cg + ch) * 2) << 3);
      store<f64>(sp, A);
      store<f64>(sp, B, 8);
      sumG += wc * A;
      sumGX += wc * B;
    }
    if (M == 0) continue;
    // dx = r (g - mean(g) - xhat mean(g xhat)), xhat = (x - mean) r, g = dy w.
    const meanG = sumG / <f64>M, k = r * r * sumGX / <f64>M;
    for (let cc = 0; cc < Cg; cc++) {
      const o = base + (<usize>(cc * S) << 2);
      gradRun(src + o, x + o, w + (<usize>(g * Cg + cc) << 2), 0, dx + o, S, <f64>mf, r, meanG, k);
    }
  }
}

/** group_norm_grad over sets [s0, s1). */
export function groupNormGrad(dy: usize, x: usize, w: usize, mean: usize, rstd: usize, dx: usize, sums: usize,
  G: i32, Cg: i32, S: i32, s0: i32, s1: i32): void {
  groupNormGradSets(dy, x, w, 0, mean, rstd, dx, sums, G, Cg, S, s0, s1, false);
}

/** group_norm_silu_grad over sets [s0, s1) (dweight, dbias: groupNormGradChannels, as group_norm_grad). */
export function groupNormSiluGrad(dy: usize, x: usize, w: usize, b: usize, mean: usize, rstd: usize, dx: usize, sums: usize,
  G: i32, Cg: i32, S: i32, s0: i32, s1: i32): void {
  groupNormGradSets(dy, x, w, b, mean, rstd, dx, sums, G, Cg, S, s0, s1, true);
}

/** dweight[c] = sum_n rstd[n, g(c)] B[n, c], dbias[c] = sum_n A[n, c] for channels [c0, c1). */
export function groupNormGradChannels(sums: usize, rstd: usize, dw: usize, db: usize, N: i32, C: i32, G: i32, c0: i32, c1: i32): void {
  const Cg = C / G;
  for (let c = c0; c < c1; c++) {
    let sw: f64 = 0, sb: f64 = 0;
    for (let n = 0; n < N; n++) {
      const sp = sums + (<usize>((n * C + c) * 2) << 3);
      sb += load<f64>(sp);
      sw += <f64>load<f32>(rstd + (<usize>(n * G + c / Cg) << 2)) * load<f64>(sp, 8);
    }
    store<f32>(dw + (<usize>c << 2), <f32>sw);
    store<f32>(db + (<usize>c << 2), <f32>sb);
  }
}

// ---------------------------------------------------------------------------------------------
// BatchNorm: x [N, C, S]; channel c is N runs of S floats, C*S apart.

/** Training forward over channels [c0, c1): batch mean and biased var, y normalised. */
export function batchNormTrain(x: usize, w: usize, b: usize, y: usize, mean: usize, vr: usize,
  N: i32, C: i32, S: i32, eps: f64, c0: i32, c1: i32): void {
  const M = N * S;
  const step = <usize>(C * S) << 2;
  for (let c = c0; c < c1; c++) {
    const first = <usize>(c * S) << 2;
    let mf: f32 = 0, v: f64 = 0;
    if (M > 0) {
      let sum: f64 = 0;
      for (let n = 0; n < N; n++) sum += sumRun(x + first + <usize>n * step, S);
      mf = <f32>(sum / <f64>M);
      let sq: f64 = 0;
      for (let n = 0; n < N; n++) sq += sqDevRun(x + first + <usize>n * step, S, mf);
      v = variance(sum, sq, mf, M);
    }
    store<f32>(mean + (<usize>c << 2), mf);
    store<f32>(vr + (<usize>c << 2), <f32>v);
    const a = <f32>(<f64>load<f32>(w + (<usize>c << 2)) / Math.sqrt(v + eps));
    const bc = load<f32>(b + (<usize>c << 2));
    for (let n = 0; n < N; n++) {
      const o = first + <usize>n * step;
      affineRun(x + o, y + o, S, mf, a, bc);
    }
  }
}

/** y = (x - mean[c]) * scale[c] + shift[c] over rows r = n*C + c in [r0, r1) (batch_norm_eval). */
export function channelAffine(x: usize, y: usize, C: i32, S: i32, mean: usize, scale: usize, shift: usize, r0: i32, r1: i32): void {
  for (let r = r0; r < r1; r++) {
    const c = r % C;
    const o = <usize>(r * S) << 2;
    affineRun(x + o, y + o, S, load<f32>(mean + (<usize>c << 2)), load<f32>(scale + (<usize>c << 2)), load<f32>(shift + (<usize>c << 2)));
  }
}

/** Training backward over channels [c0, c1): dx, dweight, dbias. */
export function batchNormTrainGrad(dy: usize, x: usize, w: usize, mean: usize, vr: usize, dx: usize, dw: usize, db: usize,
  N: i32, C: i32, S: i32, eps: f64, c0: i32, c1: i32): void {
  const M = N * S;
  const step = <usize>(C * S) << 2;
  for (let c = c0; c < c1; c++) {
    const first = <usize>(c * S) << 2;
    const mf = load<f32>(mean + (<usize>c << 2));
    const r = 1 / Math.sqrt(<f64>load<f32>(vr + (<usize>c << 2)) + eps);
    const wc = <f64>load<f32>(w + (<usize>c << 2));
    let A: f64 = 0, B: f64 = 0;
    for (let n = 0; n < N; n++) {
      const o = first + <usize>n * step;
      A += sumRun(dy + o, S);
      B += dotDevRun(dy + o, x + o, S, mf);
    }
    store<f32>(dw + (<usize>c << 2), <f32>(r * B));
    store<f32>(db + (<usize>c << 2), <f32>A);
    if (M == 0) continue;
    const meanG = wc * A / <f64>M, k = r * r * wc * B / <f64>M;
    for (let n = 0; n < N; n++) {
      const o = first + <usize>n * step;
      gradRun(dy + o, x + o, w + (<usize>c << 2), 0, dx + o, S, <f64>mf, r, meanG, k);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// LayerNorm and RMSNorm: rows of D floats with per-element weights. The gradients' dweight and
// dbias are column sums over rows: each chunk of RCH rows writes its partial sums (f32 [D]),
// and chunkSums adds the chunks in order, so nothing depends on how threads split the rows.

export const RCH = 32;

/** Forward over rows [r0, r1). */
export function layerNorm(x: usize, w: usize, b: usize, y: usize, mean: usize, rstd: usize, D: i32, eps: f64, r0: i32, r1: i32): void {
  for (let r = r0; r < r1; r++) {
    const px = x + (<usize>(r * D) << 2), py = y + (<usize>(r * D) << 2);
    let mf: f32 = 0, rs: f64 = 1 / Math.sqrt(eps);
    if (D > 0) {
      const sum = sumRun(px, D);
      mf = <f32>(sum / <f64>D);
      rs = 1 / Math.sqrt(variance(sum, sqDevRun(px, D, mf), mf, D) + eps);
    }
    store<f32>(mean + (<usize>r << 2), mf);
    store<f32>(rstd + (<usize>r << 2), <f32>rs);
    const rf = <f32>rs;
    const mv = f32x4.splat(mf), rv = f32x4.splat(rf);
    let i = 0;
    for (; i + 4 <= D; i += 4) {
      const o = <usize>i << 2;
      const t = f32x4.mul(f32x4.sub(v128.load(px + o), mv), rv);
      v128.store(py + o, f32x4.add(f32x4.mul(t, v128.load(w + o)), v128.load(b + o)));
    }
    for (; i < D; i++) {
      const o = <usize>i << 2;
      store<f32>(py + o, (load<f32>(px + o) - mf) * rf * load<f32>(w + o) + load<f32>(b + o));
    }
  }
}

/** Backward over row chunks [k0, k1) of `rows` rows: dx, and per chunk partial dweight / dbias. */
export function layerNormGrad(dy: usize, x: usize, w: usize, mean: usize, rstd: usize, dx: usize, partW: usize, partB: usize,
  D: i32, rows: i32, k0: i32, k1: i32): void {
  for (let k = k0; k < k1; k++) {
    const pw = partW + (<usize>(k * D) << 2), pb = partB + (<usize>(k * D) << 2);
    memory.fill(pw, 0, <usize>D << 2);
    memory.fill(pb, 0, <usize>D << 2);
    const rEnd = min(rows, (k + 1) * RCH);
    for (let r = k * RCH; r < rEnd; r++) {
      const o0 = <usize>(r * D) << 2;
      const pdy = dy + o0, px = x + o0, pdx = dx + o0;
      const mf = load<f32>(mean + (<usize>r << 2));
      const rf = load<f32>(rstd + (<usize>r << 2));
      const mv = f32x4.splat(mf), rv = f32x4.splat(rf);
      // sums of g = dy*w and g*(x - mean), f32x4 blocks folded into f64; partial dw += dy*xhat, db += dy.
      let sumG: f64 = 0, sumGX: f64 = 0;
      let i = 0;
      while (i + 4 <= D) {
        let aG = f32x4.splat(0), aGX = f32x4.splat(0);
        const end = min(D, i + BLOCK) & ~3;
        for (; i < end; i += 4) {
          const o = <usize>i << 2;
          const d = v128.load(pdy + o);
          const xc = f32x4.sub(v128.load(px + o), mv);
          const g = f32x4.mul(d, v128.load(w + o));
          aG = f32x4.add(aG, g);
          aGX = f32x4.add(aGX, f32x4.mul(g, xc));
          v128.store(pw + o, f32x4.add(v128.load(pw + o), f32x4.mul(d, f32x4.mul(xc, rv))));
          v128.store(pb + o, f32x4.add(v128.load(pb + o), d));
        }
        sumG += hsum64(aG);
        sumGX += hsum64(aGX);
      }
      for (; i < D; i++) {
        const o = <usize>i << 2;
        const d = load<f32>(pdy + o), xc = load<f32>(px + o) - mf;
        const g = <f64>d * <f64>load<f32>(w + o);
        sumG += g;
        sumGX += g * (<f64>load<f32>(px + o) - <f64>mf);
        store<f32>(pw + o, load<f32>(pw + o) + d * (xc * rf));
        store<f32>(pb + o, load<f32>(pb + o) + d);
      }
      const rs = <f64>rf;
      gradRun(pdy, px, w, 1, pdx, D, <f64>mf, rs, sumG / <f64>D, rs * rs * sumGX / <f64>D);
    }
  }
}

/** RMSNorm forward over rows [r0, r1). */
export function rmsNorm(x: usize, w: usize, y: usize, rstd: usize, D: i32, eps: f64, r0: i32, r1: i32): void {
  for (let r = r0; r < r1; r++) {
    const px = x + (<usize>(r * D) << 2), py = y + (<usize>(r * D) << 2);
    const rs = 1 / Math.sqrt((D > 0 ? sqRun(px, D) / <f64>D : 0) + eps);
    const rf = <f32>rs;
    store<f32>(rstd + (<usize>r << 2), rf);
    const rv = f32x4.splat(rf);
    let i = 0;
    for (; i + 4 <= D; i += 4) {
      const o = <usize>i << 2;
      v128.store(py + o, f32x4.mul(f32x4.mul(v128.load(px + o), rv), v128.load(w + o)));
    }
    for (; i < D; i++) { const o = <usize>i << 2; store<f32>(py + o, load<f32>(px + o) * rf * load<f32>(w + o)); }
  }
}

/** RMSNorm backward over row chunks [k0, k1): dx, and per chunk partial dweight. */
export function rmsNormGrad(dy: usize, x: usize, w: usize, rstd: usize, dx: usize, partW: usize, D: i32, rows: i32, k0: i32, k1: i32): void {
  for (let k = k0; k < k1; k++) {
    const pw = partW + (<usize>(k * D) << 2);
    memory.fill(pw, 0, <usize>D << 2);
    const rEnd = min(rows, (k + 1) * RCH);
    for (let r = k * RCH; r < rEnd; r++) {
      const o0 = <usize>(r * D) << 2;
      const pdy = dy + o0, px = x + o0, pdx = dx + o0;
      const rf = load<f32>(rstd + (<usize>r << 2));
      const rv = f32x4.splat(rf);
      let sumGX: f64 = 0;
      let i = 0;
      while (i + 4 <= D) {
        let acc = f32x4.splat(0);
        const end = min(D, i + BLOCK) & ~3;
        for (; i < end; i += 4) {
          const o = <usize>i << 2;
          const d = v128.load(pdy + o), xv = v128.load(px + o);
          acc = f32x4.add(acc, f32x4.mul(f32x4.mul(d, v128.load(w + o)), xv));
          v128.store(pw + o, f32x4.add(v128.load(pw + o), f32x4.mul(d, f32x4.mul(xv, rv))));
        }
        sumGX += hsum64(acc);
      }
      for (; i < D; i++) {
        const o = <usize>i << 2;
        const d = load<f32>(pdy + o), xv = load<f32>(px + o);
        sumGX += <f64>d * <f64>load<f32>(w + o) * <f64>xv;
        store<f32>(pw + o, load<f32>(pw + o) + d * (xv * rf));
      }
      const rs = <f64>rf;
      gradRun(pdy, px, w, 1, pdx, D, 0, rs, 0, rs * rs * sumGX / <f64>D);
    }
  }
}

/** out[j] = sum over chunks k of part[k*D + j] (f64, chunks in order), columns [j0, j1). */
export function chunkSums(part: usize, chunks: i32, D: i32, out: usize, j0: i32, j1: i32): void {
  for (let j = j0; j < j1; j++) {
    let s: f64 = 0;
    for (let k = 0; k < chunks; k++) s += <f64>load<f32>(part + (<usize>(k * D + j) << 2));
    store<f32>(out + (<usize>j << 2), <f32>s);
  }
}
