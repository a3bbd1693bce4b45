// The sampler of the reference's `sample_IBQ` (spec/ar.md §5): classifier-free guidance on the
// logits with the conditional and null-class halves in one batch, temperature after CFG, top-k
// then top-p filtering (HF-style, at least one token kept), a multinomial draw, a KV cache for
// the whole sequence. Beyond the reference: LlamaGen's `cfg_interval`, a linear CFG schedule, and
// reproducibility by design: the draw of sample i of class c at step n uses a uniform from the
// counter-based Philox stream keyed by (seed, c, i, n), so a sample does not depend on the batch
// it is drawn in, the shard, or the backend's order of work.

import { philox4x32, splitWords, uniformOfWord } from '@ibq/kernels';
import { type Tensor, add, apply, cast, concat, dispose, noGrad, scale, slice, sub, tensor, tidy } from '@ibq/tensor';
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
  /** Generate only the first N tokens of each grid (default: all block_size). */
  tokens?: number;
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
 * One token per row of logits [R, V] from uniforms u [R]: the op table's `sample_logits`
 * (temperature, top-k then top-p, HF-style with at least one token kept, then the draw), on the
 * logits' device.
 */
export function sampleLogits(logits: Tensor, u: Tensor, o: FilterOptions): Tensor {
  return apply('sample_logits', [logits, u], { temperature: o.temperature, topK: o.topK, topP: o.topP })[0];
}

export interface SampleBatch {
  /** Class of each image of the batch. */
  classes: Int32Array;
  /** Each image's sample index within its class (the random stream is keyed by class and index). */
  indices: Int32Array;
}

/**
 * Generates block_size tokens (or `tokens`) for each image of the batch: [N, L] in raster order.
 * Everything stays on the model's device: guidance, filtering and the draw are ops, the drawn
 * tokens feed the next step as a device tensor, and the token grid is read back once at the end
 * (the uniforms go the other way, written per step). `onToken(n)` is told after each token.
 */
export async function sampleTokens(gpt: GPT, batch: SampleBatch, o: SamplerOptions, onToken?: (n: number) => void): Promise<Int32Array> {
  const N = batch.classes.length;
  const L = o.tokens ?? gpt.config.block_size, V = gpt.config.vocab_size;
  if (!(Number.isInteger(L) && L >= 1 && L <= gpt.config.block_size)) throw new Error(`sampleTokens: tokens ${L} outside [1, ${gpt.config.block_size}]`);
  const cfg = o.cfgScale > 1;
  const rows = cfg ? 2 * N : N;
  checkFits(gpt.config, gpt.ropeCos.backend, rows, gpt.weights, gpt.chunkBytes);
  const labels = new Int32Array(rows);
  labels.set(batch.classes);
  if (cfg) labels.fill(gpt.config.class_num, N);
  const fo: FilterOptions = { temperature: o.temperature, topK: o.topK, topP: o.topP };
  const labelT = tensor(labels, [rows], { dtype: 'i32' });
  const pre = gpt.prefill(labelT);
  labelT.dispose();
  const state = pre.state;
  let logits: Tensor | null = pre.logits;
  const columns: Tensor[] = [];
  try {
    for (let n = 0; n < L; n++) {
      const u = Float32Array.from({ length: N }, (_, r) => drawUniform(o.seed, batch.classes[r], batch.indices[r], n));
      const s = cfg ? cfgScaleAt(o, n, gpt.config.block_size) : 1;
      const lg: Tensor = logits;
      const { column, next } = noGrad(() => tidy(() => {
        // u + (c - u) * s, as the reference (constant scale: the same ops every step).
        const guided = cfg ? add(slice(lg, [N, 0], [N, V]), scale(sub(slice(lg, [0, 0], [N, V]), slice(lg, [N, 0], [N, V])), s)) : lg;
        const toks = sampleLogits(guided, tensor(u, [N]), fo);
        const col = cast(toks, 'f32').reshape([N, 1]);
        // The token, duplicated to both halves under CFG, is the next input.
        const nx = cfg ? cast(concat([col, col], 0), 'i32').reshape([rows]) : toks;
        return { column: col, next: nx };
      }));
      logits.dispose();
      logits = null;
      columns.push(column);
      onToken?.(n);
      if (n === L - 1) {
        next.dispose();
        break; // the last token is never fed
      }
      logits = gpt.decodeStep(state, next);
      next.dispose();
    }
    const grid = noGrad(() => tidy(() => cast(concat(columns, 1), 'i32')));
    const out = new Int32Array(await grid.data());
    grid.dispose();
    return out;
  } finally {
    dispose([logits, columns]);
    GPT.release(state);
  }
}
