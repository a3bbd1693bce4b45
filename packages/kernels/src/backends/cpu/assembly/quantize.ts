// The fused IBQ quantizer. Each thread owns a range of codebook rows; tokens go through in
// blocks. For one block a thread computes the transposed logits of its rows, L^T = E . z^T
// ([rows, lanes], one GEMM, cached for the block only), then reduces them per token with the
// tokens in SIMD lanes: per-token statistics merge across threads on the host. Memory is
// O(rows x block), never O(tokens x codebook).

import { gemm } from './gemm';
import { expv, hsum64 } from './vmath';

// Per-token statistics of one thread's rows (f64 each): max, argmax, sum e^(l-max),
// sum e^((l-max)/tau), sum e^((l-max)/tau) (l-max).
export const STAT_FIELDS = 5;

@inline function lane(v: v128, j: i32): f32 {
  switch (j) {
    case 0: return f32x4.extract_lane(v, 0);
    case 1: return f32x4.extract_lane(v, 1);
    case 2: return f32x4.extract_lane(v, 2);
  }
  return f32x4.extract_lane(v, 3);
}

@inline function laneI(v: v128, j: i32): i32 {
  switch (j) {
    case 0: return i32x4.extract_lane(v, 0);
    case 1: return i32x4.extract_lane(v, 1);
    case 2: return i32x4.extract_lane(v, 2);
  }
  return i32x4.extract_lane(v, 3);
}

/**
 * Forward pass 1 for one thread: logits of codebook rows [n0, n0+rows) against the token
 * block (GEMM described by `desc`), then per lane the online max / first argmax / exp sums,
 * merged every `chunk` rows. `stats` receives STAT_FIELDS f64 per lane (ldc lanes).
 */
export function ibqFwdPass1(desc: usize, offsets: usize, bufA: usize, bufB: usize, tb: i32,
  cache: usize, ldc: i32, rows: i32, n0: i32, invTau: f32, chunk: i32, stats: usize): void {
  gemm(desc, offsets, 0, 1, 0, rows, 0, tb, bufA, bufB);
  const invT = f32x4.splat(invTau);
  const rowBytes = <usize>ldc << 2;
  for (let g = 0; g < ldc; g += 4) {
    let runMax = f32x4.splat(-Infinity);
    let runArg = i32x4.splat(0);
    let sum0: f64 = 0, sum1: f64 = 0, sum2: f64 = 0, sum3: f64 = 0;
    let sT0: f64 = 0, sT1: f64 = 0, sT2: f64 = 0, sT3: f64 = 0;
    let s10: f64 = 0, s11: f64 = 0, s12: f64 = 0, s13: f64 = 0;
    const col = cache + (<usize>g << 2);
    for (let cs = 0; cs < rows; cs += chunk) {
      const ce = min(rows, cs + chunk);
      let cmax = f32x4.splat(-Infinity);
      let carg = i32x4.splat(0);
      let p = col + <usize>cs * rowBytes;
      for (let n = cs; n < ce; n++) {
        const v = v128.load(p);
        const gt = f32x4.gt(v, cmax);
        cmax = v128.bitselect(v, cmax, gt);
        carg = v128.bitselect(i32x4.splat(n0 + n), carg, gt);
        p += rowBytes;
      }
      // Strictly larger chunk maxima move the argmax: ties keep the earlier row.
      const moved = f32x4.gt(cmax, runMax);
      runArg = v128.bitselect(carg, runArg, moved);
      const newMax = f32x4.max(runMax, cmax);
      const shift = f32x4.sub(runMax, newMax); // <= 0, -inf on the first chunk
      const f = expv(shift), fT = expv(f32x4.mul(shift, invT));
      // Rescale the running sums to the new maximum (skipped while they are empty).
      for (let j = 0; j < 4; j++) {
        const sj = <f64>lane(shift, j), fj = <f64>lane(f, j), fTj = <f64>lane(fT, j);
        if (j == 0) { if (sT0 > 0) { s10 = fTj * (s10 + sj * sT0); sT0 *= fTj; sum0 *= fj; } }
        else if (j == 1) { if (sT1 > 0) { s11 = fTj * (s11 + sj * sT1); sT1 *= fTj; sum1 *= fj; } }
        else if (j == 2) { if (sT2 > 0) { s12 = fTj * (s12 + sj * sT2); sT2 *= fTj; sum2 *= fj; } }
        else { if (sT3 > 0) { s13 = fTj * (s13 + sj * sT3); sT3 *= fTj; sum3 *= fj; } }
      }
      runMax = newMax;
      let accE = f32x4.splat(0), accT = f32x4.splat(0), accS = f32x4.splat(0);
      p = col + <usize>cs * rowBytes;
      for (let n = cs; n < ce; n++) {
        const d = f32x4.sub(v128.load(p), newMax);
        const eT = expv(f32x4.mul(d, invT));
        accE = f32x4.add(accE, expv(d));
        accT = f32x4.add(accT, eT);
        accS = f32x4.add(accS, f32x4.mul(eT, d));
        p += rowBytes;
      }
      sum0 += <f64>f32x4.extract_lane(accE, 0); sum1 += <f64>f32x4.extract_lane(accE, 1);
      sum2 += <f64>f32x4.extract_lane(accE, 2); sum3 += <f64>f32x4.extract_lane(accE, 3);
      sT0 += <f64>f32x4.extract_lane(accT, 0); sT1 += <f64>f32x4.extract_lane(accT, 1);
      sT2 += <f64>f32x4.extract_lane(accT, 2); sT3 += <f64>f32x4.extract_lane(accT, 3);
      s10 += <f64>f32x4.extract_lane(accS, 0); s11 += <f64>f32x4.extract_lane(accS, 1);
      s12 += <f64>f32x4.extract_lane(accS, 2); s13 += <f64>f32x4.extract_lane(accS, 3);
    }
    for (let j = 0; j < 4; j++) {
      const o = stats + <usize>((g + j) * STAT_FIELDS * 8);
      store<f64>(o, <f64>lane(runMax, j));
      store<f64>(o, <f64>laneI(runArg, j), 8);
      store<f64>(o, j == 0 ? sum0 : j == 1 ? sum1 : j == 2 ? sum2 : sum3, 16);
      store<f64>(o, j == 0 ? sT0 : j == 1 ? sT1 : j == 2 ? sT2 : sT3, 24);
      store<f64>(o, j == 0 ? s10 : j == 1 ? s11 : j == 2 ? s12 : s13, 32);
    }
  }
}

/** Lane mask: all ones in lanes g..g+3 that are < tb. */
@inline function laneMask(g: i32, tb: i32): v128 {
  return i32x4.lt_s(i32x4.add(i32x4.splat(g), v128(0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0)), i32x4.splat(tb));
}

/**
 * Forward pass 2: acc[n0+n] += sum over the block's tokens of exp(l/tau - lseT) (the tempered
 * probabilities, for avg_p), from the logits pass 1 cached. lseT holds ldc f32 (block order).
 */
export function ibqFwdPass2(cache: usize, ldc: i32, rows: i32, n0: i32, tb: i32, invTau: f32, lseT: usize, acc: usize): void {
  const invT = f32x4.splat(invTau);
  const rowBytes = <usize>ldc << 2;
  for (let n = 0; n < rows; n++) {
    const row = cache + <usize>n * rowBytes;
    let s = f32x4.splat(0);
    for (let g = 0; g < ldc; g += 4) {
      const o = <usize>g << 2;
      const p = expv(f32x4.sub(f32x4.mul(v128.load(row + o), invT), v128.load(lseT + o)));
      s = f32x4.add(s, v128.and(p, laneMask(g, tb)));
    }
    const a = acc + (<usize>(n0 + n) << 3);
    store<f64>(a, load<f64>(a) + hsum64(s));
  }
}

/** Sum of (a[i] - b[i])^2 over n floats, in f64. */
export function sqDiffSum(a: usize, b: usize, n: i32): f64 {
  let total: f64 = 0;
  let i = 0;
  while (i + 4 <= n) {
    let acc = f32x4.splat(0);
    const end = min(n, i + 1024) & ~3;
    for (; i < end; i += 4) {
      const d = f32x4.sub(v128.load(a + (<usize>i << 2)), v128.load(b + (<usize>i << 2)));
      acc = f32x4.add(acc, f32x4.mul(d, d));
    }
    total += hsum64(acc);
  }
  for (; i < n; i++) { const d = <f64>load<f32>(a + (<usize>i << 2)) - <f64>load<f32>(b + (<usize>i << 2)); total += d * d; }
  return total;
}

/**
 * Backward setup over all tokens: r = codebook[ind] - z (0 codeword for an index outside
 * [0,N)), g = dzq + 2 gq r / M, dz = -4 gq r / M.
 */
export function ibqGradSetup(dzq: usize, z: usize, codebook: usize, ind: usize, T: i32, D: i32, N: i32, gq: f32, M: f32,
  g: usize, dz: usize): void {
  const kg: f32 = <f32>2 * gq / M, kz: f32 = <f32>-4 * gq / M;
  for (let t = 0; t < T; t++) {
    const id = load<i32>(ind + (<usize>t << 2));
    const hit = id >= 0 && id < N;
    for (let d = 0; d < D; d++) {
      const o = <usize>(t * D + d) << 2;
      const e: f32 = hit ? load<f32>(codebook + (<usize>(id * D + d) << 2)) : 0;
      const r = e - load<f32>(z + o);
      store<f32>(g + o, load<f32>(dzq + o) + kg * r);
      store<f32>(dz + o, kz * r);
    }
  }
}

/**
 * Backward pass A for one thread's rows and one token block: the GEMM of [z; g] block
 * against the rows gives L^T (lanes [0, lp)) and G^T (lanes [lp, 2lp)) in the cache
 * (row stride 2 lp); then per-token partial sums over the rows: softDot = sum soft G,
 * H = -sum p log p, cDot = sum c p (f64, 3 x lp at `partial`).
 */
export function ibqGradPassA(desc: usize, offsets: usize, bufA: usize, bufB: usize, lp: i32, tb: i32,
  cache: usize, rows: i32, n0: i32, invTau: f32, lse: usize, lseT: usize, c: usize, partial: usize): void {
  // B columns: tokens [0, tb) of z, then [lp, lp + tb) of g (padding lanes are zero rows).
  gemm(desc, offsets, 0, 1, 0, rows, 0, 2 * lp, bufA, bufB);
  const invT = f32x4.splat(invTau);
  const rowBytes = <usize>(2 * lp) << 2;
  for (let g = 0; g < lp; g += 4) {
    const o = <usize>g << 2;
    const vlse = v128.load(lse + o), vlseT = v128.load(lseT + o);
    let aS = f32x4.splat(0), aH = f32x4.splat(0), aC = f32x4.splat(0);
    let tS = f32x4.splat(0), tH = f32x4.splat(0), tC = f32x4.splat(0);
    let row = cache + o;
    for (let n = 0; n < rows; n++) {
      const l = v128.load(row);
      const gv = v128.load(row + (<usize>lp << 2));
      const soft = expv(f32x4.sub(l, vlse));
      const logp = f32x4.sub(f32x4.mul(l, invT), vlseT);
      const p = expv(logp);
      aS = f32x4.add(aS, f32x4.mul(soft, gv));
      aH = f32x4.sub(aH, f32x4.mul(p, logp));
      aC = f32x4.add(aC, f32x4.mul(p, f32x4.splat(load<f32>(c + (<usize>(n0 + n) << 2)))));
      row += rowBytes;
      if ((n & 255) == 255) {
        // Fold into f64 lanes every 256 rows (kept as f32x4 pairs of partial sums).
        tS = f32x4.add(tS, aS); tH = f32x4.add(tH, aH); tC = f32x4.add(tC, aC);
        aS = f32x4.splat(0); aH = f32x4.splat(0); aC = f32x4.splat(0);
      }
    }
    tS = f32x4.add(tS, aS); tH = f32x4.add(tH, aH); tC = f32x4.add(tC, aC);
    for (let j = 0; j < 4; j++) {
      store<f64>(partial + (<usize>(g + j) << 3), <f64>lane(tS, j));
      store<f64>(partial + (<usize>(lp + g + j) << 3), <f64>lane(tH, j));
      store<f64>(partial + (<usize>(2 * lp + g + j) << 3), <f64>lane(tC, j));
    }
  }
}

/**
 * Backward pass B for one thread's rows and one token block: dlogits into the L^T lanes of
 * the cache, then dz_part = dlogits . E_rows (descDz) and dcodebook_rows += dlogits^T . z
 * (descDe). sums holds softDot, H, cDot per lane (f32, 3 x lp); sc = 1/(T tau).
 */
export function ibqGradPassB(descDz: usize, descDe: usize, offsets: usize, bufA: usize, bufB: usize, lp: i32, tb: i32,
  cache: usize, rows: i32, n0: i32, invTau: f32, lse: usize, lseT: usize, c: usize, sums: usize, gsSc: f32, gaSc: f32, D: i32): void {
  const invT = f32x4.splat(invTau);
  const rowBytes = <usize>(2 * lp) << 2;
  for (let g = 0; g < lp; g += 4) {
    const o = <usize>g << 2;
    const vlse = v128.load(lse + o), vlseT = v128.load(lseT + o);
    const softDot = v128.load(sums + o), H = v128.load(sums + (<usize>lp << 2) + o), cDot = v128.load(sums + (<usize>(2 * lp) << 2) + o);
    const mask = laneMask(g, tb);
    const gs = f32x4.splat(gsSc), ga = f32x4.splat(gaSc);
    let row = cache + o;
    for (let n = 0; n < rows; n++) {
      const l = v128.load(row);
      const gv = v128.load(row + (<usize>lp << 2));
      const soft = expv(f32x4.sub(l, vlse));
      const logp = f32x4.sub(f32x4.mul(l, invT), vlseT);
      const p = expv(logp);
      const cn = f32x4.splat(load<f32>(c + (<usize>(n0 + n) << 2)));
      let dl = f32x4.mul(soft, f32x4.sub(gv, softDot));
      dl = f32x4.sub(dl, f32x4.mul(gs, f32x4.mul(p, f32x4.add(logp, H))));
      dl = f32x4.add(dl, f32x4.mul(ga, f32x4.mul(p, f32x4.sub(cn, cDot))));
      v128.store(row, v128.and(dl, mask));
      row += rowBytes;
    }
  }
  gemm(descDz, offsets, 0, 1, 0, tb, 0, D, bufA, bufB);
  gemm(descDe, offsets, 0, 1, 0, rows, 0, D, bufA, bufB);
}

/** dcodebook[ind_t] += g_t + kb r_t for every token with a valid index (serial: rows repeat). */
export function ibqGradHardPath(g: usize, z: usize, codebook: usize, ind: usize, T: i32, D: i32, N: i32, kb: f32, dE: usize): void {
  for (let t = 0; t < T; t++) {
    const id = load<i32>(ind + (<usize>t << 2));
    if (id < 0 || id >= N) continue;
    for (let d = 0; d < D; d++) {
      const o = <usize>(t * D + d) << 2;
      const e = dE + (<usize>(id * D + d) << 2);
      const r = load<f32>(codebook + (<usize>(id * D + d) << 2)) - load<f32>(z + o);
      store<f32>(e, load<f32>(e) + load<f32>(g + o) + kb * r);
    }
  }
}

/** y[i] += x[i] over n floats. */
export function addInto(x: usize, y: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) { const o = <usize>i << 2; v128.store(y + o, f32x4.add(v128.load(y + o), v128.load(x + o))); }
  for (; i < n; i++) { const o = <usize>i << 2; store<f32>(y + o, load<f32>(y + o) + load<f32>(x + o)); }
}
