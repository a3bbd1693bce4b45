// cpu kernels for src/ops/quantize.ts (the fused IBQ quantizer; math in assembly/quantize.ts).
// Two schemes, chosen from the shape only (never the thread count), so results are the same on
// any number of threads:
// - token items (small codebooks, `tokenItems`): a work item is a block of TOKEN_LANES tokens
//   against the whole codebook, so each token's statistics are complete inside one item: the
//   forward is one pool job, the backward two (items, then one dcodebook GEMM over all tokens
//   from a [codes x 3 tokens] cache, so only where that fits CACHE_BUDGET). avg_p partials per
//   item are added in item order.
// - codebook units (large codebooks): the codebook is cut into units of rows (their number
//   depends on N only); tokens go through in blocks of `lanes`. Per block each unit keeps only
//   the logits of its rows against the block ([rows, lanes]): memory is O(N x lanes), bounded by
//   CACHE_BUDGET, never O(T x N). Per-token statistics of the units merge here on the host in
//   unit order (tiny); avg_p and dcodebook rows belong to one unit each, and dz's block partials
//   are added in unit order.
// Threads take items or units from a shared counter in every pass (dynamic scheduling: a thread
// the OS delays takes fewer).

import { registerKernel } from '../../../dispatch.js';
import { AVG_ENTROPY_EPS, quantizeAttrs } from '../../../ops/quantize.js';
import type { TensorInfo } from '../../../types.js';
import type { CpuBackend } from '../backend.js';
import { ASM, type CpuArgs, type CpuExportName } from '../wasm-interface.js';
import { B_MATRIX, DESC_BYTES, gemmScratch, runGemm, writeDesc } from './gemm.js';

const C = 'cpu';
/**
 * Bytes of cached logits, all units together. (Measured: doubling it for a 262144 x 256
 * codebook saves ~10% of the time, but the wasm memory then grows past 1 GB in the benchmark.)
 */
const CACHE_BUDGET = 64 << 20;
const { STAT_FIELDS } = ASM.quantize;
/** Codebook rows per online-softmax merge when `chunk` is not given. */
const DEFAULT_CHUNK = 1024;

/** Tokens per token item (fewer when T is smaller; a multiple of 4: the SIMD lanes). */
const TOKEN_LANES = 64;
/**
 * Largest codebook for token items: each thread holds the logits of a whole item ([N, TOKEN_LANES]
 * f32, 1 MiB). (Measured under load at 256 tokens x 16384 codes x 256: token items ~8% slower
 * than codebook units, whose [rows, lanes] cache stays in L2 between its GEMM and its passes.)
 */
const TOKEN_ITEMS_MAX_CODES = 4096;

/**
 * Token items' lanes and padded token count, or null when the shape takes codebook units. What
 * grows with T stays within CACHE_BUDGET: the forward's avg_p partials (items x N f64), the
 * backward's cache of every token's logits (3 x N x Tp f32).
 */
export function tokenItems(T: number, N: number, backward: boolean): { lanes: number; items: number; Tp: number } | null {
  const lanes = Math.min(TOKEN_LANES, Math.ceil(T / 4) * 4);
  const items = Math.ceil(T / lanes);
  const Tp = items * lanes;
  const bytes = backward ? 3 * N * Tp * 4 : items * N * 8;
  if (T === 0 || N > TOKEN_ITEMS_MAX_CODES || bytes > CACHE_BUDGET) return null;
  return { lanes, items, Tp };
}

/** Tokens per block (a multiple of 4: the SIMD lanes), from the cache budget. */
function laneCount(T: number, N: number, widthFactor: number): number {
  const fit = Math.floor(CACHE_BUDGET / (N * 4 * widthFactor));
  const lanes = Math.max(4, Math.min(256, Math.floor(fit / 4) * 4));
  return Math.min(lanes, Math.ceil(T / 4) * 4);
}

/** Most codebook units (more balance the threads better; each adds a dz partial per block). */
const MAX_UNITS = 32;
const { UNIT_FIELDS } = ASM.quantize;

/** Codebook row ranges of the units (boundaries multiple of 4, at least 64 rows each). */
function unitRanges(b: CpuBackend, N: number): [number, number][] {
  const parts = Math.max(1, Math.min(Math.max(MAX_UNITS, 4 * b.threads), Math.floor(N / 64)));
  const out: [number, number][] = [];
  for (let p = 0; p < parts; p++) {
    const s = p === 0 ? 0 : Math.floor((N * p) / parts / 4) * 4;
    const e = p === parts - 1 ? N : Math.floor((N * (p + 1)) / parts / 4) * 4;
    if (e > s) out.push([s, e]);
  }
  return out;
}

interface Unit {
  n0: number; rows: number;
  desc: number; cache: number; stats: number; partial: number; dzPart: number; descDz: number; descDe: number;
  /** Pass 1's running maximum after each chunk of rows ([chunks, lanes] f32), forward only. */
  chunkMax: number;
}

/** Writes the unit table (UNIT_FIELDS i32 per unit) at `table`. */
function writeUnits(b: CpuBackend, table: number, units: Unit[]): void {
  const m = b.mem();
  units.forEach((u, i) => {
    const o = table / 4 + i * UNIT_FIELDS;
    [u.n0, u.rows, u.desc, u.cache, u.stats, u.partial, u.dzPart, u.descDz, u.descDe, u.chunkMax].forEach((v, f) => (m.i32[o + f] = v));
  });
}

/** Runs a *Units export on min(threads, units) threads after zeroing the counter. */
function runUnits<K extends CpuExportName>(b: CpuBackend, fn: K, counter: number, units: number, args: (t: number) => CpuArgs<K>): void {
  b.mem().i32[counter / 4] = 0;
  b.pool.run(fn, Array.from({ length: Math.min(b.threads, units) }, (_, t) => args(t)));
}

/** Scratch regions freed together. */
class Arena {
  private ptrs: number[] = [];
  constructor(private b: CpuBackend) {}
  bytes(n: number): number {
    const p = this.b.allocBytes(n);
    this.ptrs.push(p);
    return p;
  }
  free(): void {
    for (const p of this.ptrs) this.b.freeBytes(p);
    this.ptrs = [];
  }
}

registerKernel<CpuBackend>('ibq_quantize', C, (b, [z, codebook], [indices, zq, losses, lse, lseT, avgP], attrs) => {
  const { beta, temperature: tau, chunk } = quantizeAttrs('ibq_quantize', attrs);
  const [T, D] = z.shape;
  const N = codebook.shape[0];
  const invTau = 1 / tau;
  const chunkRows = chunk ?? DEFAULT_CHUNK;
  const plan = tokenItems(T, N, false);
  if (plan) {
    const arena = new Arena(b);
    try {
      const { avgSums, entropySum } = forwardTokenItems(b, arena, z, codebook, [indices, lse, lseT], invTau, chunkRows, plan);
      finishForward(b, z, codebook, [indices, zq, losses, avgP], beta, avgSums, entropySum);
    } finally {
      arena.free();
    }
    return;
  }
  const lanes = laneCount(T, N, 1);
  const ranges = unitRanges(b, N);
  const U = ranges.length;
  const bufs = gemmScratch(b);
  const arena = new Arena(b);
  try {
    const zp = b.addr(z), ep = b.addr(codebook);
    const offsets = arena.bytes(12);
    const counter = arena.bytes(64);
    const table = arena.bytes(U * UNIT_FIELDS * 4);
    const acc = arena.bytes(N * 8);
    const lseTBlock = arena.bytes(lanes * 4);
    const descs = arena.bytes(U * DESC_BYTES), cache = arena.bytes(N * lanes * 4), stats = arena.bytes(U * lanes * STAT_FIELDS * 8);
    const chunkMaxBytes = ranges.map(([n0, n1]) => Math.ceil((n1 - n0) / chunkRows) * lanes * 4);
    const chunkMax = arena.bytes(chunkMaxBytes.reduce((a, x) => a + x, 0));
    let cmAt = chunkMax;
    const per: Unit[] = ranges.map(([n0, n1], i) => {
      const u = {
        n0, rows: n1 - n0, desc: descs + i * DESC_BYTES, cache: cache + n0 * lanes * 4, stats: stats + i * lanes * STAT_FIELDS * 8,
        partial: 0, dzPart: 0, descDz: 0, descDe: 0, chunkMax: cmAt,
      };
      cmAt += chunkMaxBytes[i];
      return u;
    });
    writeUnits(b, table, per);
    // Per-thread running values of pass 1 (assembly ibqFwdPass1State).
    const stBytes = Math.ceil((b.x.ibqFwdPass1State(lanes) as number) / 64) * 64;
    const st = arena.bytes(stBytes * b.threads);
    // Pass 2's per-thread scratch (2 x lanes f32) reuses pass 1's state (at least 13 x lanes f32).
    let m = b.mem();
    new Uint32Array(m.i32.buffer, offsets, 3).fill(0);
    new Float64Array(m.i32.buffer, acc, N).fill(0);
    const ind = new Int32Array(T);
    const lseOut = new Float32Array(T), lseTOut = new Float32Array(T);
    let entropySum = 0;
    for (let t0 = 0; t0 < T; t0 += lanes) {
      const tb = Math.min(lanes, T - t0);
      per.forEach((p) => writeDesc(b, p.desc, {
        M: p.rows, N: tb, K: D,
        a: ep + p.n0 * D * 4, sAm: D, sAk: 1,
        bKind: B_MATRIX, b: zp + t0 * D * 4, sBk: 1, sBn: D,
        c: p.cache, ldc: lanes,
      }));
      runUnits(b, 'ibqFwdPass1Units', counter, U, (k) => [table, U, counter, offsets, bufs[k].a, bufs[k].b, tb, lanes, invTau, chunkRows, st + k * stBytes]);
      // Merge the units' statistics per token (units in ascending row order: ties keep the first).
      m = b.mem();
      const stats = per.map((p) => new Float64Array(m.i32.buffer, p.stats, lanes * STAT_FIELDS));
      const lseTLanes = new Float32Array(m.i32.buffer, lseTBlock, lanes);
      lseTLanes.fill(0);
      for (let j = 0; j < tb; j++) {
        let max = -Infinity, arg = 0;
        for (const s of stats) {
          const v = s[j * STAT_FIELDS];
          if (v > max) { max = v; arg = s[j * STAT_FIELDS + 1]; }
        }
        let sum = 0, sumT = 0, s1 = 0;
        for (const s of stats) {
          const o = j * STAT_FIELDS;
          if (s[o + 3] === 0) continue;
          const shift = s[o] - max;
          const f = Math.exp(shift), fT = Math.exp(shift * invTau);
          sum += s[o + 2] * f;
          sumT += s[o + 3] * fT;
          s1 += fT * (s[o + 4] + shift * s[o + 3]);
        }
        const t = t0 + j;
        ind[t] = arg;
        lseOut[t] = max + Math.log(sum);
        lseTOut[t] = max * invTau + Math.log(sumT);
        lseTLanes[j] = lseTOut[t];
        // H = -sum p log p with p = e^((l-max)/tau) / sumT.
        entropySum += Math.log(sumT) - (invTau * s1) / sumT;
      }
      runUnits(b, 'ibqFwdPass2Units', counter, U, (k) => [table, U, counter, lanes, tb, invTau, lseTBlock, acc, chunkRows, st + k * stBytes]);
    }
    m = b.mem();
    m.i32.set(ind, b.addr(indices) / 4);
    m.f32.set(lseOut, b.addr(lse) / 4);
    m.f32.set(lseTOut, b.addr(lseT) / 4);
    finishForward(b, z, codebook, [indices, zq, losses, avgP], beta, new Float64Array(m.i32.buffer, acc, N).slice(), entropySum);
  } finally {
    arena.free();
  }
});

/**
 * The forward after the statistics: zq, the squared error, avg_p (from `avgSums`, the sum of
 * p over tokens per code) and its entropy, the four losses.
 */
function finishForward(b: CpuBackend, z: TensorInfo, codebook: TensorInfo, [indices, zq, losses, avgP]: TensorInfo[], beta: number,
  avgSums: Float64Array, entropySum: number): void {
  const [T, D] = z.shape;
  const N = codebook.shape[0];
  const zp = b.addr(z), ep = b.addr(codebook);
  b.x.gatherRows(ep, N, D, b.addr(indices), b.addr(zq), 0, T);
  const sqErr = b.x.sqDiffSum(b.addr(zq), zp, T * D) as number;
  const avgOut = new Float32Array(N);
  let avgEntropy = 0;
  for (let n = 0; n < N; n++) {
    const a = avgSums[n] / T;
    avgOut[n] = a;
    avgEntropy -= a * Math.log(a + AVG_ENTROPY_EPS);
  }
  const m = b.mem();
  m.f32.set(avgOut, b.addr(avgP) / 4);
  const mse = sqErr / (T * D);
  const sampleEntropy = entropySum / T;
  m.f32.set([mse + mse + beta * mse, sampleEntropy, avgEntropy, sampleEntropy - avgEntropy], b.addr(losses) / 4);
}

/** Per-thread scratch regions of `sizes` bytes each (64-byte aligned), one set per thread. */
function threadRegions(b: CpuBackend, arena: Arena, sizes: number[]): number[][] {
  const aligned = sizes.map((n) => Math.ceil(n / 64) * 64);
  const per = aligned.reduce((x, y) => x + y, 0);
  const base = arena.bytes(per * b.threads);
  return Array.from({ length: b.threads }, (_, t) => {
    let at = base + t * per;
    return aligned.map((n) => {
      const p = at;
      at += n;
      return p;
    });
  });
}

/**
 * The forward's statistics over token items (one pool job): writes indices, lse and lseT;
 * returns the sum of p over tokens per code (item partials added in item order) and the sum of
 * the tokens' entropies (in token order).
 */
function forwardTokenItems(b: CpuBackend, arena: Arena, z: TensorInfo, codebook: TensorInfo, [indices, lse, lseT]: TensorInfo[],
  invTau: number, chunkRows: number, { lanes, items }: { lanes: number; items: number }): { avgSums: Float64Array; entropySum: number } {
  const [T, D] = z.shape;
  const N = codebook.shape[0];
  const bufs = gemmScratch(b);
  const desc = arena.bytes(DESC_BYTES), counter = arena.bytes(64);
  const ent = arena.bytes(T * 8), accParts = arena.bytes(items * N * 8);
  const scratch = threadRegions(b, arena, [
    12, N * lanes * 4, lanes * STAT_FIELDS * 8, b.x.ibqFwdPass1State(lanes) as number, Math.ceil(N / chunkRows) * lanes * 4, lanes * 4,
  ]);
  // Logits [N, lanes] of all codes against an item's tokens: B = z (offset per item), C in the thread's cache (offset).
  writeDesc(b, desc, {
    M: N, N: lanes, K: D,
    a: b.addr(codebook), sAm: D, sAk: 1,
    bKind: B_MATRIX, b: b.addr(z), sBk: 1, sBn: D,
    c: 0, ldc: lanes,
  });
  b.mem().i32[counter / 4] = 0;
  b.pool.run('ibqFwdTokenItems', Array.from({ length: Math.min(b.threads, items) }, (_, t) => {
    const [offsets, cache, stats, st, chunkMax, lseTl] = scratch[t];
    return [desc, items, counter, T, D, N, lanes, invTau, invTau, chunkRows, b.addr(indices), b.addr(lse), b.addr(lseT), ent, accParts,
      offsets, bufs[t].a, bufs[t].b, cache, stats, st, chunkMax, lseTl];
  }));
  const m = b.mem();
  const entropies = new Float64Array(m.i32.buffer, ent, T);
  let entropySum = 0;
  for (let t = 0; t < T; t++) entropySum += entropies[t];
  const parts = new Float64Array(m.i32.buffer, accParts, items * N);
  const avgSums = new Float64Array(N);
  for (let i = 0; i < items; i++) for (let n = 0; n < N; n++) avgSums[n] += parts[i * N + n];
  return { avgSums, entropySum };
}

registerKernel<CpuBackend>('ibq_quantize_grad', C, (b, [dzq, dlosses, z, codebook, indices, lse, lseT, avgP], [dz, dcodebook], attrs) => {
  const { beta, temperature: tau } = quantizeAttrs('ibq_quantize_grad', attrs);
  const [T, D] = z.shape;
  const N = codebook.shape[0];
  const invTau = 1 / tau;
  const plan = tokenItems(T, N, true);
  const lanes = plan ? 0 : laneCount(T, N, 2);
  const ranges = plan ? [] : unitRanges(b, N);
  const U = ranges.length;
  const bufs = gemmScratch(b);
  const arena = new Arena(b);
  try {
    let m = b.mem();
    const dl = Array.from(m.f32.subarray(b.addr(dlosses) / 4, b.addr(dlosses) / 4 + 4));
    const M = T * D;
    const gq = dl[0], gs = dl[1] + dl[3], ga = dl[2] - dl[3];
    const sc = 1 / (T * tau);
    const zp = b.addr(z), ep = b.addr(codebook), dzp = b.addr(dz), dEp = b.addr(dcodebook);
    const gbuf = arena.bytes(T * D * 4);
    b.x.ibqGradSetup(b.addr(dzq), zp, ep, b.addr(indices), T, D, N, gq, M, gbuf, dzp);
    b.x.fill32(dEp, N * D, 0);
    const cvec = arena.bytes(N * 4);
    m = b.mem();
    // d avg_entropy / d avg_p_n.
    const av = m.f32.subarray(b.addr(avgP) / 4, b.addr(avgP) / 4 + N);
    const cv = new Float32Array(m.i32.buffer, cvec, N);
    for (let n = 0; n < N; n++) {
      const a = av[n];
      cv[n] = -(Math.log(a + AVG_ENTROPY_EPS) + a / (a + AVG_ENTROPY_EPS));
    }
    if (plan) {
      backwardTokenItems(b, arena, z, codebook, gbuf, [lse, lseT], cvec, invTau, gs * sc, ga * sc, dzp, dEp, plan);
      b.x.ibqGradHardPath(gbuf, zp, ep, b.addr(indices), T, D, N, (2 * beta * gq) / M, dEp);
      return;
    }
    const offsets = arena.bytes(12);
    const zg = arena.bytes(2 * lanes * D * 4);
    const lseB = arena.bytes(lanes * 4), lseTB = arena.bytes(lanes * 4), sums = arena.bytes(3 * lanes * 4);
    const counter = arena.bytes(64);
    const table = arena.bytes(U * UNIT_FIELDS * 4);
    const descs = arena.bytes(3 * U * DESC_BYTES), cache = arena.bytes(N * 2 * lanes * 4);
    const partials = arena.bytes(U * 3 * lanes * 8), dzParts = arena.bytes(U * lanes * D * 4);
    const per: Unit[] = ranges.map(([n0, n1], i) => ({
      n0, rows: n1 - n0, stats: 0, chunkMax: 0,
      desc: descs + 3 * i * DESC_BYTES, descDz: descs + (3 * i + 1) * DESC_BYTES, descDe: descs + (3 * i + 2) * DESC_BYTES,
      cache: cache + n0 * 2 * lanes * 4, partial: partials + i * 3 * lanes * 8, dzPart: dzParts + i * lanes * D * 4,
    }));
    writeUnits(b, table, per);
    const stBytes = Math.ceil((b.x.ibqGradPassAState(lanes) as number) / 64) * 64;
    const st = arena.bytes(stBytes * b.threads);
    m = b.mem();
    new Uint32Array(m.i32.buffer, offsets, 3).fill(0);
    const lseAll = m.f32.slice(b.addr(lse) / 4, b.addr(lse) / 4 + T);
    const lseTAll = m.f32.slice(b.addr(lseT) / 4, b.addr(lseT) / 4 + T);
    for (let t0 = 0; t0 < T; t0 += lanes) {
      const tb = Math.min(lanes, T - t0);
      m = b.mem();
      // B operand rows: z block at [0, tb), g block at [lanes, lanes + tb), zero rows between.
      const zgv = new Float32Array(m.i32.buffer, zg, 2 * lanes * D);
      zgv.fill(0);
      zgv.set(m.f32.subarray(zp / 4 + t0 * D, zp / 4 + (t0 + tb) * D), 0);
      zgv.set(m.f32.subarray(gbuf / 4 + t0 * D, gbuf / 4 + (t0 + tb) * D), lanes * D);
      const lv = new Float32Array(m.i32.buffer, lseB, lanes), ltv = new Float32Array(m.i32.buffer, lseTB, lanes);
      lv.fill(0);
      ltv.fill(0);
      lv.set(lseAll.subarray(t0, t0 + tb));
      ltv.set(lseTAll.subarray(t0, t0 + tb));
      per.forEach((p) => {
        writeDesc(b, p.desc, {
          M: p.rows, N: 2 * lanes, K: D,
          a: ep + p.n0 * D * 4, sAm: D, sAk: 1,
          bKind: B_MATRIX, b: zg, sBk: 1, sBn: D,
          c: p.cache, ldc: 2 * lanes,
        });
        writeDesc(b, p.descDz, {
          M: tb, N: D, K: p.rows,
          a: p.cache, sAm: 1, sAk: 2 * lanes,
          bKind: B_MATRIX, b: ep + p.n0 * D * 4, sBk: D, sBn: 1,
          c: p.dzPart, ldc: D,
        });
        writeDesc(b, p.descDe, {
          M: p.rows, N: D, K: tb,
          a: p.cache, sAm: 2 * lanes, sAk: 1,
          bKind: B_MATRIX, b: zp + t0 * D * 4, sBk: D, sBn: 1,
          c: dEp + p.n0 * D * 4, ldc: D, accumulate: true,
        });
      });
      runUnits(b, 'ibqGradPassAUnits', counter, U, (k) => [table, U, counter, offsets, bufs[k].a, bufs[k].b, lanes, tb, invTau, lseB, lseTB, cvec, st + k * stBytes]);
      m = b.mem();
      const sv = new Float32Array(m.i32.buffer, sums, 3 * lanes);
      sv.fill(0);
      const pv = new Float64Array(m.i32.buffer, partials, U * 3 * lanes);
      for (let i = 0; i < 3 * lanes; i++) {
        let s = 0;
        for (let u = 0; u < U; u++) s += pv[u * 3 * lanes + i];
        sv[i] = s;
      }
      runUnits(b, 'ibqGradPassBUnits', counter, U, (k) =>
        [table, U, counter, offsets, bufs[k].a, bufs[k].b, lanes, tb, invTau, lseB, lseTB, cvec, sums, gs * sc, ga * sc, D]);
      // dz rows of the block += the units' partials, in unit order.
      b.pool.run('addParts', b.split(tb * D, 1 << 15).map(([i0, i1]) => [dzParts, U, lanes * D, dzp + t0 * D * 4, i0, i1]));
    }
    b.x.ibqGradHardPath(gbuf, zp, ep, b.addr(indices), T, D, N, (2 * beta * gq) / M, dEp);
  } finally {
    arena.free();
  }
});

/**
 * The backward's soft path over token items: dz rows += dlogits . E per item (one pool job),
 * then dcodebook = dlogits^T . z over all tokens (one GEMM) from the cache of every token's
 * dlogits ([N, 3 Tp] f32: L^T, G^T and p per row, dlogits replacing L^T).
 */
function backwardTokenItems(b: CpuBackend, arena: Arena, z: TensorInfo, codebook: TensorInfo, gbuf: number, [lse, lseT]: TensorInfo[],
  cvec: number, invTau: number, gsSc: number, gaSc: number, dzp: number, dEp: number,
  { lanes, items, Tp }: { lanes: number; items: number; Tp: number }): void {
  const [T, D] = z.shape;
  const N = codebook.shape[0];
  const zp = b.addr(z), ep = b.addr(codebook);
  const bufs = gemmScratch(b);
  const descs = arena.bytes(3 * DESC_BYTES), counter = arena.bytes(64);
  const cache = arena.bytes(N * 3 * Tp * 4);
  const scratch = threadRegions(b, arena, [12, lanes * 4, lanes * 4, 3 * lanes * 8, 2 * lanes * 4, b.x.ibqGradPassAState(lanes) as number]);
  const [descL, descG, descDz] = [0, 1, 2].map((i) => descs + i * DESC_BYTES);
  // L^T and G^T of an item's tokens against all codes (B and C offsets per item).
  writeDesc(b, descL, { M: N, N: lanes, K: D, a: ep, sAm: D, sAk: 1, bKind: B_MATRIX, b: zp, sBk: 1, sBn: D, c: cache, ldc: 3 * Tp });
  writeDesc(b, descG, { M: N, N: lanes, K: D, a: ep, sAm: D, sAk: 1, bKind: B_MATRIX, b: gbuf, sBk: 1, sBn: D, c: cache, ldc: 3 * Tp });
  // dz rows of the item += dlogits^T . E (A and C offsets per item).
  writeDesc(b, descDz, {
    M: lanes, N: D, K: N, a: cache, sAm: 1, sAk: 3 * Tp, bKind: B_MATRIX, b: ep, sBk: D, sBn: 1, c: dzp, ldc: D, accumulate: true,
  });
  b.mem().i32[counter / 4] = 0;
  b.pool.run('ibqGradTokenItems', Array.from({ length: Math.min(b.threads, items) }, (_, t) => {
    const [offsets, lseL, lseTL, partial, sums, st] = scratch[t];
    return [descL, descG, descDz, items, counter, T, D, N, lanes, Tp, invTau, b.addr(lse), b.addr(lseT), cvec, gsSc, gaSc, cache,
      offsets, bufs[t].a, bufs[t].b, lseL, lseTL, partial, sums, st];
  }));
  // dcodebook = dlogits . z: [N, T] (the L^T columns of the cache) times [T, D].
  runGemm(b, { M: N, N: D, K: T, a: cache, sAm: 3 * Tp, sAk: 1, bKind: B_MATRIX, b: zp, sBk: D, sBn: 1, c: dEp, ldc: D, batches: [[0, 0, 0]] });
}
