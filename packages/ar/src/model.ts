// The class-conditional GPT of IBQ (llama.py `GPT`) with the reference's layers, parameter
// names and initialisation: token and class embeddings, adaLN blocks (RMSNorm, fused wqkv,
// interleaved 2-D RoPE whose class-token row is all zeros, causal attention, SwiGLU), the
// AdaLN before the head and the head. Training forward over whole sequences, and incremental
// decoding with a KV cache for the sampler.

import {
  Generator, type HostTensor, getBackend, toFloat32, type Tensor, add, apply, assign, concat, keep, mean, mul, nn, noGrad, permute, scale, silu, slice, tensor, tidy, zeros,
} from '@ibq/tensor';
import type { Backend } from '@ibq/kernels';
import { GiB, type GPTConfig, ffnHidden, gridSide, headDim, parameterCount, residentBytes, streamedParameterCount, validateConfig } from './config.js';
import { DEFAULT_CHUNK_BYTES, type HostMatrix, type WeightLayers, fillNormal, hostMatrices, residentLayers, streamedLayers } from './streamed.js';

const { Module, RMSNorm, ModuleList, SiLU, StateDictError } = nn;

/** Applies dropout when training and p > 0. */
function dropout(x: Tensor, p: number, train: boolean, gen: Generator): Tensor {
  return train && p > 0 ? gen.dropout(x, p) : x;
}

/** `nn.Sequential(nn.SiLU(), nn.Linear(...))`: its Linear is child `1`. */
class AdaLin extends ModuleList {
  readonly lin;
  constructor(inF: number, outF: number, layers: WeightLayers) {
    super([new SiLU()]);
    this.lin = layers.linear(inF, outF, true);
    this.push(this.lin);
  }
  /** Linear of an already SiLU-ed condition (SiLU(cond) is shared by every block and the head). */
  ofSilu(condSilu: Tensor): Tensor {
    return this.lin.forward(condSilu);
  }
}

export class LabelEmbedder extends Module {
  readonly embedding_table;
  constructor(readonly numClasses: number, dim: number) {
    super();
    // num_classes + 1 rows: the last is the "null" class of classifier-free guidance.
    this.embedding_table = this.module('embedding_table', residentLayers.embedding(numClasses + 1, dim));
  }
  /** labels i32 [B] (already label-dropped by the caller) -> [B, 1, C]. */
  forward(labels: Tensor): Tensor {
    const e = this.embedding_table.forward(labels);
    return e.reshape([labels.shape[0], 1, e.shape[e.rank - 1]]);
  }
}

export class Attention extends Module {
  readonly wqkv;
  readonly wo;
  constructor(readonly c: GPTConfig, layers: WeightLayers = residentLayers) {
    super();
    this.wqkv = this.module('wqkv', layers.linear(c.n_embd, 3 * c.n_embd, false));
    this.wo = this.module('wo', layers.linear(c.n_embd, c.n_embd, false));
  }

  /**
   * x [B, L, C]; cos/sin [L, D/2] (the table rows of these positions). With a cache, the new
   * keys and values are appended and the queries see every cached position (causal over the
   * cache: the queries are its last L positions).
   */
  forward(x: Tensor, cos: Tensor, sin: Tensor, cache: InstanceType<typeof nn.KVCache> | null): Tensor {
    const [B, L, C] = x.shape;
    const H = this.c.n_head, D = C / H;
    const qkv = this.wqkv.forward(x);
    const part = (i: number) => slice(qkv, [0, 0, i * C], [B, L, C]).reshape([B, L, H, D]);
    // RoPE works on [B, L, H, D]; attention on [B, H, L, D].
    const q = permute(nn.applyRope(part(0), cos, sin), [0, 2, 1, 3]);
    let k = permute(nn.applyRope(part(1), cos, sin), [0, 2, 1, 3]);
    let v = permute(part(2), [0, 2, 1, 3]);
    if (cache) [k, v] = cache.append(k, v);
    const o = nn.scaledDotProductAttention(q, k, v, { causal: true, scale: 1 / Math.sqrt(D) });
    return this.wo.forward(permute(o, [0, 2, 1, 3]).reshape([B, L, C]));
  }
}

export class FeedForward extends Module {
  readonly w1;
  readonly w3;
  readonly w2;
  constructor(c: GPTConfig, layers: WeightLayers = residentLayers) {
    super();
    const h = ffnHidden(c);
    this.w1 = this.module('w1', layers.linear(c.n_embd, h, false));
    this.w3 = this.module('w3', layers.linear(c.n_embd, h, false));
    this.w2 = this.module('w2', layers.linear(h, c.n_embd, false));
  }
  forward(x: Tensor): Tensor {
    return this.w2.forward(mul(silu(this.w1.forward(x)), this.w3.forward(x)));
  }
}

/** The six modulation vectors of a block, each [B, 1, C], in the reference's chunk order. */
export interface Modulation {
  gamma1: Tensor;
  gamma2: Tensor;
  scale1: Tensor;
  scale2: Tensor;
  shift1: Tensor;
  shift2: Tensor;
}

/** rmsnorm(x) * (1 + scale) + shift (the reference's `.mul(scale.add(1)).add_(shift)`). */
function modulate(normed: Tensor, scaleV: Tensor, shift: Tensor): Tensor {
  return add(mul(normed, scale(scaleV, 1, 1)), shift);
}

export class Block extends Module {
  readonly attention;
  readonly feed_forward;
  readonly attention_norm;
  readonly ffn_norm;
  readonly ada_lin;
  constructor(readonly c: GPTConfig, layers: WeightLayers = residentLayers) {
    super();
    this.attention = this.module('attention', new Attention(c, layers));
    this.feed_forward = this.module('feed_forward', new FeedForward(c, layers));
    this.attention_norm = this.module('attention_norm', new RMSNorm(c.n_embd, c.norm_eps));
    this.ffn_norm = this.module('ffn_norm', new RMSNorm(c.n_embd, c.norm_eps));
    this.ada_lin = this.module('ada_lin', new AdaLin(c.n_embd, 6 * c.n_embd, layers));
  }

  /** ada_lin(cond) viewed [B, 1, 6, C]: gamma1, gamma2, scale1, scale2, shift1, shift2. */
  modulation(condSilu: Tensor): Modulation {
    const m = this.ada_lin.ofSilu(condSilu);
    const B = m.shape[0], C = this.c.n_embd;
    const m2 = m.reshape([B, 6 * C]);
    const chunk = (i: number) => slice(m2, [0, i * C], [B, C]).reshape([B, 1, C]);
    return { gamma1: chunk(0), gamma2: chunk(1), scale1: chunk(2), scale2: chunk(3), shift1: chunk(4), shift2: chunk(5) };
  }

  forward(x: Tensor, mod: Modulation, cos: Tensor, sin: Tensor, cache: InstanceType<typeof nn.KVCache> | null, train: boolean, gen: Generator): Tensor {
    const a = this.attention.forward(modulate(this.attention_norm.forward(x), mod.scale1, mod.shift1), cos, sin, cache);
    const h = add(x, mul(dropout(a, this.c.resid_dropout_p, train, gen), mod.gamma1));
    const f = this.feed_forward.forward(modulate(this.ffn_norm.forward(h), mod.scale2, mod.shift2));
    return add(h, mul(dropout(f, this.c.ffn_dropout_p, train, gen), mod.gamma2));
  }
}

export class AdaLNBeforeHead extends Module {
  readonly rmsnorm;
  readonly ada_lin;
  constructor(readonly C: number, layers: WeightLayers = residentLayers) {
    super();
    // RMSNorm(C) with its default eps 1e-5, whatever the config's norm_eps (as the reference).
    this.rmsnorm = this.module('rmsnorm', new RMSNorm(C, 1e-5));
    this.ada_lin = this.module('ada_lin', new AdaLin(C, 2 * C, layers));
  }
  forward(x: Tensor, condSilu: Tensor): Tensor {
    const m = this.ada_lin.ofSilu(condSilu);
    const B = m.shape[0], C = this.C;
    const m2 = m.reshape([B, 2 * C]);
    const sc = slice(m2, [0, 0], [B, C]).reshape([B, 1, C]);
    const sh = slice(m2, [0, C], [B, C]).reshape([B, 1, C]);
    return modulate(this.rmsnorm.forward(x), sc, sh);
  }
}

export interface GPTOptions {
  /** 'reference' (default): the reference's initialisation; 'none': zeros, for weights about to be loaded. */
  init?: 'reference' | 'none';
  /** The generator of the initial weights (default: seed 0). */
  generator?: Generator;
  /** Overrides checkFits' choice of weight placement (default: by the backend's memory). */
  weights?: WeightPlacement;
  /** Bytes per streamed chunk (default DEFAULT_CHUNK_BYTES). */
  chunkBytes?: number;
}

export interface ForwardOptions {
  /** Dropouts on (default: the module's training flag). */
  train?: boolean;
  /** The stream of the dropout masks (default: the model's own, seed 0). */
  generator?: Generator;
}

/** Per-layer KV caches and the precomputed adaLN modulation of one sampling run. */
export interface DecodeState {
  rows: number;
  /** Positions already in the caches (0 before the prefill). */
  pos: number;
  caches: InstanceType<typeof nn.KVCache>[];
  condSilu: Tensor;
  mods: Modulation[];
}

/** A model or a sampling batch that does not fit the backend's memory. */
export class ArMemoryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ArMemoryError';
  }
}

const gib = (b: number) => `${(b / GiB).toFixed(2)} GiB`;

/** Where the large weight matrices live: in the backend's memory, or on the host, streamed per chunk (streamed.ts). */
export type WeightPlacement = 'resident' | 'streamed';

/** The cpu backend keeps float32 weights resident when they take at most this share of its memory (the rest: caches, activations). */
export const RESIDENT_WEIGHTS_SHARE = 0.7;

/** How a GPT uses memory on a backend, decided once per model by checkFits. */
export interface MemoryPlan {
  weights: WeightPlacement;
  /** Bytes in the backend's memory: resident weights (all, or the small ones plus one streamed chunk) and the KV caches. */
  backendBytes: number;
  /** Bytes of weights held in host memory (0 when resident). */
  hostBytes: number;
}

/**
 * The memory plan of a GPT on a backend, refusing before anything is allocated what cannot fit.
 * Policy: the cpu backend (one wasm32 memory, at most 4 GiB) keeps the float32 weights resident
 * when they take at most RESIDENT_WEIGHTS_SHARE of it (B, L) and streams the large matrices from
 * host memory otherwise (XL, XXL); other backends keep them resident. `force` overrides the
 * choice (tests, benchmarks). With `rows` sampling rows, their KV caches must fit too; on webgpu
 * one layer's cache must fit a storage binding.
 */
export function checkFits(c: GPTConfig, backend: Backend, rows = 0, force?: WeightPlacement, chunkBytes = DEFAULT_CHUNK_BYTES): MemoryPlan {
  const info = (backend.describe?.() ?? {}) as { memoryLimitBytes?: number; limits?: { maxStorageBufferBindingSize?: number } };
  const r = residentBytes(c, rows);
  const what = `${parameterCount(c).toLocaleString('en-US')} parameters`;
  const limit = backend.name === 'cpu' ? info.memoryLimitBytes : undefined;
  const weights = force ?? (limit !== undefined && r.weights > limit * RESIDENT_WEIGHTS_SHARE ? 'streamed' : 'resident');
  const hostBytes = weights === 'streamed' ? streamedParameterCount(c) * 4 : 0;
  // Streamed: the small weights, one chunk and its product in the backend.
  const weightBytes = weights === 'streamed' ? r.weights - hostBytes + 2 * chunkBytes : r.weights;
  const plan: MemoryPlan = { weights, backendBytes: weightBytes + r.kvCache, hostBytes };
  if (limit !== undefined) {
    if (weightBytes > limit * 0.95) {
      throw new ArMemoryError(`this GPT's float32 weights (${what}, ${gib(r.weights)}) do not fit the cpu backend's wasm memory, which wasm32 limits to ${gib(limit)}; let the model stream its weights from host memory (the default above ${gib(limit * RESIDENT_WEIGHTS_SHARE)}), or run it on --device webgpu`);
    }
    if (plan.backendBytes > limit * 0.95) {
      const held = weights === 'streamed' ? `the resident part of the streamed weights (${gib(weightBytes)})` : `weights (${gib(weightBytes)})`;
      const per = r.kvCache / Math.max(rows, 1);
      const most = Math.max(0, Math.floor((limit * 0.95 - weightBytes) / per));
      throw new ArMemoryError(`${held} and the KV caches of ${rows} rows (${gib(r.kvCache)}) do not fit the cpu backend's ${gib(limit)} wasm memory; use at most ${most} rows (batch ${Math.floor(most / 2)} with CFG)`);
    }
  }
  const bind = info.limits?.maxStorageBufferBindingSize;
  if (backend.name === 'webgpu' && bind !== undefined && r.kvTensor > bind) {
    const most = Math.floor(bind / (r.kvTensor / Math.max(rows, 1)));
    throw new ArMemoryError(`one layer's KV cache for ${rows} rows (${gib(r.kvTensor)}) exceeds this device's storage-binding limit (maxStorageBufferBindingSize ${gib(bind)}); use at most ${most} rows (batch ${Math.floor(most / 2)} with CFG)`);
  }
  return plan;
}

export class GPT extends Module {
  readonly tok_emb;
  readonly class_emb;
  readonly blocks;
  readonly head_nm;
  readonly head;
  readonly config: GPTConfig;
  /** Where the large matrices live (checkFits' plan for this model). */
  readonly weights: WeightPlacement;
  /** The large matrices held on the host when streamed, by state-dict name (empty when resident). */
  readonly hostWeights: Map<string, HostMatrix>;
  /** Bytes of weights per streamed chunk. */
  readonly chunkBytes: number;
  /** 2-D RoPE tables [1 + block_size, D/2]: row 0 (class token) all zeros. */
  readonly ropeCos: Tensor;
  readonly ropeSin: Tensor;
  private readonly dropGen = new Generator(0);

  constructor(config: GPTConfig, o: GPTOptions = {}) {
    super();
    this.config = validateConfig({ ...config });
    const c = this.config;
    this.chunkBytes = o.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    this.weights = checkFits(c, getBackend(), 0, o.weights, this.chunkBytes).weights;
    const layers = this.weights === 'streamed' ? streamedLayers(this.chunkBytes) : residentLayers;
    const build = () => {
      this.module('tok_emb', layers.embedding(c.vocab_size, c.n_embd));
      this.module('class_emb', new LabelEmbedder(c.class_num, c.n_embd));
      const blocks = new ModuleList<Block>();
      for (let i = 0; i < c.n_layer; i++) blocks.push(new Block(c, layers));
      this.module('blocks', blocks);
      this.module('head_nm', new AdaLNBeforeHead(c.n_embd, layers));
      this.module('head', layers.linear(c.n_embd, c.vocab_size, false));
    };
    nn.withoutRandomInit(build);
    this.hostWeights = hostMatrices(this);
    const kids = new Map(this.children());
    this.tok_emb = kids.get('tok_emb') as ReturnType<WeightLayers['embedding']>;
    this.class_emb = kids.get('class_emb') as LabelEmbedder;
    this.blocks = kids.get('blocks') as InstanceType<typeof ModuleList<Block>>;
    this.head_nm = kids.get('head_nm') as AdaLNBeforeHead;
    this.head = kids.get('head') as ReturnType<WeightLayers['linear']>;
    const t = nn.rope2dTables(gridSide(c), headDim(c), c.rope_base, c.cls_token_num);
    this.ropeCos = this.buffer('rope_cos', keep(tensor(t.cos, [t.rows, headDim(c) / 2])), false);
    this.ropeSin = this.buffer('rope_sin', keep(tensor(t.sin, [t.rows, headDim(c) / 2])), false);
    if ((o.init ?? 'reference') === 'reference') this.initialize(o.generator ?? new Generator(0));
  }

  /**
   * The reference's `initalize_weights`: every Linear N(0, 0.02) with zero bias, every Embedding
   * N(0, 0.02); each block's ada_lin rows [2C, 6C) x 0.5 and the gamma rows [0, 2C) x alng; the
   * head's ada_lin x 0.5; the head zero. RMSNorm weights stay 1. (Logits are exactly 0 at init.)
   */
  initialize(gen: Generator): void {
    const c = this.config, C = c.n_embd, std = c.initializer_range;
    /** The reference's rule for one weight: left alone, zero, or N(0, std) times per-row factors. */
    const rule = (name: string): 'keep' | 'zero' | Float32Array | number => {
      if (name.endsWith('norm.weight') || name.endsWith('rmsnorm.weight')) return 'keep';
      if (name.endsWith('.bias') || name === 'head.weight') return 'zero';
      if (/^blocks\.\d+\.ada_lin\.1\.weight$/.test(name)) return new Float32Array(6 * C).fill(0.5).fill(c.alng, 0, 2 * C);
      return name === 'head_nm.ada_lin.1.weight' ? 0.5 : 1;
    };
    noGrad(() => {
      for (const [name, p] of this.namedParameters()) {
        const r = rule(name);
        if (r === 'keep') continue;
        tidy(() => {
          if (r === 'zero') return assign(p, zeros(p.shape));
          const w = gen.normal(p.shape, 0, std);
          assign(p, typeof r === 'number' ? scale(w, r) : mul(w, tensor(r, [r.length, 1])));
        });
      }
    });
    // Host matrices: a cheap seeded stream instead of the backend's (see fillNormal).
    let k = 0;
    for (const [name, w] of this.hostWeights) {
      const r = rule(name);
      k++;
      if (r === 'keep') continue;
      if (r === 'zero') {
        w.host.fill(0);
        continue;
      }
      const d = w.host;
      fillNormal(d, gen.seed * 1000 + k, std);
      for (let i = 0; i < w.rows; i++) {
        const f = typeof r === 'number' ? r : r[i];
        if (f !== 1) for (let j = i * w.cols; j < (i + 1) * w.cols; j++) d[j] *= f;
      }
    }
  }

  /** SiLU of the class embedding: the condition every block's and the head's ada_lin take. */
  private condition(labels: Tensor): { cls: Tensor; condSilu: Tensor } {
    const cls = this.class_emb.forward(labels);
    return { cls, condSilu: silu(cls) };
  }

  /**
   * Hidden states after the head's AdaLN, [B, 1 + T, C], for image tokens i32 [B, T] (T <= block_size - 1;
   * the trainer passes z[:, :-1]) and labels i32 [B] (label dropout already applied by the caller).
   * Position 0 is the class token; position s >= 1 is image token s - 1.
   */
  features(tokens: Tensor, labels: Tensor, o: ForwardOptions = {}): Tensor {
    const train = o.train ?? this.training;
    if (train && this.weights === 'streamed') throw new Error('GPT.forward: streamed weights (checkFits) are for sampling; training needs the weights resident');
    const gen = o.generator ?? this.dropGen;
    const c = this.config;
    const [B, T] = tokens.shape;
    if (tokens.rank !== 2) throw new Error(`GPT.forward: tokens must be [B, T], got [${tokens.shape}]`);
    if (T + 1 > c.block_size + c.cls_token_num) throw new Error(`GPT.forward: ${T} tokens do not fit block_size ${c.block_size}`);
    if (labels.rank !== 1 || labels.shape[0] !== B) throw new Error(`GPT.forward: labels must be [${B}], got [${labels.shape}]`);
    const L = T + 1;
    const { cls, condSilu } = this.condition(labels);
    let h = T > 0 ? concat([cls, this.tok_emb.forward(tokens)], 1) : cls;
    h = dropout(h, c.token_drop, train, gen);
    const cos = slice(this.ropeCos, [0, 0], [L, -1]);
    const sin = slice(this.ropeSin, [0, 0], [L, -1]);
    for (const b of this.blocks.items) h = b.forward(h, b.modulation(condSilu), cos, sin, null, train, gen);
    return this.head_nm.forward(h, condSilu);
  }

  /** Logits [B, 1 + T, vocab] for every position (position s predicts image token s). */
  forward(tokens: Tensor, labels: Tensor, o: ForwardOptions = {}): Tensor {
    return tidy(() => this.head.forward(this.features(tokens, labels, o)));
  }

  /** Mean cross-entropy of logits [B, L, V] against targets i32 [B, L] (the reference's loss). */
  static loss(logits: Tensor, targets: Tensor): Tensor {
    const V = logits.shape[logits.rank - 1];
    return tidy(() => {
      const [loss, lse] = apply('cross_entropy', [logits.reshape([-1, V]), targets.reshape([-1])]);
      lse.dispose();
      return mean(loss);
    });
  }

  // -------------------------------------------------------------------------------------
  // Incremental decoding (sampling)

  /**
   * Starts a sampling run for `labels` i32 [R] (the conditional rows, then the null-class rows
   * under CFG): runs position 0 (the class embedding, zero rotary) and returns its logits [R, V]
   * with the state for decodeStep. The class condition of every block is computed once here.
   */
  prefill(labels: Tensor): { state: DecodeState; logits: Tensor } {
    const R = labels.shape[0];
    const caches = this.blocks.items.map(() => new nn.KVCache());
    const { state, logits } = noGrad(() => tidy(() => {
      const { cls, condSilu } = this.condition(labels);
      const mods = this.blocks.items.map((b) => b.modulation(condSilu));
      const st: DecodeState = { rows: R, pos: 0, caches, condSilu, mods };
      const lg = this.step(st, cls);
      return { state: st, logits: lg };
    }));
    keep(state.condSilu);
    for (const m of state.mods) for (const t of Object.values(m)) keep(t);
    return { state, logits };
  }

  /** Feeds image tokens i32 [R] at the next position; returns the logits [R, V] there. */
  decodeStep(state: DecodeState, tokens: Tensor): Tensor {
    if (tokens.size !== state.rows) throw new Error(`decodeStep: ${tokens.size} tokens for ${state.rows} rows`);
    if (state.pos >= this.config.block_size) throw new Error(`decodeStep: position ${state.pos} is past block_size ${this.config.block_size}`);
    return noGrad(() => tidy(() => this.step(state, this.tok_emb.forward(tokens.reshape([state.rows, 1])))));
  }

  private step(state: DecodeState, x: Tensor): Tensor {
    const p = state.pos;
    const cos = slice(this.ropeCos, [p, 0], [1, -1]);
    const sin = slice(this.ropeSin, [p, 0], [1, -1]);
    let h = x;
    this.blocks.items.forEach((b, i) => {
      h = b.forward(h, state.mods[i], cos, sin, state.caches[i], false, this.dropGen);
    });
    state.pos = p + 1;
    const logits = this.head.forward(this.head_nm.forward(h, state.condSilu));
    return logits.reshape([state.rows, this.config.vocab_size]);
  }

  /** Frees a decode state's caches and condition. */
  static release(state: DecodeState): void {
    for (const c of state.caches) c.reset();
    state.condSilu.dispose();
    for (const m of state.mods) for (const t of Object.values(m)) t.dispose();
  }

  // -------------------------------------------------------------------------------------
  // Weights

  /**
   * Loads a state dict under the official names, with or without the AR checkpoint's
   * `transformer.` prefix (other prefixes, e.g. `first_stage_model.`, are ignored when the
   * prefixed form is used). A shape mismatch names the key and both shapes. Streamed weights
   * stay on the host: a float32 entry becomes the model's matrix without a copy.
   */
  loadWeights(dict: Map<string, HostTensor>): void {
    const own = transformerState(dict);
    if (this.hostWeights.size === 0) {
      this.loadStateDict(own);
      return;
    }
    // Streamed: the large matrices go to host memory (float32 entries adopted without a copy),
    // the rest through loadStateDict; one error lists every problem of both parts.
    const rest = new Map(own);
    const missing: string[] = [], mismatched: string[] = [];
    for (const [k, w] of this.hostWeights) {
      const e = own.get(k);
      rest.delete(k);
      if (!e) missing.push(k);
      else if (e.shape.length !== 2 || e.shape[0] !== w.rows || e.shape[1] !== w.cols) mismatched.push(`${k}: checkpoint [${e.shape}] vs model [${w.shape}]`);
    }
    let restErr: InstanceType<typeof StateDictError> | null = null;
    try {
      this.loadStateDict(rest);
    } catch (e) {
      if (!(e instanceof StateDictError)) throw e;
      restErr = e;
    }
    if (restErr || missing.length || mismatched.length) {
      throw new StateDictError([...missing, ...(restErr?.missing ?? [])], restErr?.unexpected ?? [], [...mismatched, ...(restErr?.mismatched ?? [])]);
    }
    for (const [k, w] of this.hostWeights) w.adopt(toFloat32(own.get(k)!));
  }
}

/** The GPT's entries of a state dict: `transformer.*` with the prefix stripped, or the dict as is. */
export function transformerState<T>(dict: Map<string, T>): Map<string, T> {
  const prefixed = [...dict.keys()].some((k) => k.startsWith('transformer.'));
  if (!prefixed) return dict;
  const out = new Map<string, T>();
  for (const [k, v] of dict) if (k.startsWith('transformer.')) out.set(k.slice('transformer.'.length), v);
  return out;
}

/** Host-side label dropout as LabelEmbedder.token_drop: a label becomes `nullClass` when u < p. */
export function dropLabels(labels: Int32Array, p: number, nullClass: number, uniforms: ArrayLike<number>): Int32Array {
  const out = Int32Array.from(labels);
  for (let i = 0; i < out.length; i++) if (uniforms[i] < p) out[i] = nullClass;
  return out;
}
