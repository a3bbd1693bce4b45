// The fused IBQ quantizer. A work unit computes the transposed logits of some codebook rows
// against a block of tokens, L^T = E . z^T ([rows, lanes], one GEMM), then reduces them per
// token with the tokens in SIMD lanes. Codebook units (large codebooks) take a range of rows
// per unit while tokens go through in blocks, with per-token statistics merged across units on
// the host (memory O(rows x block), never O(tokens x codebook)); token items (small codebooks,
// at the end of this file) take all rows against one block of tokens, so a token's statistics
// are complete inside its item. kernels/quantize.ts picks the scheme from the shape.

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

/** Bytes of per-thread state of ibqFwdPass1 for `ldc` lanes. */
export function ibqFwdPass1State(ldc: i32): i32 {
  return ldc * (7 * 4 + 3 * 8);
}

/**
 * Forward pass 1 for one unit: logits of codebook rows [n0, n0+rows) against the token
 * block (GEMM described by `desc`), then per lane the online max / first argmax / exp sums,
 * merged every `chunk` rows. `stats` receives STAT_FIELDS f64 per lane (ldc lanes). The rows
 * are walked in order with the per-lane running values in `st` (ibqFwdPass1State bytes, L1
 * sized): the cache is read row by row, contiguously. The cache is left holding
 * e^((l - M_k)/tau), M_k the running maximum after chunk k, saved per lane in `chunkMax`
 * ([chunks, ldc] f32), for ibqFwdPass2.
 */
export function ibqFwdPass1(desc: usize, offsets: usize, bufA: usize, bufB: usize, tb: i32,
  cache: usize, ldc: i32, rows: i32, n0: i32, invTau: f32, chunk: i32, stats: usize, st: usize, chunkMax: usize): void {
  gemm(desc, offsets, 0, 1, 0, rows, 0, tb, bufA, bufB);
  const L = <usize>ldc << 2;
  const runMax = st, runArg = runMax + L, cmax = runArg + L, carg = cmax + L;
  const accE = carg + L, accT = accE + L, accS = accT + L;
  const sum = accS + L, sT = sum + (L << 1), s1 = sT + (L << 1);
  const invT = f32x4.splat(invTau);
  const ninf = f32x4.splat(-Infinity), zero = f32x4.splat(0);
  for (let g: usize = 0; g < L; g += 16) {
    v128.store(runMax + g, ninf);
    v128.store(runArg + g, zero);
  }
  memory.fill(sum, 0, L * 6);
  for (let cs = 0; cs < rows; cs += chunk) {
    const ce = min(rows, cs + chunk);
    for (let g: usize = 0; g < L; g += 16) {
      v128.store(cmax + g, ninf);
      v128.store(carg + g, zero);
    }
    let row = cache + <usize>cs * L;
    for (let n = cs; n < ce; n++) {
      const nv = i32x4.splat(n0 + n);
      for (let g: usize = 0; g < L; g += 16) {
        const v = v128.load(row + g), cm = v128.load(cmax + g);
        const gt = f32x4.gt(v, cm);
        v128.store(cmax + g, v128.bitselect(v, cm, gt));
        v128.store(carg + g, v128.bitselect(nv, v128.load(carg + g), gt));
      }
      row += L;
    }
    for (let g: usize = 0; g < L; g += 16) {
      const rm = v128.load(runMax + g), cm = v128.load(cmax + g);
      // Strictly larger chunk maxima move the argmax: ties keep the earlier row.
      const moved = f32x4.gt(cm, rm);
      v128.store(runArg + g, v128.bitselect(v128.load(carg + g), v128.load(runArg + g), moved));
      const newMax = f32x4.max(rm, cm);
      const shift = f32x4.sub(rm, newMax); // <= 0, -inf on the first chunk
      const f = expv(shift), fT = expv(f32x4.mul(shift, invT));
      // Rescale the running sums to the new maximum (skipped while they are empty).
      for (let j = 0; j < 4; j++) {
        const o = (g << 1) + (<usize>j << 3);
        const sTj = load<f64>(sT + o);
        if (sTj > 0) {
          const sj = <f64>lane(shift, j), fj = <f64>lane(f, j), fTj = <f64>lane(fT, j);
          store<f64>(s1 + o, fTj * (load<f64>(s1 + o) + sj * sTj));
          store<f64>(sT + o, sTj * fTj);
          store<f64>(sum + o, load<f64>(sum + o) * fj);
        }
      }
      v128.store(runMax + g, newMax);
      v128.store(chunkMax + <usize>(cs / chunk) * L + g, newMax);
      v128.store(accE + g, zero);
      v128.store(accT + g, zero);
      v128.store(accS + g, zero);
    }
    row = cache + <usize>cs * L;
    for (let n = cs; n < ce; n++) {
      for (let g: usize = 0; g < L; g += 16) {
        const d = f32x4.sub(v128.load(row + g), v128.load(runMax + g));
        const eT = expv(f32x4.mul(d, invT));
        v128.store(row + g, eT);
        v128.store(accE + g, f32x4.add(v128.load(accE + g), expv(d)));
        v128.store(accT + g, f32x4.add(v128.load(accT + g), eT));
        v128.store(accS + g, f32x4.add(v128.load(accS + g), f32x4.mul(eT, d)));
      }
      row += L;
    }
    for (let j: usize = 0; j < <usize>ldc; j++) {
      const o = j << 3, q = j << 2;
      store<f64>(sum + o, load<f64>(sum + o) + <f64>load<f32>(accE + q));
      store<f64>(sT + o, load<f64>(sT + o) + <f64>load<f32>(accT + q));
      store<f64>(s1 + o, load<f64>(s1 + o) + <f64>load<f32>(accS + q));
    }
  }
  for (let j: usize = 0; j < <usize>ldc; j++) {
    const o = stats + j * STAT_FIELDS * 8;
    store<f64>(o, <f64>load<f32>(runMax + (j << 2)));
    store<f64>(o, <f64>load<i32>(runArg + (j << 2)), 8);
    store<f64>(o, load<f64>(sum + (j << 3)), 16);
    store<f64>(o, load<f64>(sT + (j << 3)), 24);
    store<f64>(o, load<f64>(s1 + (j << 3)), 32);
  }
}

/** Lane mask: all ones in lanes g..g+3 that are < tb. */
@inline function laneMask(g: i32, tb: i32): v128 {
  return i32x4.lt_s(i32x4.add(i32x4.splat(g), v128(0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0)), i32x4.splat(tb));
}

/**
 * Forward pass 2: acc[n0+n] += sum over the block's tokens of p = exp(l/tau - lseT) (the
 * tempered probabilities, for avg_p). Pass 1 left e^((l - M_k)/tau) in the cache, so p is that
 * times w_k = exp(M_k/tau - lseT) (<= 1), one exp per lane and chunk instead of one per logit.
 * lseT holds ldc f32 (block order); `w` is 2 ldc f32 of per-thread scratch (w_k, lane masks:
 * the cache's padding lanes hold whatever was there).
 */
export function ibqFwdPass2(cache: usize, ldc: i32, rows: i32, n0: i32, tb: i32, invTau: f32, lseT: usize, acc: usize,
  chunk: i32, chunkMax: usize, w: usize): void {
  const invT = f32x4.splat(invTau);
  const L = <usize>ldc << 2;
  for (let cs = 0; cs < rows; cs += chunk) {
    const ce = min(rows, cs + chunk);
    const cm = chunkMax + <usize>(cs / chunk) * L;
    for (let g: usize = 0; g < L; g += 16) {
      v128.store(w + g, expv(f32x4.sub(f32x4.mul(v128.load(cm + g), invT), v128.load(lseT + g))));
      v128.store(w + L + g, laneMask(<i32>(g >> 2), tb));
    }
    let row = cache + <usize>cs * L;
    for (let n = cs; n < ce; n++) {
      let s = f32x4.splat(0);
      for (let g: usize = 0; g < L; g += 16) {
        s = f32x4.add(s, v128.and(f32x4.mul(v128.load(row + g), v128.load(w + g)), v128.load(w + L + g)));
      }
      const a = acc + (<usize>(n0 + n) << 3);
      store<f64>(a, load<f64>(a) + hsum64(s));
      row += L;
    }
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

/** Bytes of per-thread state of ibqGradPassA for `lp` lanes. */
export function ibqGradPassAState(lp: i32): i32 {
  return lp * 6 * 4;
}

/**
 * Backward pass A for one unit's rows and one token block: the GEMM of [z; g] block
 * against the rows gives L^T (lanes [0, lp)) and G^T (lanes [lp, 2lp)) in the cache
 * (row stride 2 lp); then gradSums over the rows.
 */
export function ibqGradPassA(desc: usize, offsets: usize, bufA: usize, bufB: usize, lp: i32, tb: i32,
  cache: usize, rows: i32, n0: i32, invTau: f32, lse: usize, lseT: usize, c: usize, partial: usize, st: usize): void {
  // B columns: tokens [0, tb) of z, then [lp, lp + tb) of g (padding lanes are zero rows).
  gemm(desc, offsets, 0, 1, 0, rows, 0, 2 * lp, bufA, bufB);
  const L = <usize>lp << 2;
  gradSums(cache, L << 1, L, 0, lp, rows, n0, invTau, lse, lseT, c, partial, st, 0, 0);
}

/**
 * Per-token partial sums over codebook rows [n0, n0+rows) of logits L^T and G^T = E.g^T held
 * in `cache` (row stride `ldr` bytes, G^T at `gOff` bytes after L^T in a row), lanes [0, lp):
 * softDot = sum soft G, H = -sum p log p, cDot = sum c p (f64, 3 x lp at `partial`). Rows are
 * walked in order with the per-lane sums in `st` (ibqGradPassAState bytes). With `pOff` > 0
 * the row keeps what dlogits needs (gradDlogitsKept), so it needs no exp again: soft in the
 * L^T lanes, X = soft G + p (ga c - gs log p) in the G^T lanes, p at `pOff` bytes.
 */
function gradSums(cache: usize, ldr: usize, gOff: usize, pOff: usize, lp: i32, rows: i32, n0: i32, invTau: f32, lse: usize, lseT: usize,
  c: usize, partial: usize, st: usize, gsSc: f32, gaSc: f32): void {
  const invT = f32x4.splat(invTau);
  const gs = f32x4.splat(gsSc), ga = f32x4.splat(gaSc);
  const L = <usize>lp << 2;
  const aS = st, aH = aS + L, aC = aH + L, tS = aC + L, tH = tS + L, tC = tH + L;
  memory.fill(st, 0, L * 6);
  let row = cache;
  for (let n = 0; n < rows; n++) {
    const cn = f32x4.splat(load<f32>(c + (<usize>(n0 + n) << 2)));
    for (let g: usize = 0; g < L; g += 16) {
      const l = v128.load(row + g);
      const gv = v128.load(row + gOff + g);
      const soft = expv(f32x4.sub(l, v128.load(lse + g)));
      const logp = f32x4.sub(f32x4.mul(l, invT), v128.load(lseT + g));
      const p = expv(logp);
      const sg = f32x4.mul(soft, gv), pl = f32x4.mul(p, logp), pc = f32x4.mul(p, cn);
      v128.store(aS + g, f32x4.add(v128.load(aS + g), sg));
      v128.store(aH + g, f32x4.sub(v128.load(aH + g), pl));
      v128.store(aC + g, f32x4.add(v128.load(aC + g), pc));
      if (pOff) {
        v128.store(row + g, soft);
        v128.store(row + gOff + g, f32x4.add(sg, f32x4.sub(f32x4.mul(ga, pc), f32x4.mul(gs, pl))));
        v128.store(row + pOff + g, p);
      }
    }
    row += ldr;
    if ((n & 255) == 255) {
      // Fold every 256 rows (kept as f32x4 pairs of partial sums).
      for (let g: usize = 0; g < L; g += 16) {
        v128.store(tS + g, f32x4.add(v128.load(tS + g), v128.load(aS + g))); v128.store(aS + g, f32x4.splat(0));
        v128.store(tH + g, f32x4.add(v128.load(tH + g), v128.load(aH + g))); v128.store(aH + g, f32x4.splat(0));
        v128.store(tC + g, f32x4.add(v128.load(tC + g), v128.load(aC + g))); v128.store(aC + g, f32x4.splat(0));
      }
    }
  }
  for (let j: usize = 0; j < <usize>lp; j++) {
    const q = j << 2;
    store<f64>(partial + (j << 3), <f64>(load<f32>(tS + q) + load<f32>(aS + q)));
    store<f64>(partial + (<usize>(lp + <i32>j) << 3), <f64>(load<f32>(tH + q) + load<f32>(aH + q)));
    store<f64>(partial + (<usize>(2 * lp + <i32>j) << 3), <f64>(load<f32>(tC + q) + load<f32>(aC + q)));
  }
}

/**
 * dlogits from what gradSums kept (soft, X, p): X - softDot soft - k p with k = gs H + ga cDot,
 * the terms of gradDlogits regrouped, into the L^T lanes (lanes >= tb get 0). `sk` holds
 * softDot then k per lane (f32, 2 x lp).
 */
function gradDlogitsKept(cache: usize, ldr: usize, gOff: usize, pOff: usize, lp: i32, tb: i32, rows: i32, sk: usize): void {
  const L = <usize>lp << 2;
  let row = cache;
  for (let n = 0; n < rows; n++) {
    for (let g: usize = 0; g < L; g += 16) {
      const dl = f32x4.sub(f32x4.sub(v128.load(row + gOff + g), f32x4.mul(v128.load(sk + g), v128.load(row + g))),
        f32x4.mul(v128.load(sk + L + g), v128.load(row + pOff + g)));
      v128.store(row + g, v128.and(dl, laneMask(<i32>(g >> 2), tb)));
    }
    row += ldr;
  }
}

/**
 * Backward pass B for one thread's rows and one token block: dlogits into the L^T lanes of
 * the cache (gradDlogits), then dz_part = dlogits . E_rows (descDz) and dcodebook_rows +=
 * dlogits^T . z (descDe).
 */
export function ibqGradPassB(descDz: usize, descDe: usize, offsets: usize, bufA: usize, bufB: usize, lp: i32, tb: i32,
  cache: usize, rows: i32, n0: i32, invTau: f32, lse: usize, lseT: usize, c: usize, sums: usize, gsSc: f32, gaSc: f32, D: i32): void {
  const L = <usize>lp << 2;
  gradDlogits(cache, L << 1, L, lp, tb, rows, n0, invTau, lse, lseT, c, sums, gsSc, gaSc);
  gemm(descDz, offsets, 0, 1, 0, tb, 0, D, bufA, bufB);
  gemm(descDe, offsets, 0, 1, 0, rows, 0, D, bufA, bufB);
}

/**
 * dlogits over codebook rows [n0, n0+rows) into the L^T lanes of `cache` (layout as in
 * gradSums; lanes >= tb get 0). sums holds softDot, H, cDot per lane (f32, 3 x lp);
 * sc = 1/(T tau).
 */
function gradDlogits(cache: usize, ldr: usize, gOff: usize, lp: i32, tb: i32, rows: i32, n0: i32, invTau: f32,
  lse: usize, lseT: usize, c: usize, sums: usize, gsSc: f32, gaSc: f32): void {
  const invT = f32x4.splat(invTau);
  const L = <usize>lp << 2;
  const softDot = sums, H = sums + L, cDot = sums + (L << 1);
  const gs = f32x4.splat(gsSc), ga = f32x4.splat(gaSc);
  let row = cache;
  for (let n = 0; n < rows; n++) {
    const cn = f32x4.splat(load<f32>(c + (<usize>(n0 + n) << 2)));
    for (let g: usize = 0; g < L; g += 16) {
      const l = v128.load(row + g);
      const gv = v128.load(row + gOff + g);
      const soft = expv(f32x4.sub(l, v128.load(lse + g)));
      const logp = f32x4.sub(f32x4.mul(l, invT), v128.load(lseT + g));
      const p = expv(logp);
      let dl = f32x4.mul(soft, f32x4.sub(gv, v128.load(softDot + g)));
      dl = f32x4.sub(dl, f32x4.mul(gs, f32x4.mul(p, f32x4.add(logp, v128.load(H + g)))));
      dl = f32x4.add(dl, f32x4.mul(ga, f32x4.mul(p, f32x4.sub(cn, v128.load(cDot + g)))));
      v128.store(row + g, v128.and(dl, laneMask(<i32>(g >> 2), tb)));
    }
    row += ldr;
  }
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

// ---------------------------------------------------------------------------------------------
// Dynamic scheduling over codebook units. The host cuts the codebook into units of rows (their
// number does not depend on the thread count) and describes each in a table of UNIT_FIELDS
// i32s; threads take units from the i32 counter at `counter` (zero before each call) until none
// is left. Everything a unit computes belongs to it (its rows' cache, statistics, partial sums,
// dcodebook rows, dz partial), so the results do not depend on which thread takes which unit.

export const UNIT_FIELDS = 16;
// Unit table fields (i32 index).
const U_N0 = 0, U_ROWS = 1, U_DESC = 2, U_CACHE = 3, U_STATS = 4, U_PARTIAL = 5, U_DZPART = 6, U_DESC_DZ = 7, U_DESC_DE = 8, U_CMAX = 9;

@inline function uf(table: usize, u: i32, f: i32): i32 { return load<i32>(table + (<usize>(u * UNIT_FIELDS + f) << 2)); }

export function ibqFwdPass1Units(table: usize, units: i32, counter: usize, offsets: usize, bufA: usize, bufB: usize,
  tb: i32, ldc: i32, invTau: f32, chunk: i32, st: usize): void {
  for (;;) {
    const u = atomic.add<i32>(counter, 1);
    if (u >= units) break;
    ibqFwdPass1(<usize>uf(table, u, U_DESC), offsets, bufA, bufB, tb, <usize>uf(table, u, U_CACHE), ldc,
      uf(table, u, U_ROWS), uf(table, u, U_N0), invTau, chunk, <usize>uf(table, u, U_STATS), st, <usize>uf(table, u, U_CMAX));
  }
}

export function ibqFwdPass2Units(table: usize, units: i32, counter: usize, ldc: i32, tb: i32, invTau: f32, lseT: usize, acc: usize,
  chunk: i32, w: usize): void {
  for (;;) {
    const u = atomic.add<i32>(counter, 1);
    if (u >= units) break;
    ibqFwdPass2(<usize>uf(table, u, U_CACHE), ldc, uf(table, u, U_ROWS), uf(table, u, U_N0), tb, invTau, lseT, acc,
      chunk, <usize>uf(table, u, U_CMAX), w);
  }
}

export function ibqGradPassAUnits(table: usize, units: i32, counter: usize, offsets: usize, bufA: usize, bufB: usize,
  lp: i32, tb: i32, invTau: f32, lse: usize, lseT: usize, c: usize, st: usize): void {
  for (;;) {
    const u = atomic.add<i32>(counter, 1);
    if (u >= units) break;
    ibqGradPassA(<usize>uf(table, u, U_DESC), offsets, bufA, bufB, lp, tb, <usize>uf(table, u, U_CACHE),
      uf(table, u, U_ROWS), uf(table, u, U_N0), invTau, lse, lseT, c, <usize>uf(table, u, U_PARTIAL), st);
  }
}

export function ibqGradPassBUnits(table: usize, units: i32, counter: usize, offsets: usize, bufA: usize, bufB: usize,
  lp: i32, tb: i32, invTau: f32, lse: usize, lseT: usize, c: usize, sums: usize, gsSc: f32, gaSc: f32, D: i32): void {
  for (;;) {
    const u = atomic.add<i32>(counter, 1);
    if (u >= units) break;
    ibqGradPassB(<usize>uf(table, u, U_DESC_DZ), <usize>uf(table, u, U_DESC_DE), offsets, bufA, bufB, lp, tb,
      <usize>uf(table, u, U_CACHE), uf(table, u, U_ROWS), uf(table, u, U_N0), invTau, lse, lseT, c, sums, gsSc, gaSc, D);
  }
}

/** y[i] += x[u * stride + i] for u = 0..count-1 in order (f32), i in [i0, i1): the units' dz partials. */
export function addParts(x: usize, count: i32, stride: i32, y: usize, i0: i32, i1: i32): void {
  const st = <usize>stride << 2;
  let i = i0;
  for (; i + 4 <= i1; i += 4) {
    const o = <usize>i << 2;
    let acc = v128.load(y + o);
    let p = x + o;
    for (let u = 0; u < count; u++) { acc = f32x4.add(acc, v128.load(p)); p += st; }
    v128.store(y + o, acc);
  }
  for (; i < i1; i++) {
    const o = <usize>i << 2;
    let acc = load<f32>(y + o);
    let p = x + o;
    for (let u = 0; u < count; u++) { acc += load<f32>(p); p += st; }
    store<f32>(y + o, acc);
  }
}

// ---------------------------------------------------------------------------------------------
// Token items, for codebooks small enough (kernels/quantize.ts decides from the shape): a work
// item is a block of `lanes` tokens against the WHOLE codebook, so each token's statistics are
// complete inside one item (no merge across units, no barrier between the passes), and threads
// take items from the counter. Everything an item computes belongs to it (its tokens' outputs,
// its avg_p partial, its tokens' columns of the backward cache and rows of dz), so results do not
// depend on which thread takes which item.

/** Writes the three u32 byte offsets (A, B, C) that gemm adds to a descriptor's addresses. */
@inline function setOffsets(offsets: usize, a: usize, b: usize, c: usize): void {
  store<u32>(offsets, <u32>a);
  store<u32>(offsets, <u32>b, 4);
  store<u32>(offsets, <u32>c, 8);
}

/**
 * Forward over token items: per item, the logits of all N codes against its tokens (`desc`:
 * A = codebook, B = z, C = 0 + this thread's `cache` [N, lanes]), ibqFwdPass1, then per token
 * the first argmax (`ind`), lse and lseT (f32) and its entropy -sum p log p (`ent`, f64), then
 * ibqFwdPass2 into the item's own avg_p partial (`accParts` + item N f64). Per-thread scratch:
 * cache, stats (lanes STAT_FIELDS f64), st (ibqFwdPass1State), chunkMax, lseTl (lanes f32),
 * offsets (12 bytes).
 */
export function ibqFwdTokenItems(desc: usize, items: i32, counter: usize, T: i32, D: i32, N: i32, lanes: i32,
  invTau: f32, invTauD: f64, chunk: i32, ind: usize, lse: usize, lseT: usize, ent: usize, accParts: usize,
  offsets: usize, bufA: usize, bufB: usize, cache: usize, stats: usize, st: usize, chunkMax: usize, lseTl: usize): void {
  for (;;) {
    const it = atomic.add<i32>(counter, 1);
    if (it >= items) break;
    const t0 = it * lanes, tb = min(lanes, T - t0);
    setOffsets(offsets, 0, <usize>t0 * D * 4, cache);
    ibqFwdPass1(desc, offsets, bufA, bufB, tb, cache, lanes, N, 0, invTau, chunk, stats, st, chunkMax);
    memory.fill(lseTl, 0, <usize>lanes << 2);
    for (let j = 0; j < tb; j++) {
      const s = stats + <usize>j * STAT_FIELDS * 8;
      const max = load<f64>(s), sum = load<f64>(s, 16), sumT = load<f64>(s, 24), s1 = load<f64>(s, 32);
      const t = <usize>(t0 + j);
      store<i32>(ind + (t << 2), <i32>load<f64>(s, 8));
      store<f32>(lse + (t << 2), <f32>(max + Math.log(sum)));
      const lt = <f32>(max * invTauD + Math.log(sumT));
      store<f32>(lseT + (t << 2), lt);
      store<f32>(lseTl + (<usize>j << 2), lt);
      // H = -sum p log p with p = e^((l-max)/tau) / sumT.
      store<f64>(ent + (t << 3), Math.log(sumT) - (invTauD * s1) / sumT);
    }
    const acc = accParts + <usize>it * N * 8;
    memory.fill(acc, 0, <usize>N << 3);
    ibqFwdPass2(cache, lanes, N, 0, tb, invTau, lseTl, acc, chunk, chunkMax, st);
  }
}

/**
 * Backward over token items. The host holds one cache for all tokens: row n (stride 3 Tp f32,
 * Tp = items x lanes) has L^T of every token in [0, Tp), G^T in [Tp, 2 Tp) and room for p in
 * [2 Tp, 3 Tp). Per item: the GEMMs of its z rows (descL) and g rows (descG) against all N codes
 * into its columns, gradSums keeping soft, X and p, gradDlogitsKept (dlogits replace L^T; lanes
 * past T get 0), then dz rows of its tokens += dlogits^T . E (descDz, accumulating). The host
 * then computes dcodebook = dlogits . z over all tokens in one GEMM. Per-thread scratch:
 * offsets, lseL and lseTL (lanes f32), partial (3 lanes f64), sums (2 lanes f32), st
 * (ibqGradPassAState).
 */
export function ibqGradTokenItems(descL: usize, descG: usize, descDz: usize, items: i32, counter: usize, T: i32, D: i32, N: i32,
  lanes: i32, Tp: i32, invTau: f32, lse: usize, lseT: usize, c: usize, gsSc: f32, gaSc: f32, cache: usize,
  offsets: usize, bufA: usize, bufB: usize, lseL: usize, lseTL: usize, partial: usize, sums: usize, st: usize): void {
  const gOff = <usize>Tp << 2, pOff = gOff << 1, ldr = gOff * 3;
  for (;;) {
    const it = atomic.add<i32>(counter, 1);
    if (it >= items) break;
    const t0 = it * lanes, tb = min(lanes, T - t0);
    const zOff = <usize>t0 * D * 4, col = <usize>t0 << 2;
    setOffsets(offsets, 0, zOff, col);
    gemm(descL, offsets, 0, 1, 0, N, 0, tb, bufA, bufB);
    setOffsets(offsets, 0, zOff, gOff + col);
    gemm(descG, offsets, 0, 1, 0, N, 0, tb, bufA, bufB);
    const lb = <usize>lanes << 2, tbb = <usize>tb << 2;
    memory.fill(lseL, 0, lb);
    memory.fill(lseTL, 0, lb);
    memory.copy(lseL, lse + col, tbb);
    memory.copy(lseTL, lseT + col, tbb);
    gradSums(cache + col, ldr, gOff, pOff, lanes, N, 0, invTau, lseL, lseTL, c, partial, st, gsSc, gaSc);
    // softDot, then k = gs H + ga cDot, per lane (f32, as gradDlogits has them).
    const L = <usize>lanes << 2;
    for (let j: usize = 0; j < <usize>lanes; j++) {
      const q = j << 2;
      store<f32>(sums + q, <f32>load<f64>(partial + (j << 3)));
      const h = <f32>load<f64>(partial + ((<usize>lanes + j) << 3)), cd = <f32>load<f64>(partial + ((<usize>(2 * lanes) + j) << 3));
      store<f32>(sums + L + q, gsSc * h + gaSc * cd);
    }
    gradDlogitsKept(cache + col, ldr, gOff, pOff, lanes, tb, N, sums);
    setOffsets(offsets, col, 0, zOff);
    gemm(descDz, offsets, 0, 1, 0, tb, 0, D, bufA, bufB);
  }
}
