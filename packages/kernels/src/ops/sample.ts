// Sampling family: one token per row of logits, the filtering and the draw of the AR sampler
// (packages/ar) fused into one op, so that a sampling loop on a GPU never reads logits back.

import { defineOps } from '../op.js';
import { numAttr } from '../shape.js';
import { type Attrs, OpError } from '../types.js';

export interface SampleAttrs {
  temperature: number;
  topK: number;
  topP: number;
}

/** Validated sample_logits attributes. Every backend uses this. */
export function sampleAttrs(op: string, attrs: Attrs): SampleAttrs {
  const temperature = numAttr(op, attrs, 'temperature', 1);
  const topK = numAttr(op, attrs, 'topK', 0);
  const topP = numAttr(op, attrs, 'topP', 1);
  if (!(temperature > 0) || !Number.isFinite(temperature)) throw new OpError(op, `attribute 'temperature' must be > 0, got ${temperature}`);
  if (!Number.isInteger(topK) || topK < 0) throw new OpError(op, `attribute 'topK' must be an integer >= 0, got ${topK}`);
  if (!(topP > 0 && topP <= 1)) throw new OpError(op, `attribute 'topP' must be in (0, 1], got ${topP}`);
  return { temperature, topK, topP };
}

const LOGITS = { kind: 'uniform', lo: -4, hi: 4 } as const;
const UNIFORMS = { kind: 'uniform', lo: 0.001, hi: 0.999 } as const;
const TIES = { kind: 'int', lo: -2, hi: 3 } as const;

defineOps([
  {
    name: 'sample_logits',
    doc:
      'One token (i32) per row of logits [R,V] from the uniform u [R] in (0,1): with w_v = exp((l_v - max l) / temperature), '
      + 'top-k (topK > 0) keeps the logits >= the k-th largest (ties kept); top-p (topP < 1) then keeps a token when the weight of '
      + 'the kept tokens with a strictly larger logit is <= topP times the kept total (HF\'s shifted cumulative rule, ties kept '
      + 'together, the largest always kept); the token is the first v, in vocabulary order, whose cumulative kept weight exceeds '
      + 'u times the kept total (the last kept token if rounding leaves none). topK 1 is greedy. Sums are float64 on reference; '
      + 'f32 backends agree except where a draw or a threshold falls within rounding of a boundary.',
    inputs: [{ name: 'logits', kind: 'float' }, { name: 'u', kind: 'float' }],
    outputs: ['tokens'],
    infer: ([logits, u], attrs) => {
      sampleAttrs('sample_logits', attrs);
      if (logits.shape.length !== 2) throw new OpError('sample_logits', `input 'logits' must be rank 2 [R,V], got [${logits.shape}]`);
      const [R, V] = logits.shape;
      if (V === 0 && R > 0) throw new OpError('sample_logits', `input 'logits' needs at least one token per row, got [${logits.shape}]`);
      if (u.shape.length !== 1 || u.shape[0] !== R) throw new OpError('sample_logits', `input 'u' must be [${R}], got [${u.shape}]`);
      return [{ shape: [R], dtype: 'i32' }];
    },
    domain: [LOGITS, UNIFORMS],
    tolerance: 'exact',
    cases: [
      { name: 'regular', shapes: [[4, 33], [4]] },
      { name: 'temperature', shapes: [[6, 50], [6]], attrs: { temperature: 0.7 } },
      { name: 'odd, top-k', shapes: [[7, 1000], [7]], attrs: { topK: 50, temperature: 1.3 } },
      { name: 'top-p', shapes: [[5, 300], [5]], attrs: { topP: 0.8 } },
      { name: 'top-k then top-p', shapes: [[5, 301], [5]], attrs: { topK: 20, topP: 0.5, temperature: 0.9 } },
      { name: 'greedy', shapes: [[9, 77], [9]], attrs: { topK: 1 } },
      { name: 'ties, top-k', shapes: [[6, 40], [6]], attrs: { topK: 3 }, domains: [TIES, UNIFORMS] },
      { name: 'ties, top-p', shapes: [[6, 40], [6]], attrs: { topP: 0.3 }, domains: [TIES, UNIFORMS] },
      { name: 'wide vocabulary', shapes: [[2, 16384], [2]], attrs: { topP: 0.95 } },
      { name: 'size-1', shapes: [[1, 1], [1]] },
      { name: 'empty', shapes: [[0, 5], [0]] },
    ],
  },
]);
