// Host side of the Winograd convolutions (assembly/winograd.ts): F(2x2,3x3) and F(4x4,3x3)
// for stride-1 3x3 convolutions, the forward, the data gradient and the weight gradient.
// Each call: the kernel transform (or, for the weight gradient, the inverse transform at the
// end), then per chunk of tile rows the data transform, one batched GEMM over the a*a
// transform positions, and the output transform: for the forward, each chunk by one thread
// from start to end where the batch has the tiles for it (winoPipeline), else each phase over
// every thread in turn (kernels/gemm.ts for the GEMMs). Chunks bound the transformed tensors;
// a tile's arithmetic never depends on its chunk, and the weight gradient's chunks (which
// order its sum) depend on the shape only, so results do not depend on the thread count.
// Which convolutions take this path: chooseConv in conv.ts.

import type { CpuBackend } from '../backend.js';
import type { CpuArgs, CpuExportName } from '../wasm-interface.js';
import { B_MATRIX, DESC_BYTES, gemmScratch, runGemm, writeDesc } from './gemm.js';

/** 'winograd2': F(2x2,3x3); 'winograd4': F(4x4,3x3); 'direct': the implicit GEMM. */
export type ConvAlgorithm = 'direct' | 'winograd2' | 'winograd4';

/** Per-thread scratch of the kernel transforms (assembly/winograd.ts winoKernel: 3a + 9 + a*a vectors). */
const TMP_BYTES = 1024;
/** Jobs per thread below which a transform runs on the calling thread. */
const MIN_JOBS = 8;
/** Floats in a cache line (the allocator aligns to one). */
const LINE_FLOATS = 16;

/** n rounded up to whole cache lines: the channel stride of V, M and Z, so that each channel's row starts a line. */
function lineUp(n: number): number {
  return Math.ceil(n / LINE_FLOATS) * LINE_FLOATS;
}

/**
 * The xi stride of V, M and Z (elements) for `rows` rows of `cs`: one cache line past a multiple
 * of 4 KiB, so that the a*a planes a transform writes or reads at once fall in different L1 sets
 * (a multiple of 4 KiB put all 36 of F(4x4)'s in one 8-way set).
 */
function planeStride(rows: number, cs: number): number {
  const PAGE_FLOATS = 1024;
  return Math.ceil((rows * cs) / PAGE_FLOATS) * PAGE_FLOATS + LINE_FLOATS;
}

/**
 * Tile rows per job of the transforms that write V or Z: the fewest whose TW tiles fill whole
 * cache lines, so that no two threads write one line (they did, one job per tile row, and two
 * threads ran config S's 32px F(4x4) forward in 21 ms against one thread's 11 ms).
 */
function rowsPerJob(TW: number): number {
  let g = LINE_FLOATS;
  for (let t = TW; t !== 0; ) [g, t] = [t, g % t];
  return LINE_FLOATS / g;
}

export function tileOf(algo: ConvAlgorithm): number {
  return algo === 'winograd4' ? 4 : 2;
}

interface Plan {
  m: number; a: number; TH: number; TW: number; rows: number; chunkRows: number;
}

/** Tile rows per chunk: the transformed data of a chunk (input and output side) stays within `budget` bytes. */
function plan(m: number, N: number, OH: number, OW: number, channels: number, budget: number): Plan {
  const a = m + 2, TH = Math.ceil(OH / m), TW = Math.ceil(OW / m);
  const rows = N * TH;
  const perRow = a * a * channels * TW * 4;
  return { m, a, TH, TW, rows, chunkRows: Math.max(1, Math.min(rows, Math.floor(budget / perRow))) };
}

/** Per-thread scratch for the image transforms: a strip of a rows and a*a vectors, or m output rows. */
function scratchFloats(p: Plan): number {
  const TW4 = Math.ceil(p.TW / 4) * 4;
  const Wp = TW4 * p.m + 8;
  return p.a * Wp + p.a * p.a * 4 + p.m * TW4 * p.m;
}

/** Scratch regions for fn's duration, all freed after. */
function withBytes<T>(b: CpuBackend, sizes: number[], fn: (ptrs: number[]) => T): T {
  const ptrs: number[] = [];
  try {
    for (const s of sizes) ptrs.push(b.allocBytes(Math.max(64, s)));
    return fn(ptrs);
  } finally {
    for (const p of ptrs) b.freeBytes(p);
  }
}

/** Runs a counter-scheduled transform over `jobs` jobs: the counter is reset, then `parts` threads take jobs. */
function runJobs<K extends CpuExportName>(b: CpuBackend, fn: K, jobs: number, counter: number, scratch: number[], args: (scratch: number) => CpuArgs<K>): void {
  b.mem().i32[counter / 4] = 0;
  const parts = Math.max(1, Math.min(b.threads, Math.floor(jobs / MIN_JOBS)));
  b.pool.run(fn, Array.from({ length: parts }, (_, t) => args(scratch[t])));
}

/** The kernel transform over w's output channels, split across threads (small work). */
function kernelTransform(b: CpuBackend, w: number, U: number, O: number, C: number, m: number, dgrad: boolean, tmp: number): void {
  const parts = b.split(O, Math.max(1, Math.ceil(4096 / Math.max(1, C))));
  b.pool.run('winoKernel', parts.map(([o0, o1], t) => [w, U, O, C, m, dgrad ? 1 : 0, o0, o1, tmp + t * TMP_BYTES]));
}

export interface WinogradConv {
  /** Byte addresses. */
  x: number; w: number; bias: number; y: number;
  N: number; Cin: number; H: number; W: number; Cout: number; OH: number; OW: number;
  /** Top and left padding of x. */
  pt: number; pl: number;
  /** w is [Cin, Cout, 3, 3] read flipped (the data gradient), else [Cout, Cin, 3, 3]. */
  dgrad: boolean;
}

/** U = the transformed kernel of convolution c: w's own dims are [O, C] for the forward, [Cin, Cout] read flipped for the data gradient. */
function convKernelTransform(b: CpuBackend, c: WinogradConv, U: number, m: number, tmp: number): void {
  if (c.dgrad) kernelTransform(b, c.w, U, c.Cin, c.Cout, m, true, tmp);
  else kernelTransform(b, c.w, U, c.Cout, c.Cin, m, false, tmp);
}

/**
 * Bytes of transformed data (V and M) per chunk of the forward's pipeline: one thread's chunk
 * stays in that core's cache (1 MiB of L2 per core here) while it goes through the transform,
 * GEMM and output phases.
 */
const PIPELINE_CHUNK_BYTES = 512 << 10;
/** Chunks per thread wanted in the pipeline (a thread the OS delays is covered by the others). */
const CHUNKS_PER_THREAD = 4;
/**
 * Fewest tiles in a pipeline chunk: each chunk's GEMMs pack and read the whole transformed kernel
 * U, so a chunk also needs at least half as many transformed values as U has (Cin Cout / (2 (Cin
 * + Cout)) tiles): the official 64px layer (256 channels, U 4x a 32-tile chunk) ran 1.2x slower
 * in the pipeline; config S's 16px layer (128 channels, 2x) about even; its 32px layer (1x) faster.
 */
const MIN_CHUNK_TILES = 32;

/**
 * y [N, Cout, OH, OW] = the stride-1 3x3 convolution of x [N, Cin, H, W] (+ bias): as a pipeline
 * per chunk (assembly/winograd.ts winoPipeline) where the batch has enough tiles for every thread
 * to take several chunks of at least MIN_CHUNK_TILES, else in phases over the whole batch.
 */
export function winogradConv(b: CpuBackend, algo: ConvAlgorithm, c: WinogradConv): void {
  const m = tileOf(algo);
  const T = b.threads;
  const p = plan(m, c.N, c.OH, c.OW, c.Cin + c.Cout, Math.min(b.winogradChunkBytes, PIPELINE_CHUNK_BYTES));
  const { a, TH, TW, rows } = p;
  // At least MIN_CHUNK_TILES tiles per chunk (a chunk's GEMMs pack and read all of U), whole cache
  // lines of tiles (full GEMM panels), within the budget where those allow, and several chunks
  // per thread. Chunking never changes a tile's arithmetic.
  const per = rowsPerJob(TW);
  const minRows = Math.ceil(Math.max(MIN_CHUNK_TILES, (c.Cin * c.Cout) / (2 * (c.Cin + c.Cout))) / TW);
  let chunkRows = Math.max(minRows, Math.min(p.chunkRows, Math.ceil(rows / (CHUNKS_PER_THREAD * T))));
  if (chunkRows > per) chunkRows -= chunkRows % per;
  const chunks = Math.ceil(rows / chunkRows);
  if (T > 1 && chunks < CHUNKS_PER_THREAD * T) {
    phasedConv(b, m, c);
    return;
  }
  const parts = Math.min(T, chunks);
  const xi = a * a;
  const cs = lineUp(chunkRows * TW), vs = planeStride(c.Cin, cs), ms = planeStride(c.Cout, cs);
  const descBytes = Math.ceil(DESC_BYTES / 64) * 64;
  const sf = scratchFloats(p) * 4;
  const gemmBufs = gemmScratch(b);
  withBytes(b, [xi * c.Cout * c.Cin * 4, descBytes * parts + xi * 12, 64, T * TMP_BYTES,
    ...Array(parts).fill(xi * vs * 4), ...Array(parts).fill(xi * ms * 4 + 64), ...Array(parts).fill(sf)],
  ([U, descs, counter, tmp, ...rest]) => {
    const V = rest.slice(0, parts), M = rest.slice(parts, 2 * parts), scratch = rest.slice(2 * parts);
    convKernelTransform(b, c, U, m, tmp);
    // One GEMM descriptor per thread (its own V and M); the batches' offsets are shared.
    const offsets = descs + descBytes * parts;
    const u32 = new Uint32Array(b.mem().i32.buffer, offsets, xi * 3);
    for (let k = 0; k < xi; k++) u32.set([k * c.Cout * c.Cin * 4, k * vs * 4, k * ms * 4], 3 * k);
    for (let t = 0; t < parts; t++) {
      writeDesc(b, descs + t * descBytes, {
        M: c.Cout, N: cs, K: c.Cin, a: U, sAm: c.Cin, sAk: 1, bKind: B_MATRIX, b: V[t], sBk: cs, sBn: 1, c: M[t], ldc: cs,
      });
    }
    b.mem().i32[counter / 4] = 0;
    b.pool.run('winoPipeline', Array.from({ length: parts }, (_, t) => [
      c.x, c.y, c.bias, descs + t * descBytes, offsets, m, c.Cin, c.Cout, c.H, c.W, c.pt, c.pl, c.OH, c.OW, TH, TW, rows, chunkRows,
      cs, vs, ms, counter, V[t], M[t], scratch[t], gemmBufs[t].a, gemmBufs[t].b,
    ]));
  });
}

/** winogradConv in phases over the whole batch: each phase on every thread, one chunk of tile rows at a time. */
function phasedConv(b: CpuBackend, m: number, c: WinogradConv): void {
  const p = plan(m, c.N, c.OH, c.OW, c.Cin + c.Cout, b.winogradChunkBytes);
  const { a, TH, TW } = p;
  const per = rowsPerJob(TW);
  const xi = a * a;
  const maxT = p.chunkRows * TW;
  const T = b.threads;
  const sf = scratchFloats(p) * 4;
  withBytes(b, [xi * c.Cout * c.Cin * 4, xi * planeStride(c.Cin, lineUp(maxT)) * 4, xi * planeStride(c.Cout, lineUp(maxT)) * 4 + 64, 64, T * TMP_BYTES, ...Array(T).fill(sf)],
    ([U, V, M, counter, tmp, ...scratch]) => {
      convKernelTransform(b, c, U, m, tmp);
      for (let R0 = 0; R0 < p.rows; R0 += p.chunkRows) {
        const R1 = Math.min(p.rows, R0 + p.chunkRows);
        const Tc = (R1 - R0) * TW, cs = lineUp(Tc);
        const vs = planeStride(c.Cin, cs), ms = planeStride(c.Cout, cs);
        runJobs(b, 'winoInput', c.Cin * Math.ceil((R1 - R0) / per), counter, scratch,
          (s) => [c.x, V, m, c.Cin, c.H, c.W, c.pt, c.pl, TH, TW, R0, R1, per, cs, vs, counter, s]);
        runGemm(b, {
          M: c.Cout, N: Tc, K: c.Cin,
          a: U, sAm: c.Cin, sAk: 1,
          bKind: B_MATRIX, b: V, sBk: cs, sBn: 1,
          c: M, ldc: cs,
          batches: Array.from({ length: xi }, (_, k) => [k * c.Cout * c.Cin * 4, k * vs * 4, k * ms * 4] as const),
        });
        runJobs(b, 'winoOutput', c.Cout * (R1 - R0), counter, scratch,
          (s) => [M, c.y, c.bias, m, c.Cout, c.OH, c.OW, TH, TW, R0, R1, cs, ms, counter, s]);
      }
    });
}

export interface WinogradWeightGrad {
  /** Byte addresses: x [N, C, H, W], dy [N, O, OH, OW], dw [O, C, 3, 3]. */
  x: number; dy: number; dw: number;
  N: number; C: number; H: number; W: number; O: number; OH: number; OW: number;
  pt: number; pl: number;
}

/** dw = the weight gradient of a stride-1 3x3 convolution: one GEMM per position, summed over every tile. */
export function winogradWeightGrad(b: CpuBackend, algo: ConvAlgorithm, c: WinogradWeightGrad): void {
  const m = tileOf(algo);
  const p = plan(m, c.N, c.OH, c.OW, c.C + c.O, b.winogradChunkBytes);
  const { a, TH, TW } = p;
  const per = rowsPerJob(TW);
  const xi = a * a;
  const maxT = p.chunkRows * TW;
  const T = b.threads;
  const sf = scratchFloats(p) * 4;
  withBytes(b, [xi * c.O * c.C * 4 + 64, xi * planeStride(c.C, lineUp(maxT)) * 4, xi * planeStride(c.O, lineUp(maxT)) * 4, 64, T * TMP_BYTES, ...Array(T).fill(sf)],
    ([dU, V, Z, counter, tmp, ...scratch]) => {
      for (let R0 = 0; R0 < p.rows; R0 += p.chunkRows) {
        const R1 = Math.min(p.rows, R0 + p.chunkRows);
        const Tc = (R1 - R0) * TW, cs = lineUp(Tc);
        const vs = planeStride(c.C, cs), zs = planeStride(c.O, cs);
        runJobs(b, 'winoInput', c.C * Math.ceil((R1 - R0) / per), counter, scratch,
          (s) => [c.x, V, m, c.C, c.H, c.W, c.pt, c.pl, TH, TW, R0, R1, per, cs, vs, counter, s]);
        runJobs(b, 'winoGradOut', c.O * Math.ceil((R1 - R0) / per), counter, scratch,
          (s) => [c.dy, Z, m, c.O, c.OH, c.OW, TH, TW, R0, R1, per, cs, zs, counter, s]);
        // dU[xi] [O, C] (+)= Z[xi] [O, Tc] . V[xi]^T [Tc, C]
        runGemm(b, {
          M: c.O, N: c.C, K: Tc,
          a: Z, sAm: cs, sAk: 1,
          bKind: B_MATRIX, b: V, sBk: 1, sBn: cs,
          c: dU, ldc: c.C,
          accumulate: R0 > 0,
          batches: Array.from({ length: xi }, (_, k) => [k * zs * 4, k * vs * 4, k * c.O * c.C * 4] as const),
        });
      }
      const parts = b.split(c.O, Math.max(1, Math.ceil(4096 / Math.max(1, c.C))));
      b.pool.run('winoKernelGrad', parts.map(([o0, o1], t) => [dU, c.dw, c.O, c.C, m, o0, o1, tmp + t * TMP_BYTES]));
    });
}
