// cpu kernels for attention (src/ops/attention.ts; rope is in misc.ts). Flash-style, math in
// assembly/attention.ts: work units are (batch*head, query block) for the forward and dq, and
// (batch*head, key block) for dk and dv, dealt to threads round-robin; each thread has its own
// scratch tiles (a few [32 x 64] score tiles and one key/value block), nothing of [Lq x Lk].

import { registerKernel } from '../../../dispatch.js';
import { attentionAttrs } from '../../../ops/attention.js';
import type { CpuBackend } from '../backend.js';
import { ASM, type CpuArgs, type CpuExportName } from '../wasm-interface.js';

const C = 'cpu';
/** Must match assembly/attention.ts. */
const { BQ, BK } = ASM.attention;
/** Multiply-adds below which attention runs on the calling thread only. */
const PARALLEL_WORK = 1 << 18;

function threadsFor(b: CpuBackend, units: number, work: number): number {
  return Math.max(1, Math.min(b.threads, units, work < PARALLEL_WORK ? 1 : b.threads));
}

/** Runs `fn` with per-thread scratch of `bytes` each (64-byte aligned), one part per thread. */
function runUnits<K extends CpuExportName>(b: CpuBackend, fn: K, T: number, bytes: number, args: (scratch: number, tid: number) => CpuArgs<K>): void {
  const per = Math.ceil(bytes / 64) * 64;
  const base = b.allocBytes(per * T);
  try {
    b.pool.run(fn, Array.from({ length: T }, (_, t) => args(base + t * per, t)));
  } finally {
    b.freeBytes(base);
  }
}

registerKernel<CpuBackend>('attention', C, (b, [q, k, v], [out, lse], attrs) => {
  const [B, H, Lq, D] = q.shape;
  const Lk = k.shape[2], Dv = v.shape[3];
  const { causal, scale } = attentionAttrs('attention', attrs, D);
  const BH = B * H;
  if (BH * Lq === 0) return;
  const T = threadsFor(b, BH * Math.ceil(Lq / BQ), BH * Lq * Lk * (D + Dv));
  const [qp, kp, vp, op, lp] = [q, k, v, out, lse].map((t) => b.addr(t));
  runUnits(b, 'attnFwd', T, b.x.attnFwdScratch(D, Dv) as number, (s, t) =>
    [qp, kp, vp, op, lp, BH, Lq, Lk, D, Dv, scale, causal ? 1 : 0, s, t, T]);
});

registerKernel<CpuBackend>('attention_grad', C, (b, [dout, q, k, v, out, lse], [dq, dk, dv], attrs) => {
  const [B, H, Lq, D] = q.shape;
  const Lk = k.shape[2], Dv = v.shape[3];
  const { causal, scale } = attentionAttrs('attention_grad', attrs, D);
  const BH = B * H;
  const work = BH * Lq * Lk * (D + Dv);
  const [gp, qp, kp, vp, op, lp, dqp, dkp, dvp] = [dout, q, k, v, out, lse, dq, dk, dv].map((t) => b.addr(t));
  const dvec = b.allocBytes(BH * Lq * 4);
  try {
    if (BH * Lq > 0) {
      const T = threadsFor(b, BH * Math.ceil(Lq / BQ), work);
      runUnits(b, 'attnBwdDq', T, b.x.attnDqScratch(D, Dv) as number, (s, t) =>
        [gp, qp, kp, vp, op, lp, dqp, dvec, BH, Lq, Lk, D, Dv, scale, causal ? 1 : 0, s, t, T]);
    }
    if (BH * Lk > 0) {
      const T = threadsFor(b, BH * Math.ceil(Lk / BK), work);
      runUnits(b, 'attnBwdDkv', T, b.x.attnDkvScratch(D, Dv) as number, (s, t) =>
        [gp, qp, kp, vp, lp, dvec, dkp, dvp, BH, Lq, Lk, D, Dv, scale, causal ? 1 : 0, s, t, T]);
    }
  } finally {
    b.freeBytes(dvec);
  }
});
