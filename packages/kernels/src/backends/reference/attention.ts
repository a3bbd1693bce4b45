// Reference kernels for src/ops/attention.ts: attention (one query row at a time, float64),
// its flash-style backward, and interleaved rope.

import { registerKernel } from '../../dispatch.js';
import { attentionAttrs, lastVisibleKey } from '../../ops/attention.js';
import { boolAttr } from '../../shape.js';
import { type ReferenceBackend, view } from './backend.js';

const R = 'reference';

registerKernel<ReferenceBackend>('attention', R, (_b, [q, k, v], [out, lse], attrs) => {
  const [B, H, Lq, D] = q.shape;
  const Lk = k.shape[2], Dv = v.shape[3];
  const { causal, scale } = attentionAttrs('attention', attrs, D);
  const qv = view(q), kv = view(k), vv = view(v), ov = view(out), lv = view(lse);
  const scores = new Float64Array(Lk);
  const acc = new Float64Array(Dv);
  for (let bh = 0; bh < B * H; bh++) {
    const qBase = bh * Lq * D, kBase = bh * Lk * D, vBase = bh * Lk * Dv, oBase = bh * Lq * Dv;
    for (let i = 0; i < Lq; i++) {
      const last = lastVisibleKey(causal, i, Lq, Lk);
      let max = -Infinity;
      for (let j = 0; j <= last; j++) {
        let s = 0;
        for (let d = 0; d < D; d++) s += qv[qBase + i * D + d] * kv[kBase + j * D + d];
        scores[j] = s * scale;
        if (scores[j] > max) max = scores[j];
      }
      acc.fill(0);
      let rowLse = -Infinity;
      if (last >= 0) {
        let sum = 0;
        for (let j = 0; j <= last; j++) sum += Math.exp(scores[j] - max);
        rowLse = max + Math.log(sum);
        for (let j = 0; j <= last; j++) {
          const p = Math.exp(scores[j] - rowLse);
          for (let c = 0; c < Dv; c++) acc[c] += p * vv[vBase + j * Dv + c];
        }
      }
      for (let c = 0; c < Dv; c++) ov[oBase + i * Dv + c] = acc[c];
      lv[bh * Lq + i] = rowLse;
    }
  }
});

registerKernel<ReferenceBackend>('attention_grad', R, (_b, [dout, q, k, v, out, lse], [dq, dk, dv], attrs) => {
  const [B, H, Lq, D] = q.shape;
  const Lk = k.shape[2], Dv = v.shape[3];
  const { causal, scale } = attentionAttrs('attention_grad', attrs, D);
  const gv = view(dout), qv = view(q), kv = view(k), vv = view(v), ov = view(out), lv = view(lse);
  const dqv = view(dq), dkv = view(dk), dvv = view(dv);
  const dqRow = new Float64Array(D);
  const dkAcc = new Float64Array(Lk * D), dvAcc = new Float64Array(Lk * Dv);
  for (let bh = 0; bh < B * H; bh++) {
    const qBase = bh * Lq * D, kBase = bh * Lk * D, vBase = bh * Lk * Dv, oBase = bh * Lq * Dv;
    dkAcc.fill(0);
    dvAcc.fill(0);
    for (let i = 0; i < Lq; i++) {
      const last = lastVisibleKey(causal, i, Lq, Lk);
      const go = oBase + i * Dv;
      let rowDot = 0; // D_i = dout_i . out_i
      for (let c = 0; c < Dv; c++) rowDot += gv[go + c] * ov[go + c];
      dqRow.fill(0);
      for (let j = 0; j <= last; j++) {
        let s = 0;
        for (let d = 0; d < D; d++) s += qv[qBase + i * D + d] * kv[kBase + j * D + d];
        const p = Math.exp(s * scale - lv[bh * Lq + i]);
        let dp = 0;
        for (let c = 0; c < Dv; c++) {
          dvAcc[j * Dv + c] += p * gv[go + c];
          dp += gv[go + c] * vv[vBase + j * Dv + c];
        }
        const ds = p * (dp - rowDot) * scale;
        for (let d = 0; d < D; d++) {
          dqRow[d] += ds * kv[kBase + j * D + d];
          dkAcc[j * D + d] += ds * qv[qBase + i * D + d];
        }
      }
      for (let d = 0; d < D; d++) dqv[qBase + i * D + d] = dqRow[d];
    }
    for (let e = 0; e < Lk * D; e++) dkv[kBase + e] = dkAcc[e];
    for (let e = 0; e < Lk * Dv; e++) dvv[vBase + e] = dvAcc[e];
  }
});

registerKernel<ReferenceBackend>('rope', R, (_b, [x, cos, sin], [y], attrs) => {
  const [B, L, H, D] = x.shape;
  const half = D / 2;
  const sign = boolAttr('rope', attrs, 'inverse', false) ? -1 : 1;
  const xv = view(x), cv = view(cos), sv = view(sin), yv = view(y);
  for (let b = 0; b < B; b++) {
    for (let l = 0; l < L; l++) {
      for (let h = 0; h < H; h++) {
        const base = ((b * L + l) * H + h) * D;
        for (let i = 0; i < half; i++) {
          const c = cv[l * half + i], s = sign * sv[l * half + i];
          const a = xv[base + 2 * i], bb = xv[base + 2 * i + 1];
          yv[base + 2 * i] = a * c - bb * s;
          yv[base + 2 * i + 1] = bb * c + a * s;
        }
      }
    }
  }
});
