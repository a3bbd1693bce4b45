// Attention, flash-style: a work unit is one (batch*head, block of BQ queries) (forward, dq) or
// one (batch*head, block of BK keys) (dk, dv); it walks the other side in blocks, keeping
// only [BQ x BK] score tiles (running max and sum in the forward, the saved lse in the
// backward). Causal masking follows the row: key j is visible to query i iff j <= i + Lk - Lq.
// Units go to threads round-robin (unit u on thread u % threads); every unit's arithmetic is
// the same whatever thread runs it, so the results do not depend on the thread count.
//
// Tiles are small GEMMs (tileGemm): a 2x16 register block of f32x4 accumulators, A read by
// splat loads through (row, k) strides, B row-major with its width padded to a multiple of 16.

import { expv, hmax, hsum, hsum64, madd } from './vmath';

export const BQ = 32;
export const BK = 64;

@inline function pad16(n: i32): i32 { return (n + 15) & ~15; }

/**
 * C[m x n] (+)= A[m x k] . B[k x n], n a multiple of 16. A(i, p) at a + 4 (i sam + p sak); B
 * row-major with ldb floats per row; C row-major with ldc floats per row. Each element of C
 * sums its k products in order, whatever the tile it falls in. A 2x16 register block (as the
 * GEMM's micro-kernel: fewer splat loads of A than 4x8, which V8 runs ~1.6x slower).
 */
function tileGemm(m: i32, n: i32, k: i32, a: usize, sam: i32, sak: i32, b: usize, ldb: i32, c: usize, ldc: i32, add: bool): void {
  const sa = <usize>sak << 2, sb = <usize>ldb << 2, rs = <usize>sam << 2;
  for (let i = 0; i < m; i += 2) {
    const two = i + 1 < m;
    const a0 = a + <usize>i * rs;
    const a1 = two ? a0 + rs : a0; // a lone last row is computed twice, stored once
    for (let j = 0; j < n; j += 16) {
      let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c02 = f32x4.splat(0), c03 = f32x4.splat(0);
      let c10 = f32x4.splat(0), c11 = f32x4.splat(0), c12 = f32x4.splat(0), c13 = f32x4.splat(0);
      let p0 = a0, p1 = a1, pb = b + (<usize>j << 2);
      for (let p = 0; p < k; p++) {
        const b0 = v128.load(pb), b1 = v128.load(pb, 16), b2 = v128.load(pb, 32), b3 = v128.load(pb, 48);
        let av = v128.load32_splat(p0);
        c00 = madd(av, b0, c00); c01 = madd(av, b1, c01);
        c02 = madd(av, b2, c02); c03 = madd(av, b3, c03);
        av = v128.load32_splat(p1);
        c10 = madd(av, b0, c10); c11 = madd(av, b1, c11);
        c12 = madd(av, b2, c12); c13 = madd(av, b3, c13);
        p0 += sa; p1 += sa; pb += sb;
      }
      const pc = c + (<usize>(i * ldc + j) << 2);
      if (add) {
        v128.store(pc, f32x4.add(v128.load(pc), c00)); v128.store(pc, f32x4.add(v128.load(pc, 16), c01), 16);
        v128.store(pc, f32x4.add(v128.load(pc, 32), c02), 32); v128.store(pc, f32x4.add(v128.load(pc, 48), c03), 48);
      } else {
        v128.store(pc, c00); v128.store(pc, c01, 16); v128.store(pc, c02, 32); v128.store(pc, c03, 48);
      }
      if (two) {
        const pd = pc + (<usize>ldc << 2);
        if (add) {
          v128.store(pd, f32x4.add(v128.load(pd), c10)); v128.store(pd, f32x4.add(v128.load(pd, 16), c11), 16);
          v128.store(pd, f32x4.add(v128.load(pd, 32), c12), 32); v128.store(pd, f32x4.add(v128.load(pd, 48), c13), 48);
        } else {
          v128.store(pd, c10); v128.store(pd, c11, 16); v128.store(pd, c12, 32); v128.store(pd, c13, 48);
        }
      }
    }
  }
}

/** dst[d * BK + jj] = src[jj * width + d] for jj < rows (0 for rows <= jj < BK), d < width. */
function packTransposed(src: usize, rows: i32, width: i32, dst: usize): void {
  for (let d = 0; d < width; d++) {
    const row = dst + (<usize>(d * BK) << 2);
    let p = src + (<usize>d << 2);
    const step = <usize>width << 2;
    let jj = 0;
    for (; jj < rows; jj++) { store<f32>(row + (<usize>jj << 2), load<f32>(p)); p += step; }
    for (; jj < BK; jj++) store<f32>(row + (<usize>jj << 2), 0);
  }
}

/** dst[r * ld + c] = src[r * width + c] for c < width, 0 for width <= c < ld; rows r < rows. */
function packRows(src: usize, rows: i32, width: i32, dst: usize, ld: i32): void {
  for (let r = 0; r < rows; r++) {
    const d = dst + (<usize>(r * ld) << 2);
    memory.copy(d, src + (<usize>(r * width) << 2), <usize>width << 2);
    if (ld > width) memory.fill(d + (<usize>width << 2), 0, <usize>(ld - width) << 2);
  }
}

/** Keys of the block [j0, j0 + bk) visible to query i: a count in [0, bk] (a prefix of the block). */
@inline function visible(causal: bool, i: i32, off: i32, j0: i32, bk: i32): i32 {
  if (!causal) return bk;
  return max(0, min(bk, i + off - j0 + 1));
}

/** Bytes of per-thread scratch of attnFwd. */
export function attnFwdScratch(D: i32, Dv: i32): i32 {
  const Dvp = pad16(Dv);
  return (D * BK + BK * Dvp + BQ * BK + BQ * Dvp + 2 * BQ) * 4;
}

/**
 * Forward. Units u = bh * nqb + qb (nqb = ceil(Lq / BQ)), u = tid, tid + threads, ...
 * out [BH, Lq, Dv], lse [BH, Lq].
 */
export function attnFwd(q: usize, k: usize, v: usize, out: usize, lse: usize, BH: i32, Lq: i32, Lk: i32, D: i32, Dv: i32,
  scale: f32, causal: bool, scratch: usize, tid: i32, threads: i32): void {
  const Dvp = pad16(Dv);
  const kt = scratch;
  const vp = kt + (<usize>(D * BK) << 2);
  const s = vp + (<usize>(BK * Dvp) << 2);
  const o = s + (<usize>(BQ * BK) << 2);
  const mrow = o + (<usize>(BQ * Dvp) << 2);
  const lrow = mrow + (<usize>BQ << 2);
  const off = Lk - Lq;
  const nqb = (Lq + BQ - 1) / BQ;
  const units = BH * nqb;
  const sv = f32x4.splat(scale);
  const ninf = f32x4.splat(-Infinity);
  for (let u = tid; u < units; u += threads) {
    const bh = u / nqb, i0 = (u - bh * nqb) * BQ;
    const bq = min(BQ, Lq - i0);
    const qb = q + (<usize>((bh * Lq + i0) * D) << 2);
    const kb = k + (<usize>(bh * Lk * D) << 2), vb = v + (<usize>(bh * Lk * Dv) << 2);
    const kEnd = causal ? min(Lk, i0 + bq - 1 + off + 1) : Lk;
    memory.fill(o, 0, <usize>(bq * Dvp) << 2);
    for (let ii = 0; ii < bq; ii++) {
      store<f32>(mrow + (<usize>ii << 2), -Infinity);
      store<f32>(lrow + (<usize>ii << 2), 0);
    }
    for (let j0 = 0; j0 < kEnd; j0 += BK) {
      const bk = min(BK, kEnd - j0);
      packTransposed(kb + (<usize>(j0 * D) << 2), bk, D, kt);
      packRows(vb + (<usize>(j0 * Dv) << 2), bk, Dv, vp, Dvp);
      tileGemm(bq, BK, D, qb, D, 1, kt, BK, s, BK, false);
      for (let ii = 0; ii < bq; ii++) {
        const row = s + (<usize>(ii * BK) << 2);
        const nv = visible(causal, i0 + ii, off, j0, bk);
        // Scale, mask the invisible keys (and the padding) to -inf, take the block maximum.
        let bmax = ninf;
        for (let jj = 0; jj < BK; jj += 4) {
          const lanes = i32x4.lt_s(i32x4.add(i32x4.splat(jj), v128(0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0)), i32x4.splat(nv));
          const x = v128.bitselect(f32x4.mul(v128.load(row + (<usize>jj << 2)), sv), ninf, lanes);
          v128.store(row + (<usize>jj << 2), x);
          bmax = f32x4.max(bmax, x);
        }
        const mOld = load<f32>(mrow + (<usize>ii << 2));
        const mNew = max(mOld, hmax(bmax));
        if (mNew == -Infinity) {
          memory.fill(row, 0, BK << 2);
          continue;
        }
        const mv = f32x4.splat(mNew);
        let acc = f32x4.splat(0);
        for (let jj = 0; jj < BK; jj += 4) {
          const p = expv(f32x4.sub(v128.load(row + (<usize>jj << 2)), mv));
          v128.store(row + (<usize>jj << 2), p);
          acc = f32x4.add(acc, p);
        }
        const alpha: f32 = mOld == -Infinity ? 0 : <f32>Math.exp(<f64>mOld - <f64>mNew);
        store<f32>(lrow + (<usize>ii << 2), load<f32>(lrow + (<usize>ii << 2)) * alpha + hsum(acc));
        store<f32>(mrow + (<usize>ii << 2), mNew);
        if (alpha != 1) {
          const orow = o + (<usize>(ii * Dvp) << 2);
          const av = f32x4.splat(alpha);
          for (let c = 0; c < Dvp; c += 4) v128.store(orow + (<usize>c << 2), f32x4.mul(v128.load(orow + (<usize>c << 2)), av));
        }
      }
      tileGemm(bq, Dvp, bk, s, BK, 1, vp, Dvp, o, Dvp, true);
    }
    for (let ii = 0; ii < bq; ii++) {
      const l = load<f32>(lrow + (<usize>ii << 2));
      const orow = o + (<usize>(ii * Dvp) << 2);
      const dst = out + (<usize>((bh * Lq + i0 + ii) * Dv) << 2);
      const inv: f32 = l > 0 ? <f32>(1 / <f64>l) : 0;
      for (let c = 0; c < Dv; c++) store<f32>(dst + (<usize>c << 2), load<f32>(orow + (<usize>c << 2)) * inv);
      const r: f64 = l > 0 ? <f64>load<f32>(mrow + (<usize>ii << 2)) + Math.log(<f64>l) : -Infinity;
      store<f32>(lse + (<usize>(bh * Lq + i0 + ii) << 2), <f32>r);
    }
  }
}

/**
 * P = exp(scale S - lse_i) on the visible keys (0 elsewhere) into `s`, and dS = P (dP - D_i) scale
 * into `dp`, for the bq x BK tiles of the query rows i0.. against keys j0.. (bk of them).
 */
function softmaxGradTile(s: usize, dp: usize, bq: i32, i0: i32, j0: i32, bk: i32, off: i32, causal: bool,
  lse: usize, dvec: usize, scale: f32): void {
  const sv = f32x4.splat(scale);
  for (let ii = 0; ii < bq; ii++) {
    const row = s + (<usize>(ii * BK) << 2), drow = dp + (<usize>(ii * BK) << 2);
    const nv = visible(causal, i0 + ii, off, j0, bk);
    const lv = f32x4.splat(load<f32>(lse + (<usize>(i0 + ii) << 2)));
    const di = f32x4.splat(load<f32>(dvec + (<usize>(i0 + ii) << 2)));
    for (let jj = 0; jj < BK; jj += 4) {
      const lanes = i32x4.lt_s(i32x4.add(i32x4.splat(jj), v128(0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0)), i32x4.splat(nv));
      const o = <usize>jj << 2;
      const p = v128.and(expv(f32x4.sub(f32x4.mul(v128.load(row + o), sv), lv)), lanes);
      v128.store(row + o, p);
      v128.store(drow + o, f32x4.mul(f32x4.mul(p, f32x4.sub(v128.load(drow + o), di)), sv));
    }
  }
}

/** Bytes of per-thread scratch of attnBwdDq. */
export function attnDqScratch(D: i32, Dv: i32): i32 {
  const Dp = pad16(D);
  return (D * BK + Dv * BK + BK * Dp + 2 * BQ * BK + BQ * Dp) * 4;
}

/**
 * Backward, query side: D_i = dout_i . out_i (into dvec [BH, Lq]) and dq. Units as attnFwd.
 */
export function attnBwdDq(dout: usize, q: usize, k: usize, v: usize, out: usize, lse: usize, dq: usize, dvec: usize,
  BH: i32, Lq: i32, Lk: i32, D: i32, Dv: i32, scale: f32, causal: bool, scratch: usize, tid: i32, threads: i32): void {
  const Dp = pad16(D);
  const kt = scratch;
  const vt = kt + (<usize>(D * BK) << 2);
  const kp = vt + (<usize>(Dv * BK) << 2);
  const s = kp + (<usize>(BK * Dp) << 2);
  const dp = s + (<usize>(BQ * BK) << 2);
  const acc = dp + (<usize>(BQ * BK) << 2);
  const off = Lk - Lq;
  const nqb = (Lq + BQ - 1) / BQ;
  const units = BH * nqb;
  for (let u = tid; u < units; u += threads) {
    const bh = u / nqb, i0 = (u - bh * nqb) * BQ;
    const bq = min(BQ, Lq - i0);
    const qb = q + (<usize>((bh * Lq + i0) * D) << 2);
    const gb = dout + (<usize>((bh * Lq + i0) * Dv) << 2);
    const kb = k + (<usize>(bh * Lk * D) << 2), vb = v + (<usize>(bh * Lk * Dv) << 2);
    const lrow = lse + (<usize>(bh * Lq) << 2), drow = dvec + (<usize>(bh * Lq) << 2);
    for (let ii = 0; ii < bq; ii++) {
      const o = <usize>(ii * Dv) << 2;
      store<f32>(drow + (<usize>(i0 + ii) << 2), <f32>dotRun(gb + o, out + (<usize>((bh * Lq + i0) * Dv) << 2) + o, Dv));
    }
    const kEnd = causal ? min(Lk, i0 + bq - 1 + off + 1) : Lk;
    memory.fill(acc, 0, <usize>(bq * Dp) << 2);
    for (let j0 = 0; j0 < kEnd; j0 += BK) {
      const bk = min(BK, kEnd - j0);
      packTransposed(kb + (<usize>(j0 * D) << 2), bk, D, kt);
      packTransposed(vb + (<usize>(j0 * Dv) << 2), bk, Dv, vt);
      packRows(kb + (<usize>(j0 * D) << 2), bk, D, kp, Dp);
      tileGemm(bq, BK, D, qb, D, 1, kt, BK, s, BK, false);
      tileGemm(bq, BK, Dv, gb, Dv, 1, vt, BK, dp, BK, false);
      softmaxGradTile(s, dp, bq, i0, j0, bk, off, causal, lrow, drow, scale);
      tileGemm(bq, Dp, bk, dp, BK, 1, kp, Dp, acc, Dp, true);
    }
    for (let ii = 0; ii < bq; ii++) {
      memory.copy(dq + (<usize>((bh * Lq + i0 + ii) * D) << 2), acc + (<usize>(ii * Dp) << 2), <usize>D << 2);
    }
  }
}

/** Bytes of per-thread scratch of attnBwdDkv. */
export function attnDkvScratch(D: i32, Dv: i32): i32 {
  const Dp = pad16(D), Dvp = pad16(Dv);
  return (D * BK + Dv * BK + BQ * Dp + BQ * Dvp + 2 * BQ * BK + BK * Dp + BK * Dvp) * 4;
}

/**
 * Backward, key side: dk and dv for units u = bh * nkb + kb (nkb = ceil(Lk / BK)), from the
 * D_i that attnBwdDq left in dvec.
 */
export function attnBwdDkv(dout: usize, q: usize, k: usize, v: usize, lse: usize, dvec: usize, dk: usize, dv: usize,
  BH: i32, Lq: i32, Lk: i32, D: i32, Dv: i32, scale: f32, causal: bool, scratch: usize, tid: i32, threads: i32): void {
  const Dp = pad16(D), Dvp = pad16(Dv);
  const kt = scratch;
  const vt = kt + (<usize>(D * BK) << 2);
  const qp = vt + (<usize>(Dv * BK) << 2);
  const gp = qp + (<usize>(BQ * Dp) << 2);
  const s = gp + (<usize>(BQ * Dvp) << 2);
  const dp = s + (<usize>(BQ * BK) << 2);
  const dkAcc = dp + (<usize>(BQ * BK) << 2);
  const dvAcc = dkAcc + (<usize>(BK * Dp) << 2);
  const off = Lk - Lq;
  const nkb = (Lk + BK - 1) / BK;
  const units = BH * nkb;
  for (let u = tid; u < units; u += threads) {
    const bh = u / nkb, j0 = (u - bh * nkb) * BK;
    const bk = min(BK, Lk - j0);
    const kb = k + (<usize>((bh * Lk + j0) * D) << 2), vb = v + (<usize>((bh * Lk + j0) * Dv) << 2);
    const lrow = lse + (<usize>(bh * Lq) << 2), drow = dvec + (<usize>(bh * Lq) << 2);
    packTransposed(kb, bk, D, kt);
    packTransposed(vb, bk, Dv, vt);
    memory.fill(dkAcc, 0, <usize>(bk * Dp) << 2);
    memory.fill(dvAcc, 0, <usize>(bk * Dvp) << 2);
    const qStart = causal ? max(0, j0 - off) : 0;
    for (let i0 = qStart; i0 < Lq; i0 += BQ) {
      const bq = min(BQ, Lq - i0);
      const qb = q + (<usize>((bh * Lq + i0) * D) << 2);
      const gb = dout + (<usize>((bh * Lq + i0) * Dv) << 2);
      packRows(qb, bq, D, qp, Dp);
      packRows(gb, bq, Dv, gp, Dvp);
      tileGemm(bq, BK, D, qb, D, 1, kt, BK, s, BK, false);
      tileGemm(bq, BK, Dv, gb, Dv, 1, vt, BK, dp, BK, false);
      softmaxGradTile(s, dp, bq, i0, j0, bk, off, causal, lrow, drow, scale);
      tileGemm(bk, Dvp, bq, s, 1, BK, gp, Dvp, dvAcc, Dvp, true);
      tileGemm(bk, Dp, bq, dp, 1, BK, qp, Dp, dkAcc, Dp, true);
    }
    for (let jj = 0; jj < bk; jj++) {
      memory.copy(dk + (<usize>((bh * Lk + j0 + jj) * D) << 2), dkAcc + (<usize>(jj * Dp) << 2), <usize>D << 2);
      memory.copy(dv + (<usize>((bh * Lk + j0 + jj) * Dv) << 2), dvAcc + (<usize>(jj * Dvp) << 2), <usize>Dv << 2);
    }
  }
}

/** sum of a[i] * b[i] over n contiguous floats, in f64. */
function dotRun(a: usize, b: usize, n: i32): f64 {
  let total: f64 = 0;
  let i = 0;
  while (i + 4 <= n) {
    let acc = f32x4.splat(0);
    const end = min(n, i + 256) & ~3;
    for (; i < end; i += 4) {
      const o = <usize>i << 2;
      acc = f32x4.add(acc, f32x4.mul(v128.load(a + o), v128.load(b + o)));
    }
    total += hsum64(acc);
  }
  for (; i < n; i++) { const o = <usize>i << 2; total += <f64>load<f32>(a + o) * <f64>load<f32>(b + o); }
  return total;
}
