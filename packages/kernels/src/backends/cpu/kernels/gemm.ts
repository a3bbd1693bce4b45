// Host side of the GEMM driver (assembly/gemm.ts): writes the descriptor and the per-batch
// offset table, cuts C into tiles that the threads take from a shared counter (dynamic
// scheduling: a thread the OS delays takes fewer), and keeps one pair of packing buffers
// per thread.

import type { CpuBackend } from '../backend.js';
import { ASM, type CpuArgs } from '../wasm-interface.js';

// Blocking sizes and B kinds of assembly/gemm.ts (generated into wasm-interface.ts).
export const { MR, NR, KC, MC, NC, B_MATRIX, B_IM2COL, B_CONV_DY, B_IM2COL_T } = ASM.gemm;

/** Descriptor fields: the D_* constants of assembly/gemm.ts. */
const D = ASM.gemm;
const DESC_FIELDS = Math.max(...Object.entries(D).filter(([k]) => k.startsWith('D_')).map(([, v]) => v)) + 1;

export interface ConvGeometryDesc {
  C: number; H: number; W: number; KH: number; KW: number;
  sh: number; sw: number; pt: number; pl: number; OH: number; OW: number; O: number;
}

export interface GemmCall {
  M: number; N: number; K: number;
  /** A: a matrix at byte address `a` with element strides sAm (rows) and sAk (columns). */
  a: number; sAm: number; sAk: number;
  bKind: number; b: number; sBk: number; sBn: number;
  c: number; ldc: number;
  /** Add into C instead of overwriting it. */
  accumulate?: boolean;
  /** Byte address of a per-row bias (length M), or 0. */
  bias?: number;
  conv?: ConvGeometryDesc;
  /** Byte offsets [a, b, c] per batch. */
  batches: readonly (readonly [number, number, number])[];
  /** Every batch adds into the same C (the batches are a sum). */
  reduceBatches?: boolean;
}

/** Flops below which a GEMM runs on the calling thread alone (waking workers costs more). */
const PARALLEL_FLOPS = 1 << 21;

const scratch = new WeakMap<CpuBackend, { a: number; b: number }[]>();

function threadScratch(backend: CpuBackend): { a: number; b: number }[] {
  let s = scratch.get(backend);
  if (!s) {
    s = [];
    for (let t = 0; t < backend.threads; t++) {
      s.push({ a: backend.allocBytes(MC * KC * 4), b: backend.allocBytes((NC * KC + MR * NR * 2) * 4) });
    }
    scratch.set(backend, s);
  }
  return s;
}

/** Writes a GEMM descriptor (DESC_BYTES at `ptr`) for the wasm driver. */
export function writeDesc(backend: CpuBackend, ptr: number, g: Omit<GemmCall, 'batches'>): void {
  const m = backend.mem();
  const d = ptr / 4;
  const cv = g.conv;
  // Each value goes to its named field, so a reordered descriptor in the assembly cannot disagree.
  const fields: [number, number][] = [
    [D.D_M, g.M], [D.D_N, g.N], [D.D_K, g.K], [D.D_A, g.a], [D.D_SAM, g.sAm], [D.D_SAK, g.sAk],
    [D.D_BKIND, g.bKind], [D.D_B, g.b], [D.D_SBK, g.sBk], [D.D_SBN, g.sBn], [D.D_C, g.c], [D.D_LDC, g.ldc],
    [D.D_ACCUMULATE, g.accumulate ? 1 : 0], [D.D_BIAS, g.bias ?? 0],
    [D.D_CC, cv?.C ?? 0], [D.D_H, cv?.H ?? 0], [D.D_W, cv?.W ?? 0], [D.D_KH, cv?.KH ?? 0], [D.D_KW, cv?.KW ?? 0],
    [D.D_SH, cv?.sh ?? 1], [D.D_SW, cv?.sw ?? 1], [D.D_PT, cv?.pt ?? 0], [D.D_PL, cv?.pl ?? 0], [D.D_OH, cv?.OH ?? 0],
    [D.D_OW, cv?.OW ?? 0], [D.D_OC, cv?.O ?? 0], [D.D_REDUCE_BATCHES, g.reduceBatches ? 1 : 0],
  ];
  if (fields.length !== DESC_FIELDS) throw new Error(`cpu gemm: the host writes ${fields.length} descriptor fields, assembly/gemm.ts has ${DESC_FIELDS}`);
  for (const [at, v] of fields) m.i32[d + at] = v | 0;
}

export const DESC_BYTES = DESC_FIELDS * 4;

/** The per-thread packing buffers (persistent for the backend's life). */
export function gemmScratch(backend: CpuBackend): { a: number; b: number }[] {
  return threadScratch(backend);
}

/** Tiles wanted per thread: enough that a thread the OS delays can be covered by the others. */
const TILES_PER_THREAD = 4;
/**
 * Smallest tile sides: a tile packs its own A rows (and B columns), so a side of s costs ~1/(2s)
 * of its work in packing. (At 128 columns and MC rows, the one-tile GEMMs of a batch-summed
 * weight gradient, such as a 1x1 convolution's over 8x8 pixels, ran on one thread.)
 */
const MIN_TILE_N = 32;
const MIN_TILE_M = 32;

/** Tile sizes [um, un] for gemmTiles: at least TILES_PER_THREAD x T tiles where the shape allows. */
export function tileSizes(M: number, N: number, units: number, T: number): [number, number] {
  const round = (x: number, a: number) => Math.ceil(x / a) * a;
  let um = M;
  // Columns in near-equal tiles of at most NC.
  let un = round(Math.ceil(N / Math.ceil(N / NC)), NR);
  const count = () => units * Math.ceil(M / um) * Math.ceil(N / un);
  while (count() < TILES_PER_THREAD * T) {
    const canN = un >= 2 * MIN_TILE_N, canM = um >= 2 * MIN_TILE_M;
    if (canN && (un >= um || !canM)) un = round(Math.ceil(un / 2), NR);
    else if (canM) um = round(Math.ceil(um / 2), MR);
    else break;
  }
  return [um, un];
}

export function runGemm(backend: CpuBackend, g: GemmCall): void {
  const nb = g.batches.length;
  if (nb === 0 || g.M === 0 || g.N === 0) return;
  const bufs = threadScratch(backend);
  const descBytes = DESC_FIELDS * 4;
  const counterAt = Math.ceil((descBytes + nb * 12) / 64) * 64;
  const region = backend.allocBytes(counterAt + 64);
  try {
    writeDesc(backend, region, g);
    const m = backend.mem();
    const offs = region + descBytes;
    const u32 = new Uint32Array(m.i32.buffer, offs, nb * 3);
    g.batches.forEach(([a, b, c], i) => {
      u32[3 * i] = a;
      u32[3 * i + 1] = b;
      u32[3 * i + 2] = c;
    });
    const T = backend.threads;
    const flops = 2 * g.M * g.N * Math.max(1, g.K) * nb;
    if (T === 1 || flops < PARALLEL_FLOPS) {
      backend.pool.run('gemm', [[region, offs, 0, nb, 0, g.M, 0, g.N, bufs[0].a, bufs[0].b]]);
      return;
    }
    // Threads take tiles of C from a shared counter (assembly/gemm.ts gemmTiles).
    const [um, un] = tileSizes(g.M, g.N, g.reduceBatches ? 1 : nb, T);
    const counter = region + counterAt;
    m.i32[counter / 4] = 0;
    const tiles = (g.reduceBatches ? 1 : nb) * Math.ceil(g.M / um) * Math.ceil(g.N / un);
    const parts: CpuArgs<'gemmTiles'>[] = [];
    for (let t = 0; t < Math.min(T, tiles); t++) parts.push([region, offs, nb, um, un, counter, bufs[t].a, bufs[t].b]);
    backend.pool.run('gemmTiles', parts);
  } finally {
    backend.freeBytes(region);
  }
}
