// The sampler of the reference's `sample_IBQ` (spec/ar.md §5): classifier-free guidance on the
// logits with the conditional and null-class halves in one batch, temperature after CFG, top-k
// then top-p filtering (HF-style, at least one token kept), a multinomial draw, a KV cache for
// the whole sequence. Beyond the reference: LlamaGen's `cfg_interval`, a linear CFG schedule, and
// reproducibility by design: the draw of sample i of class c at step n uses a uniform from the
// counter-based Philox stream keyed by (seed, c, i, n), so a sample does not depend on the batch
// it is drawn in, the shard, or the backend's order of work.

import { philox4x32, splitWords, uniformOfWord } from '@ibq/kernels';
import { type Tensor, add, dispose, noGrad, scale, slice, sub, tensor, tidy } from '@ibq/tensor';
import { GPT, checkFits } from './model.js';

export interface SamplerOptions {
  /** Guidance scale; > 1 turns CFG on (rows doubled with the null class). */
  cfgScale: number;
  /** LlamaGen's cfg_interval: CFG only for the first N tokens (the conditional logits after). -1: every token. */
  cfgInterval?: number;
  /** 'constant' (the reference) or 'linear': scale 1 + (cfg - 1) * n / (L - 1) at token n. */
  cfgSchedule?: 'constant' | 'linear';
  temperature: number;
  /** 0: off; 1: greedy. */
  topK: number;
  /** 1: off. */
  topP: number;
  seed: number;
}

/** The guidance scale used for token n of L. */
export function cfgScaleAt(o: SamplerOptions, n: number, L: number): number {
  if (!(o.cfgScale > 1)) return 1;
  const interval = o.cfgInterval ?? -1;
  if (interval >= 0 && n >= interval) return 1;
  if ((o.cfgSchedule ?? 'constant') === 'linear') return 1 + (o.cfgScale - 1) * (L > 1 ? n / (L - 1) : 1);
  return o.cfgScale;
}

/** Stream words of the counter (token n, sample i, class c, tag) under the seed's key: word 0 is the draw. */
const DRAW_TAG = 0x53414d50; // "SAMP"

/** The uniform in (0, 1) that draws token n of sample i of class c under `seed`. */
export function drawUniform(seed: number, cls: number, index: number, n: number): number {
  const key = splitWords(seed);
  return uniformOfWord(philox4x32([n >>> 0, index >>> 0, cls >>> 0, DRAW_TAG], key)[0]);
}

export interface FilterOptions {
  temperature: number;
  topK: number;
  topP: number;
}

/**
 * One row's token from its logits and a uniform u: x = logits / temperature; top-k keeps the
 * values >= the k-th largest (ties at the threshold kept, as `logits < topk[-1]`); top-p keeps a
 * token when the probability mass of the tokens strictly above it is <= top_p (HF's shifted
 * cumulative rule with ties kept together; the largest always stays); then the first index j
 * whose cumulative weight exp(x - max) over the kept tokens, in vocabulary order, exceeds u times
 * their sum. Float64 throughout.
 */
export function sampleRow(logits: ArrayLike<number>, u: number, o: FilterOptions, from = 0, V = logits.length - from): number {
  const x = new Float64Array(V);
  let m = -Infinity;
  for (let j = 0; j < V; j++) {
    x[j] = logits[from + j] / o.temperature;
    if (x[j] > m) m = x[j];
  }
  if (m === -Infinity || Number.isNaN(m)) throw new Error(`sampler: a row of logits has no finite maximum (${m})`);
  let threshold = -Infinity;
  if (o.topK > 0 && o.topK < V) {
    const sorted = Float64Array.from(x).sort().reverse();
    threshold = sorted[Math.max(o.topK, 1) - 1];
  }
  if (o.topP < 1) {
    // Distinct kept values in descending order with their summed mass.
    const kept = Array.from(x).filter((v) => v >= threshold).sort((a, b) => b - a);
    let total = 0;
    for (const v of kept) total += Math.exp(v - m);
    let above = 0;
    let i = 0;
    while (i < kept.length) {
      const v = kept[i];
      let mass = 0;
      while (i < kept.length && kept[i] === v) mass += Math.exp(kept[i++] - m);
      if (above / total > o.topP) break;
      threshold = v;
      above += mass;
    }
  }
  let s = 0;
  for (let j = 0; j < V; j++) if (x[j] >= threshold) s += Math.exp(x[j] - m);
  const target = u * s;
  let c = 0, last = -1;
  for (let j = 0; j < V; j++) {
    if (x[j] < threshold) continue;
    c += Math.exp(x[j] - m);
    last = j;
    if (c > target) return j;
  }
  return last;
}

export interface SampleBatch {
  /** Class of each image of the batch. */
  classes: Int32Array;
  /** Each image's sample index within its class (the random stream is keyed by class and index). */
  indices: Int32Array;
}

/**
 * Generates block_size tokens for each image of the batch: [N, block_size] in raster order.
 * `onToken(n)` is told after each token (progress).
 */
export async function sampleTokens(gpt: GPT, batch: SampleBatch, o: SamplerOptions, onToken?: (n: number) => void): Promise<Int32Array> {
  const N = batch.classes.length;
  const L = gpt.config.block_size, V = gpt.config.vocab_size;
  const cfg = o.cfgScale > 1;
  const rows = cfg ? 2 * N : N;
  checkFits(gpt.config, gpt.tok_emb.weight.backend, rows);
  const labels = new Int32Array(rows);
  labels.set(batch.classes);
  if (cfg) labels.fill(gpt.config.class_num, N);
  const out = new Int32Array(N * L);
  const labelT = tensor(labels, [rows], { dtype: 'i32' });
  const pre = gpt.prefill(labelT);
  const state = pre.state;
  let logits = pre.logits;
  labelT.dispose();
  const fo: FilterOptions = { temperature: o.temperature, topK: o.topK, topP: o.topP };
  try {
    for (let n = 0; n < L; n++) {
      const s = cfg ? cfgScaleAt(o, n, L) : 1;
      // u + (c - u) * s, on the device, as the reference (constant scale: the same ops every step).
      const guided = cfg ? noGrad(() => tidy(() => {
        const c = slice(logits, [0, 0], [N, V]);
        const un = slice(logits, [N, 0], [N, V]);
        return add(un, scale(sub(c, un), s));
      })) : logits;
      const host = await guided.data();
      if (guided !== logits) guided.dispose();
      logits.dispose();
      const toks = new Int32Array(rows);
      for (let r = 0; r < N; r++) {
        const t = sampleRow(host, drawUniform(o.seed, batch.classes[r], batch.indices[r], n), fo, r * V, V);
        out[r * L + n] = t;
        toks[r] = t;
        if (cfg) toks[N + r] = t;
      }
      onToken?.(n);
      if (n === L - 1) break; // the last token is never fed
      const tt = tensor(toks, [rows], { dtype: 'i32' });
      logits = gpt.decodeStep(state, tt);
      tt.dispose();
    }
  } finally {
    dispose([logits]);
    GPT.release(state);
  }
  return out;
}
