// cpu kernels for src/ops/norm.ts (math in assembly/norm.ts). Threads split the normalisation
// sets: (sample, group) for GroupNorm (and GroupNorm+SiLU), channels for BatchNorm, rows for
// LayerNorm / RMSNorm.
// Weight and bias gradients that sum across sets are computed from per-set (GroupNorm) or
// per-chunk-of-rows (LayerNorm, RMSNorm) partials added in a fixed order, so every result is
// the same on any number of threads.

import { registerKernel } from '../../../dispatch.js';
import { normEps, normGroups } from '../../../ops/norm.js';
import { sizeOf, type TensorInfo } from '../../../types.js';
import type { CpuBackend } from '../backend.js';
import { ASM, type CpuArgs, type CpuExportName } from '../wasm-interface.js';

const C = 'cpu';
/** Elements per thread below which a norm runs on the calling thread only. */
const GRAIN = 1 << 15;
/** Rows per partial-sum chunk of the last-dim norms' gradients. */
const { RCH } = ASM.norm;

/** [N, C, S] of a channel norm's x [N, C, ...]. */
function ncs(x: TensorInfo): [number, number, number] {
  return [x.shape[0], x.shape[1], sizeOf(x.shape.slice(2))];
}

/** [rows, D] of a last-dim norm's x [..., D]. */
function rowsOf(x: TensorInfo): [number, number] {
  const D = x.shape[x.shape.length - 1];
  return [sizeOf(x.shape.slice(0, -1)), D];
}

/** Ranges of [0, n) items of `per` elements each, at least GRAIN elements per thread. */
function ranges(b: CpuBackend, n: number, per: number): [number, number][] {
  return b.split(n, Math.ceil(GRAIN / Math.max(1, per)));
}

/** Scratch bytes for the duration of fn. */
function withScratch<T>(b: CpuBackend, bytes: number, fn: (ptr: number) => T): T {
  const p = b.allocBytes(Math.max(bytes, 4));
  try {
    return fn(p);
  } finally {
    b.freeBytes(p);
  }
}

/** group_norm and group_norm_silu: one export each over the same (sample, group) split. */
function groupNormForward(op: string, fn: 'groupNorm' | 'groupNormSilu'): void {
  registerKernel<CpuBackend>(op, C, (b, [x, w, bias], [y, mean, rstd], attrs) => {
    const [N, Ch, S] = ncs(x);
    const G = normGroups(op, attrs, Ch);
    const eps = normEps(op, attrs);
    const Cg = Ch / G;
    const [xp, wp, bp, yp, mp, rp] = [x, w, bias, y, mean, rstd].map((t) => b.addr(t));
    b.pool.run(fn, ranges(b, N * G, Cg * S).map(([s0, s1]) => [xp, wp, bp, yp, mp, rp, G, Cg, S, eps, s0, s1]));
  });
}
groupNormForward('group_norm', 'groupNorm');
groupNormForward('group_norm_silu', 'groupNormSilu');

/**
 * dx per (sample, group) set with the per-(n, c) sums in scratch, then dweight and dbias per channel
 * from them. `bias` (group_norm_silu_grad only) selects the export that recomputes h for silu's backward.
 */
function groupNormBackward(b: CpuBackend, op: string, [dy, x, w, mean, rstd]: TensorInfo[], bias: TensorInfo | null, [dx, dw, db]: TensorInfo[], attrs: Record<string, unknown>): void {
  const [N, Ch, S] = ncs(x);
  const G = normGroups(op, attrs, Ch);
  const Cg = Ch / G;
  const [dyp, xp, wp, mp, rp, dxp, dwp, dbp] = [dy, x, w, mean, rstd, dx, dw, db].map((t) => b.addr(t));
  withScratch(b, N * Ch * 16, (sums) => {
    const sets = ranges(b, N * G, Cg * S);
    if (bias) {
      const bp = b.addr(bias);
      b.pool.run('groupNormSiluGrad', sets.map(([s0, s1]) => [dyp, xp, wp, bp, mp, rp, dxp, sums, G, Cg, S, s0, s1]));
    } else {
      b.pool.run('groupNormGrad', sets.map(([s0, s1]) => [dyp, xp, wp, mp, rp, dxp, sums, G, Cg, S, s0, s1]));
    }
    b.pool.run('groupNormGradChannels', ranges(b, Ch, N).map(([c0, c1]) => [sums, rp, dwp, dbp, N, Ch, G, c0, c1]));
  });
}

registerKernel<CpuBackend>('group_norm_grad', C, (b, ins, outs, attrs) => groupNormBackward(b, 'group_norm_grad', [...ins], null, [...outs], attrs));

registerKernel<CpuBackend>('group_norm_silu_grad', C, (b, [dy, x, w, bias, mean, rstd], outs, attrs) =>
  groupNormBackward(b, 'group_norm_silu_grad', [dy, x, w, mean, rstd], bias, [...outs], attrs));

registerKernel<CpuBackend>('batch_norm_train', C, (b, [x, w, bias], [y, mean, variance], attrs) => {
  const [N, Ch, S] = ncs(x);
  const eps = normEps('batch_norm_train', attrs);
  const [xp, wp, bp, yp, mp, vp] = [x, w, bias, y, mean, variance].map((t) => b.addr(t));
  b.pool.run('batchNormTrain', ranges(b, Ch, N * S).map(([c0, c1]) => [xp, wp, bp, yp, mp, vp, N, Ch, S, eps, c0, c1]));
});

registerKernel<CpuBackend>('batch_norm_train_grad', C, (b, [dy, x, w, mean, variance], [dx, dw, db], attrs) => {
  const [N, Ch, S] = ncs(x);
  const eps = normEps('batch_norm_train_grad', attrs);
  const [dyp, xp, wp, mp, vp, dxp, dwp, dbp] = [dy, x, w, mean, variance, dx, dw, db].map((t) => b.addr(t));
  b.pool.run('batchNormTrainGrad', ranges(b, Ch, N * S).map(([c0, c1]) => [dyp, xp, wp, mp, vp, dxp, dwp, dbp, N, Ch, S, eps, c0, c1]));
});

registerKernel<CpuBackend>('batch_norm_eval', C, (b, [x, w, bias, rm, rv], [y], attrs) => {
  const [N, Ch, S] = ncs(x);
  const eps = normEps('batch_norm_eval', attrs);
  if (N * Ch * S === 0) return;
  // Per channel: y = (x - running_mean) * (weight / sqrt(running_var + eps)) + bias (scale in f64).
  withScratch(b, Ch * 4, (scale) => {
    const m = b.mem();
    const wv = m.f32.subarray(b.addr(w) / 4, b.addr(w) / 4 + Ch);
    const vv = m.f32.subarray(b.addr(rv) / 4, b.addr(rv) / 4 + Ch);
    for (let c = 0; c < Ch; c++) m.f32[scale / 4 + c] = wv[c] / Math.sqrt(vv[c] + eps);
    const xp = b.addr(x), yp = b.addr(y), mp = b.addr(rm), bp = b.addr(bias);
    b.pool.run('channelAffine', ranges(b, N * Ch, S).map(([r0, r1]) => [xp, yp, Ch, S, mp, scale, bp, r0, r1]));
  });
});

registerKernel<CpuBackend>('layer_norm', C, (b, [x, w, bias], [y, mean, rstd], attrs) => {
  const [rows, D] = rowsOf(x);
  const eps = normEps('layer_norm', attrs);
  const [xp, wp, bp, yp, mp, rp] = [x, w, bias, y, mean, rstd].map((t) => b.addr(t));
  b.pool.run('layerNorm', ranges(b, rows, D).map(([r0, r1]) => [xp, wp, bp, yp, mp, rp, D, eps, r0, r1]));
});

/** Runs a last-dim norm gradient `fn` over row chunks, then sums the chunks' partials into `outs`. */
function chunked<K extends CpuExportName>(b: CpuBackend, fn: K, rows: number, D: number, outs: number[], args: (parts: number[], k0: number, k1: number) => CpuArgs<K>): void {
  const chunks = Math.ceil(rows / RCH);
  withScratch(b, chunks * D * 4 * outs.length, (part) => {
    const parts = outs.map((_, i) => part + i * chunks * D * 4);
    b.pool.run(fn, ranges(b, chunks, RCH * D).map(([k0, k1]) => args(parts, k0, k1)));
    outs.forEach((out, i) => b.pool.run('chunkSums', ranges(b, D, chunks).map(([j0, j1]) => [parts[i], chunks, D, out, j0, j1])));
  });
}

registerKernel<CpuBackend>('layer_norm_grad', C, (b, [dy, x, w, mean, rstd], [dx, dw, db]) => {
  const [rows, D] = rowsOf(x);
  const [dyp, xp, wp, mp, rp, dxp] = [dy, x, w, mean, rstd, dx].map((t) => b.addr(t));
  chunked(b, 'layerNormGrad', rows, D, [b.addr(dw), b.addr(db)], ([pw, pb], k0, k1) => [dyp, xp, wp, mp, rp, dxp, pw, pb, D, rows, k0, k1]);
});

registerKernel<CpuBackend>('rms_norm', C, (b, [x, w], [y, rstd], attrs) => {
  const [rows, D] = rowsOf(x);
  const eps = normEps('rms_norm', attrs, true);
  const [xp, wp, yp, rp] = [x, w, y, rstd].map((t) => b.addr(t));
  b.pool.run('rmsNorm', ranges(b, rows, D).map(([r0, r1]) => [xp, wp, yp, rp, D, eps, r0, r1]));
});

registerKernel<CpuBackend>('rms_norm_grad', C, (b, [dy, x, w, rstd], [dx, dw]) => {
  const [rows, D] = rowsOf(x);
  const [dyp, xp, wp, rp, dxp] = [dy, x, w, rstd, dx].map((t) => b.addr(t));
  chunked(b, 'rmsNormGrad', rows, D, [b.addr(dw)], ([pw], k0, k1) => [dyp, xp, wp, rp, dxp, pw, D, rows, k0, k1]);
});
