// Attention family: scaled-dot-product attention (forward saves the row logsumexp for a
// flash-style backward), its gradient kernel, and interleaved rotary position embedding.

import { defineOps, type Domain, type OpCase, type ShapeDtype } from '../op.js';
import { boolAttr, numAttr } from '../shape.js';
import { OpError, type Attrs } from '../types.js';

export interface AttentionAttrs {
  causal: boolean;
  scale: number;
}

/** Validated attention attributes; `scale` defaults to 1/sqrt(D) (D = query/key width). Every backend uses this. */
export function attentionAttrs(op: string, attrs: Attrs, headDim: number): AttentionAttrs {
  const causal = boolAttr(op, attrs, 'causal', false);
  const scale = numAttr(op, attrs, 'scale', 1 / Math.sqrt(Math.max(headDim, 1)));
  if (!Number.isFinite(scale)) throw new OpError(op, `attribute 'scale' must be finite, got ${scale}`);
  return { causal, scale };
}

/** Index of the last key visible to query i (inclusive; -1 when none): j <= i + (Lk - Lq) when causal. */
export function lastVisibleKey(causal: boolean, i: number, lq: number, lk: number): number {
  return causal ? i + lk - lq : lk - 1;
}

function rank4(op: string, name: string, t: ShapeDtype): readonly number[] {
  if (t.shape.length !== 4) throw new OpError(op, `input '${name}' must be rank 4 [B,H,L,D], got [${t.shape}]`);
  return t.shape;
}

/** Checks q, k, v and returns [B, H, Lq, Lk, D, Dv]. */
function attentionShapes(op: string, q: ShapeDtype, k: ShapeDtype, v: ShapeDtype, attrs: Attrs): number[] {
  const [B, H, Lq, D] = rank4(op, 'q', q);
  const [kb, kh, Lk, kd] = rank4(op, 'k', k);
  const [vb, vh, vl, Dv] = rank4(op, 'v', v);
  if (kb !== B || kh !== H || vb !== B || vh !== H) {
    throw new OpError(op, `q [${q.shape}], k [${k.shape}] and v [${v.shape}] must share batch and head dims`);
  }
  if (kd !== D) throw new OpError(op, `k's last dim ${kd} must equal q's ${D}`);
  if (vl !== Lk) throw new OpError(op, `v has ${vl} positions but k has ${Lk}`);
  const { causal } = attentionAttrs(op, attrs, D);
  if (causal && Lq > Lk) {
    throw new OpError(op, `attribute 'causal' needs Lq <= Lk (queries are the last Lq of Lk positions), got Lq ${Lq}, Lk ${Lk}`);
  }
  return [B, H, Lq, Lk, D, Dv];
}

function sameShape(op: string, name: string, t: ShapeDtype, want: readonly number[]): void {
  if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
    throw new OpError(op, `input '${name}' must be [${want}], got [${t.shape}]`);
  }
}

/** Cases as q, k, v shapes; the backward kernel reuses them with dout, out and lse added. */
const attentionCases: OpCase[] = [
  { name: 'full', shapes: [[2, 3, 6, 8], [2, 3, 6, 8], [2, 3, 6, 8]], attrs: { causal: false } },
  { name: 'causal', shapes: [[2, 3, 6, 8], [2, 3, 6, 8], [2, 3, 6, 8]], attrs: { causal: true } },
  { name: 'kv-cache (Lq < Lk, causal)', shapes: [[1, 2, 3, 8], [1, 2, 7, 8], [1, 2, 7, 8]], attrs: { causal: true } },
  { name: 'odd, Dv != D, explicit scale', shapes: [[2, 3, 5, 7], [2, 3, 11, 7], [2, 3, 11, 13]], attrs: { causal: false, scale: 0.3 } },
  { name: 'odd causal, Dv != D', shapes: [[1, 3, 5, 7], [1, 3, 11, 7], [1, 3, 11, 13]], attrs: { causal: true } },
  { name: 'one query (decode step)', shapes: [[2, 2, 1, 4], [2, 2, 9, 4], [2, 2, 9, 4]], attrs: { causal: true } },
  { name: 'size-1', shapes: [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]], attrs: { causal: true } },
  // No keys: every output row is 0 and lse is -inf (nothing to attend to).
  { name: 'no keys', shapes: [[1, 2, 3, 4], [1, 2, 0, 4], [1, 2, 0, 5]], attrs: { causal: false } },
  { name: 'no queries', shapes: [[1, 2, 0, 4], [1, 2, 5, 4], [1, 2, 5, 4]], attrs: { causal: true } },
  { name: 'empty batch', shapes: [[0, 2, 3, 4], [0, 2, 3, 4], [0, 2, 3, 4]], attrs: { causal: true } },
];

/** Backward cases: dout and out take v's width, lse the query rows. */
const attentionGradCases: OpCase[] = attentionCases.map((c) => {
  const [q, k, v] = c.shapes;
  const outShape = [q[0], q[1], q[2], v[3]];
  return { ...c, shapes: [outShape, q, k, v, outShape, [q[0], q[1], q[2]]] };
});

const QKV: Domain = { kind: 'uniform', lo: -2, hi: 2 };

// Rope: x [B,L,H,D], cos/sin [L,D/2].
const ROPE_TABLE: Domain = { kind: 'uniform', lo: -1, hi: 1 };
const ZERO: Domain = { kind: 'uniform', lo: 0, hi: 0 };

defineOps([
  {
    name: 'attention',
    autocast: 'low',
    doc:
      'out[b,h,i] = sum_j softmax_j(scale * q[b,h,i].k[b,h,j]) v[b,h,j] over the keys j visible to query i ' +
      '(all, or j <= i + Lk - Lq when `causal`; causal needs Lq <= Lk); lse[b,h,i] = logsumexp_j of the same scaled scores. ' +
      '`scale` defaults to 1/sqrt(D). A query with no visible key (Lk = 0) gets out = 0 and lse = -inf.',
    inputs: [{ name: 'q', kind: 'float' }, { name: 'k', kind: 'float' }, { name: 'v', kind: 'float' }],
    outputs: ['out', 'lse'],
    infer: ([q, k, v], attrs) => {
      const [B, H, Lq, , , Dv] = attentionShapes('attention', q, k, v, attrs);
      return [{ shape: [B, H, Lq, Dv], dtype: q.dtype }, { shape: [B, H, Lq], dtype: q.dtype }];
    },
    domain: QKV,
    tolerance: ['accumulate', 'accumulate'],
    cases: attentionCases,
    gradOutputs: [0],
    vjp: (ctx, [q, k, v], [out, lse], [dout], attrs) => ctx.run('attention_grad', [dout!, q, k, v, out, lse], attrs),
  },
  {
    name: 'attention_grad',
    doc:
      'Gradients of attention from the saved out and lse (flash-attention style): P_ij = exp(scale q_i.k_j - lse_i) on visible keys, ' +
      'D_i = sum(dout_i * out_i), dv_j = sum_i P_ij dout_i, dS_ij = P_ij (dout_i.v_j - D_i), dq_i = scale sum_j dS_ij k_j, dk_j = scale sum_i dS_ij q_i.',
    inputs: [
      { name: 'dout', kind: 'float' }, { name: 'q', kind: 'float' }, { name: 'k', kind: 'float' },
      { name: 'v', kind: 'float' }, { name: 'out', kind: 'float' }, { name: 'lse', kind: 'float' },
    ],
    outputs: ['dq', 'dk', 'dv'],
    infer: ([dout, q, k, v, out, lse], attrs) => {
      const [B, H, Lq, , , Dv] = attentionShapes('attention_grad', q, k, v, attrs);
      sameShape('attention_grad', 'dout', dout, [B, H, Lq, Dv]);
      sameShape('attention_grad', 'out', out, [B, H, Lq, Dv]);
      sameShape('attention_grad', 'lse', lse, [B, H, Lq]);
      return [q, k, v].map((t) => ({ shape: t.shape, dtype: t.dtype }));
    },
    // lse near the logsumexp of scores drawn from QKV, so that P stays a plausible distribution.
    domain: [QKV, QKV, QKV, QKV, QKV, { kind: 'uniform', lo: 1.5, hi: 3.5 }],
    tolerance: 'loose',
    cases: attentionGradCases,
    backwardOf: 'attention',
  },
  {
    name: 'rope',
    doc:
      'Rotary embedding on interleaved pairs: for x [B,L,H,D] and cos, sin [L,D/2], pair i = (x[..,2i], x[..,2i+1]) = (a, b) at position l ' +
      'becomes (a cos[l,i] - b sin[l,i], b cos[l,i] + a sin[l,i]); `inverse` uses -sin (the transpose, hence also the backward). ' +
      'The table is used as given (a zero row, as for the class token, zeroes that position).',
    inputs: [{ name: 'x', kind: 'float' }, { name: 'cos', kind: 'float' }, { name: 'sin', kind: 'float' }],
    outputs: ['y'],
    infer: ([x, cos, sin], attrs) => {
      boolAttr('rope', attrs, 'inverse', false);
      if (x.shape.length !== 4) throw new OpError('rope', `input 'x' must be rank 4 [B,L,H,D], got [${x.shape}]`);
      const [, L, , D] = x.shape;
      if (D % 2 !== 0) throw new OpError('rope', `the last dim of 'x' must be even (interleaved pairs), got ${D}`);
      sameShape('rope', 'cos', cos, [L, D / 2]);
      sameShape('rope', 'sin', sin, [L, D / 2]);
      return [{ shape: x.shape, dtype: x.dtype }];
    },
    domain: [{ kind: 'uniform', lo: -2, hi: 2 }, ROPE_TABLE, ROPE_TABLE],
    tolerance: 'elementwise',
    cases: [
      { name: 'regular', shapes: [[2, 6, 3, 8], [6, 4], [6, 4]], attrs: { inverse: false } },
      { name: 'inverse', shapes: [[2, 6, 3, 8], [6, 4], [6, 4]], attrs: { inverse: true } },
      { name: 'odd', shapes: [[3, 7, 5, 10], [7, 5], [7, 5]] },
      // The AR prefill step: only the class token, whose table row is all zeros (ar.md quirk).
      { name: 'class-token row of zeros', shapes: [[2, 1, 4, 8], [1, 4], [1, 4]], domains: [undefined, ZERO, ZERO] },
      { name: 'size-1', shapes: [[1, 1, 1, 2], [1, 1], [1, 1]], attrs: { inverse: true } },
      { name: 'empty', shapes: [[0, 5, 2, 4], [5, 2], [5, 2]] },
    ],
    gradInputs: [0],
    vjp: (ctx, [, cos, sin], _o, [dy], attrs) => [
      ctx.run('rope', [dy!, cos, sin], { ...attrs, inverse: !boolAttr('rope', attrs, 'inverse', false) })[0],
      null,
      null,
    ],
  },
]);
