// Quantize family: the fused IBQ quantizer (IndexPropagationQuantize, tokenizer.md §5) and its
// straight-through backward. Kernels walk the codebook in chunks of rows so that no
// [tokens x codebook] logits tensor ever exists (a 262144-row codebook must fit).

import { defineOps, type Domain, type OpCase, type ShapeDtype } from '../op.js';
import { numAttr } from '../shape.js';
import { OpError, type Attrs } from '../types.js';
import { zeros } from './grad.js';

/** The eps inside avg_entropy's log(avg_p + eps) (compute_entropy_loss). */
export const AVG_ENTROPY_EPS = 1e-5;

export interface QuantizeAttrs {
  beta: number;
  temperature: number;
  /** Codebook rows per chunk; undefined: the backend chooses. Never changes results beyond rounding. */
  chunk: number | undefined;
}

/** Validated quantizer attributes with the reference's defaults. Every backend uses this. */
export function quantizeAttrs(op: string, attrs: Attrs): QuantizeAttrs {
  const beta = numAttr(op, attrs, 'beta', 0.25);
  const temperature = numAttr(op, attrs, 'temperature', 0.01);
  if (!(temperature > 0) || !Number.isFinite(temperature)) throw new OpError(op, `attribute 'temperature' must be a positive number, got ${temperature}`);
  const chunk = attrs.chunk;
  if (chunk !== undefined && !(typeof chunk === 'number' && Number.isInteger(chunk) && chunk > 0)) {
    throw new OpError(op, `attribute 'chunk' must be a positive integer (codebook rows per chunk), got ${JSON.stringify(chunk)}`);
  }
  return { beta, temperature, chunk: chunk as number | undefined };
}

function exactShape(op: string, name: string, t: ShapeDtype, want: readonly number[]): void {
  if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
    throw new OpError(op, `input '${name}' must be [${want}], got [${t.shape}]`);
  }
}

/** Checks z [T,D] and codebook [N,D] (all at least 1: the quantizer's means need them); returns [T, D, N]. */
function quantizeShapes(op: string, z: ShapeDtype, codebook: ShapeDtype, attrs: Attrs): [number, number, number] {
  quantizeAttrs(op, attrs);
  if (z.shape.length !== 2) throw new OpError(op, `input 'z' must be rank 2 [T,D], got [${z.shape}]`);
  if (codebook.shape.length !== 2) throw new OpError(op, `input 'codebook' must be rank 2 [N,D], got [${codebook.shape}]`);
  const [T, D] = z.shape;
  const [N, cd] = codebook.shape;
  if (cd !== D) throw new OpError(op, `codebook rows have ${cd} dims but z rows have ${D}`);
  if (T === 0 || D === 0 || N === 0) throw new OpError(op, `z [${z.shape}] and codebook [${codebook.shape}] must be non-empty (the losses are means over them)`);
  return [T, D, N];
}

// Domains. With temperature 0.01 the entropy terms see logits/0.01: z and codebook entries in
// [-0.2, 0.2] keep |logits| ~ 0.03 for D = 5..8, i.e. logits/T spread over a few units, so the
// tempered softmax is peaked but not saturated and its gradients (checked by finite
// differences in test/quantize.test.ts) are not all zero. The temperature-1 case uses [-1, 1].
const SMALL: Domain = { kind: 'uniform', lo: -0.2, hi: 0.2 };
const UNIT: Domain = { kind: 'uniform', lo: -1, hi: 1 };

interface QuantizeCaseSpec {
  name: string;
  T: number;
  D: number;
  N: number;
  attrs?: Attrs;
}

const QUANTIZE_SPECS: QuantizeCaseSpec[] = [
  { name: 'small', T: 6, D: 5, N: 7 },
  { name: 'odd', T: 13, D: 8, N: 37 },
  // 37 rows in chunks of 10: three full chunks and one of 7.
  { name: 'uneven chunks', T: 13, D: 8, N: 37, attrs: { chunk: 10 } },
  { name: 'chunk of one row', T: 4, D: 5, N: 7, attrs: { chunk: 1 } },
  { name: 'one token', T: 1, D: 5, N: 7 },
  { name: 'one codeword', T: 3, D: 4, N: 1 },
  { name: 'temperature 1', T: 6, D: 5, N: 7, attrs: { temperature: 1, beta: 0.5 } },
];

/** Entries of z and the codebook: SMALL at the default temperature 0.01, UNIT at temperature 1. */
const entriesFor = (s: QuantizeCaseSpec): Domain => ((s.attrs?.temperature ?? 0.01) === 0.01 ? SMALL : UNIT);

/** Forward cases as (z, codebook). */
export const QUANTIZE_CASES: OpCase[] = QUANTIZE_SPECS.map((s) => ({
  name: s.name,
  shapes: [[s.T, s.D], [s.N, s.D]],
  attrs: s.attrs,
  domains: [entriesFor(s), entriesFor(s)],
}));

/** Backward cases: dzq, dlosses, z, codebook, indices, lse, lseT, avgP, the saved values drawn near plausible ones. */
const QUANTIZE_GRAD_CASES: OpCase[] = QUANTIZE_SPECS.map((s) => {
  const { T, D, N } = s;
  const temperature = (s.attrs?.temperature as number | undefined) ?? 0.01;
  const logN = Math.log(N);
  // Largest plausible |logit|: D products of two entries.
  const bound = entriesFor(s) === SMALL ? D * 0.04 : D;
  return {
    name: s.name,
    shapes: [[T, D], [4], [T, D], [N, D], [T], [T], [T], [N]],
    attrs: s.attrs,
    domains: [
      UNIT,
      UNIT,
      entriesFor(s),
      entriesFor(s),
      { kind: 'int', lo: 0, hi: N },
      { kind: 'uniform', lo: logN, hi: logN + bound },
      { kind: 'uniform', lo: logN, hi: logN + bound / temperature },
      { kind: 'uniform', lo: 0, hi: 2 / N },
    ],
  };
});

defineOps([
  {
    name: 'ibq_quantize',
    autocast: 'f32',
    doc:
      'IBQ quantizer forward (tokenizer.md §5): logits = z codebook^T (inner products); indices = first argmax per row; zq = codebook[indices] ' +
      '(the straight-through value); losses = [quant_loss, sample_entropy, avg_entropy, sample_entropy - avg_entropy] with ' +
      'quant_loss = (2 + beta) mean((zq - z)^2) (three terms, equal in value), p = softmax(logits/temperature), ' +
      'sample_entropy = mean_t(-sum_n p log p), avg_p = mean_t p, avg_entropy = -sum_n avg_p log(avg_p + 1e-5); ' +
      'saves lse = logsumexp(logits), lseT = logsumexp(logits/temperature) and avgP = avg_p. `chunk` (codebook rows per pass) never changes results. ' +
      'zq is codebook[indices] exactly (not the reference\'s 1 - s + s rounding); the reference\'s + 1e-5 inside log_softmax has no effect and is dropped.',
    inputs: [{ name: 'z', kind: 'float' }, { name: 'codebook', kind: 'float' }],
    outputs: ['indices', 'zq', 'losses', 'lse', 'lseT', 'avgP'],
    infer: ([z, codebook], attrs) => {
      const [T, D, N] = quantizeShapes('ibq_quantize', z, codebook, attrs);
      const f = z.dtype;
      return [
        { shape: [T], dtype: 'i32' }, { shape: [T, D], dtype: f }, { shape: [4], dtype: f },
        { shape: [T], dtype: f }, { shape: [T], dtype: f }, { shape: [N], dtype: f },
      ];
    },
    domain: SMALL,
    tolerance: ['exact', 'elementwise', 'loose', 'accumulate', 'loose', 'loose'],
    cases: QUANTIZE_CASES,
    gradOutputs: [1, 2],
    surrogateGradient:
      'straight-through estimator and stop-gradients (tokenizer.md §5 steps 5-7): checked by finite differences of a surrogate forward in test/quantize.test.ts',
    vjp: (ctx, [z, codebook], [indices, zq, losses, lse, lseT, avgP], [, dzq, dlosses], attrs) =>
      ctx.run('ibq_quantize_grad', [dzq ?? zeros(ctx, zq), dlosses ?? zeros(ctx, losses), z, codebook, indices, lse, lseT, avgP], attrs),
  },
  {
    name: 'ibq_quantize_grad',
    doc:
      'Straight-through gradient of ibq_quantize, with M = T*D, r = codebook[indices] - z, g = dzq + 2 dlosses[0] r / M: ' +
      'dcodebook[ind_t] += g_t + 2 beta dlosses[0] r_t / M (hard path, codebook term); dz += -4 dlosses[0] r / M (commitment terms); ' +
      'and through the logits: dlogits_tn = soft_tn (<g_t,E_n> - sum_m soft_tm <g_t,E_m>) (soft = exp(logits - lse)) ' +
      '- gs p_tn (log p_tn + H_t)/(T temperature) + ga p_tn (c_n - sum_m c_m p_tm)/(T temperature) with p = exp(logits/temperature - lseT), ' +
      'H_t = -sum p log p, c_n = -(log(avgP_n + 1e-5) + avgP_n/(avgP_n + 1e-5)), gs = dlosses[1] + dlosses[3], ga = dlosses[2] - dlosses[3]; ' +
      'dz += dlogits codebook, dcodebook += dlogits^T z. An index outside [0,N) reads a zero codeword and adds no hard-path gradient.',
    inputs: [
      { name: 'dzq', kind: 'float' }, { name: 'dlosses', kind: 'float' }, { name: 'z', kind: 'float' }, { name: 'codebook', kind: 'float' },
      { name: 'indices', kind: 'i32' }, { name: 'lse', kind: 'float' }, { name: 'lseT', kind: 'float' }, { name: 'avgP', kind: 'float' },
    ],
    outputs: ['dz', 'dcodebook'],
    infer: ([dzq, dlosses, z, codebook, indices, lse, lseT, avgP], attrs) => {
      const op = 'ibq_quantize_grad';
      const [T, D, N] = quantizeShapes(op, z, codebook, attrs);
      exactShape(op, 'dzq', dzq, [T, D]);
      exactShape(op, 'dlosses', dlosses, [4]);
      exactShape(op, 'indices', indices, [T]);
      exactShape(op, 'lse', lse, [T]);
      exactShape(op, 'lseT', lseT, [T]);
      exactShape(op, 'avgP', avgP, [N]);
      return [{ shape: [T, D], dtype: z.dtype }, { shape: [N, D], dtype: z.dtype }];
    },
    tolerance: 'loose',
    cases: QUANTIZE_GRAD_CASES,
    backwardOf: 'ibq_quantize',
  },
]);
