// The GPT's configuration under the reference's own keyword names (llama.py `GPT.__init__`),
// the built-in presets (B/L/XL/XXL of spec/ar.md with their published sampling settings, plus
// small ones for tests, the demo and the benchmark), and the reader of the official AR YAML
// (configs/IBQ/*/imagenet_conditional_llama_*.yaml), which loads unchanged.

import { parse } from 'yaml';

/** The reference GPT's constructor arguments (snake_case, as in the YAML's transformer_config.params). */
export interface GPTConfig {
  vocab_size: number;
  /** Image tokens per sample (a square grid: 256 = 16 x 16). */
  block_size: number;
  n_layer: number;
  n_head: number;
  n_embd: number;
  /** Must equal n_embd (the condition is the class embedding). */
  cond_dim: number;
  class_num: number;
  cls_token_num: number;
  rope_base: number;
  /** eps of the blocks' RMSNorms; the head's AdaLN RMSNorm always uses 1e-5 (the reference's default). */
  norm_eps: number;
  multiple_of: number;
  ffn_dim_multiplier: number | null;
  resid_dropout_p: number;
  ffn_dropout_p: number;
  attn_dropout_p: number;
  /** Element-wise dropout on the embedded sequence (despite its name). */
  token_drop: number;
  drop_path_rate: number;
  /** Initial scale of the adaLN gate rows. */
  alng: number;
  initializer_range: number;
}

/** The sampling settings the reference's scripts publish for a preset (spec/ar.md table). */
export interface SamplingSettings {
  temperature: number;
  cfg_scale: number;
  top_k: number;
  top_p: number;
}

/** Training settings of the official YAML (model.init_args, trainer, data), for the AR trainer. */
export interface ArTrainSettings {
  learning_rate: number;
  weight_decay: number;
  /** Warm-up epochs, initial LR ratio, final LR ratio, final weight decay (0: constant). */
  wp: number;
  wp0: number;
  wpe: number;
  twde: number;
  max_epochs: number | null;
  /** Per device. */
  batch_size: number;
  precision: string | null;
  gradient_clip_val: number | null;
}

export interface ArConfig {
  gpt: GPTConfig;
  train: ArTrainSettings;
  /** The published sampling settings when the shape is one of the official presets, else null. */
  sampling: SamplingSettings | null;
  /** `first_stage_config.params` as written (the tokenizer, in the tokenizer config's schema). */
  firstStage: Record<string, unknown> | null;
}

export class ArConfigError extends Error {
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'ArConfigError';
  }
}

/** The label-dropout probability of LabelEmbedder: its default 0.1, never taken from the config. */
export const LABEL_DROP_PROB = 0.1;

const DEFAULTS: GPTConfig = {
  vocab_size: 16384,
  block_size: 256,
  n_layer: 12,
  n_head: 8,
  n_embd: 256,
  cond_dim: 256,
  class_num: 1000,
  cls_token_num: 1,
  rope_base: 10000,
  norm_eps: 1e-5,
  multiple_of: 256,
  ffn_dim_multiplier: null,
  resid_dropout_p: 0,
  ffn_dropout_p: 0.1,
  attn_dropout_p: 0,
  token_drop: 0.1,
  drop_path_rate: 0,
  alng: 1e-3,
  initializer_range: 0.02,
};

/** FFN hidden width: h = 4C; h = int(2h/3); times ffn_dim_multiplier; rounded up to multiple_of. */
export function ffnHidden(c: GPTConfig): number {
  let h = Math.trunc((2 * 4 * c.n_embd) / 3);
  if (c.ffn_dim_multiplier !== null) h = Math.trunc(c.ffn_dim_multiplier * h);
  return h % c.multiple_of === 0 ? h : h + c.multiple_of - (h % c.multiple_of);
}

export const headDim = (c: GPTConfig) => c.n_embd / c.n_head;
export const gridSide = (c: GPTConfig) => Math.round(Math.sqrt(c.block_size));

/** Parameter count from the shapes (spec/ar.md: 342,994,944 for B). */
export function parameterCount(c: GPTConfig): number {
  const C = c.n_embd, H = ffnHidden(c);
  const block = 3 * C * C + C * C + 3 * C * H + 2 * C + 6 * C * C + 6 * C;
  return c.vocab_size * C + (c.class_num + 1) * C + c.n_layer * block + C + 2 * C * C + 2 * C + c.vocab_size * C;
}

/** Parameters in the large matrices a streamed GPT keeps on the host: tok_emb, head, and every wqkv, wo, w1, w2, w3 and ada_lin weight. */
export function streamedParameterCount(c: GPTConfig): number {
  const C = c.n_embd, H = ffnHidden(c);
  return 2 * c.vocab_size * C + c.n_layer * (3 * C * C + C * C + 3 * C * H + 6 * C * C) + 2 * C * C;
}

/** Throws unless the config describes a model this package builds exactly as the reference does. */
export function validateConfig(c: GPTConfig, file = '<config>'): GPTConfig {
  const err = (m: string) => new ArConfigError(file, m);
  for (const k of ['vocab_size', 'block_size', 'n_layer', 'n_head', 'n_embd', 'class_num', 'multiple_of'] as const) {
    if (!Number.isInteger(c[k]) || c[k] <= 0) throw err(`'${k}' must be a positive integer, got ${c[k]}`);
  }
  if (c.n_embd % c.n_head !== 0) throw err(`n_embd ${c.n_embd} is not divisible by n_head ${c.n_head}`);
  if (headDim(c) % 4 !== 0) throw err(`head dim ${headDim(c)} must be a multiple of 4 (2-D RoPE rotates pairs, half by row and half by column)`);
  if (gridSide(c) ** 2 !== c.block_size) throw err(`block_size ${c.block_size} is not a square grid`);
  if (c.cond_dim !== c.n_embd) throw err(`cond_dim ${c.cond_dim} must equal n_embd ${c.n_embd} (the condition is the class embedding)`);
  if (c.cls_token_num !== 1) throw err(`cls_token_num ${c.cls_token_num} is not supported (the reference uses 1)`);
  if (c.drop_path_rate !== 0) throw err(`drop_path_rate ${c.drop_path_rate} is not supported (the reference configs use 0)`);
  for (const k of ['resid_dropout_p', 'ffn_dropout_p', 'token_drop'] as const) {
    if (!(c[k] >= 0 && c[k] < 1)) throw err(`'${k}' must be in [0, 1), got ${c[k]}`);
  }
  if (c.attn_dropout_p !== 0) throw err(`attn_dropout_p ${c.attn_dropout_p} is not supported (the reference uses 0)`);
  return c;
}

export function makeConfig(over: Partial<GPTConfig>): GPTConfig {
  const c = { ...DEFAULTS, ...over };
  if (over.cond_dim === undefined) c.cond_dim = c.n_embd;
  return validateConfig(c);
}

/** The official shapes with IBQ's dropouts (spec/ar.md §1). */
function official(n_layer: number, n_embd: number, alng: number): GPTConfig {
  return makeConfig({
    n_layer, n_head: n_embd / 64, n_embd, alng, resid_dropout_p: 0.1, ffn_dropout_p: 0.1, token_drop: 0.1,
  });
}

export interface Preset {
  config: GPTConfig;
  sampling: SamplingSettings;
  /** What it is for. */
  note: string;
}

const published = (temperature: number, cfg_scale: number): SamplingSettings => ({ temperature, cfg_scale, top_k: 0, top_p: 1 });

/** Built-in configurations. B..XXL are the paper's (with their published sampling settings). */
export const presets: Record<string, Preset> = {
  B: { config: official(16, 1024, 1e-3), sampling: published(1.1, 2.25), note: 'IBQ AR-B, 342M (spec/ar.md)' },
  L: { config: official(20, 1280, 1e-3), sampling: published(1.0, 2.0), note: 'IBQ AR-L, 649M' },
  XL: { config: official(24, 1536, 1e-4), sampling: published(1.15, 2.35), note: 'IBQ AR-XL, 1.1B' },
  XXL: { config: official(30, 1920, 1e-5), sampling: published(1.2, 2.85), note: 'IBQ AR-XXL, 2.1B' },
  /** For tests: 4x4 tokens, 64 codes, 2 layers of width 64. */
  tiny: {
    config: makeConfig({ vocab_size: 64, block_size: 16, n_layer: 2, n_head: 2, n_embd: 64, class_num: 10, multiple_of: 32 }),
    sampling: published(1.0, 2.0),
    note: 'tests: 4x4 tokens, 64 codes',
  },
  /** For the demo: the demo tokenizer's 8x8 grids of 1024 codes, Fashion-MNIST's 10 classes. */
  demo: {
    config: makeConfig({ vocab_size: 1024, block_size: 64, n_layer: 4, n_head: 4, n_embd: 256, class_num: 10, resid_dropout_p: 0.1, ffn_dropout_p: 0.1 }),
    sampling: published(1.0, 2.0),
    note: 'demo: 8x8 tokens, 1024 codes, 10 classes',
  },
  /** The throughput benchmark: 6 layers, 8 heads, width 512, 1024 codes, 64 tokens, 10 classes. */
  bench: {
    config: makeConfig({ vocab_size: 1024, block_size: 64, n_layer: 6, n_head: 8, n_embd: 512, class_num: 10 }),
    sampling: published(1.0, 2.0),
    note: 'benchmark: 6 layers, 8 heads, width 512',
  },
};

/** The published sampling settings of an official preset with this shape, else null. */
export function publishedSampling(c: GPTConfig): SamplingSettings | null {
  for (const name of ['B', 'L', 'XL', 'XXL']) {
    const p = presets[name];
    if (p.config.n_layer === c.n_layer && p.config.n_embd === c.n_embd && p.config.vocab_size === c.vocab_size && p.config.block_size === c.block_size) {
      return { ...p.sampling };
    }
  }
  return null;
}

// ---------------------------------------------------------------------------------------
// The official YAML

type Obj = Record<string, unknown>;

function num(v: unknown, key: string, file: string, dflt?: number | null): number | null {
  if (v === undefined || v === null) {
    if (dflt !== undefined) return dflt;
    throw new ArConfigError(file, `missing '${key}'`);
  }
  // YAML 1.2 reads `1e-3` as a string; the reference's files write numbers that way.
  const n = typeof v === 'string' ? Number(v) : v;
  if (typeof n !== 'number' || Number.isNaN(n)) throw new ArConfigError(file, `'${key}' must be a number, got ${JSON.stringify(v)}`);
  return n;
}

const req = (v: unknown, key: string, file: string, dflt?: number) => num(v, key, file, dflt) as number;

/** Reads an AR config in the reference's schema (`model.init_args.transformer_config.params`...). */
export function loadArConfig(yamlText: string, file = '<config>'): ArConfig {
  let doc: unknown;
  try {
    doc = parse(yamlText);
  } catch (e) {
    throw new ArConfigError(file, `not valid YAML: ${(e as Error).message}`);
  }
  const args = ((doc as Obj | null)?.model as Obj | undefined)?.init_args as Obj | undefined;
  if (!args || typeof args !== 'object') throw new ArConfigError(file, "missing 'model.init_args'");
  const tc = args.transformer_config as Obj | undefined;
  const p = tc?.params as Obj | undefined;
  if (!p || typeof p !== 'object') throw new ArConfigError(file, "missing 'model.init_args.transformer_config.params' (not an AR config?)");
  const k = (n: string) => `model.init_args.transformer_config.params.${n}`;
  for (const [key, bad] of [['shared_aln', true], ['use_pretrained_codebook', true]] as const) {
    if (p[key] === bad) throw new ArConfigError(file, `'${k(key)}: ${bad}' is not supported (the IBQ configs use false)`);
  }
  if (p.n_kv_head !== undefined && p.n_kv_head !== null && p.n_kv_head !== p.n_head) {
    throw new ArConfigError(file, `'${k('n_kv_head')}' (grouped-query attention) is not supported; the IBQ configs leave it unset`);
  }
  const g = (n: keyof GPTConfig) => req(p[n], k(n), file, DEFAULTS[n] as number);
  const n_embd = g('n_embd');
  const gpt: GPTConfig = {
    vocab_size: req(p.vocab_size, k('vocab_size'), file),
    block_size: req(p.block_size, k('block_size'), file),
    n_layer: g('n_layer'),
    n_head: g('n_head'),
    n_embd,
    cond_dim: req(p.cond_dim, k('cond_dim'), file, DEFAULTS.cond_dim),
    class_num: g('class_num'),
    cls_token_num: g('cls_token_num'),
    rope_base: g('rope_base'),
    norm_eps: g('norm_eps'),
    multiple_of: g('multiple_of'),
    ffn_dim_multiplier: num(p.ffn_dim_multiplier, k('ffn_dim_multiplier'), file, null),
    resid_dropout_p: g('resid_dropout_p'),
    ffn_dropout_p: g('ffn_dropout_p'),
    attn_dropout_p: g('attn_dropout_p'),
    token_drop: g('token_drop'),
    drop_path_rate: g('drop_path_rate'),
    alng: g('alng'),
    // The reference's keyword is misspelt `initalizer_range`.
    initializer_range: req(p.initalizer_range ?? p.initializer_range, k('initalizer_range'), file, 0.02),
  };
  validateConfig(gpt, file);
  const m = (n: string) => `model.init_args.${n}`;
  const trainer = (doc as Obj).trainer as Obj | undefined;
  const data = ((doc as Obj).data as Obj | undefined)?.init_args as Obj | undefined;
  const train: ArTrainSettings = {
    learning_rate: req(args.learning_rate, m('learning_rate'), file, 3e-4),
    weight_decay: req(args.weight_decay, m('weight_decay'), file, 0.05),
    wp: req(args.wp, m('wp'), file, 0),
    wp0: req(args.wp0, m('wp0'), file, 0.005),
    wpe: req(args.wpe, m('wpe'), file, 0.01),
    twde: req(args.twde, m('twde'), file, 0),
    max_epochs: num(trainer?.max_epochs, 'trainer.max_epochs', file, null),
    batch_size: req(data?.batch_size, 'data.init_args.batch_size', file, 1),
    precision: trainer?.precision === undefined || trainer?.precision === null ? null : String(trainer.precision),
    gradient_clip_val: num(trainer?.gradient_clip_val, 'trainer.gradient_clip_val', file, null),
  };
  const fs = (args.first_stage_config as Obj | undefined)?.params;
  return { gpt, train, sampling: publishedSampling(gpt), firstStage: fs && typeof fs === 'object' ? (fs as Obj) : null };
}

// ---------------------------------------------------------------------------------------
// Memory

export interface ResidentBytes {
  /** float32 weights. */
  weights: number;
  /** Keys and values of every layer for `rows` sequences of 1 + block_size positions (float32). */
  kvCache: number;
  /** The largest single cache tensor (keys or values of one layer): what one storage binding must hold. */
  kvTensor: number;
}

/** Resident bytes of a sampling run with `rows` rows (2 x batch with CFG). */
export function residentBytes(c: GPTConfig, rows: number): ResidentBytes {
  const kvTensor = rows * (1 + c.block_size) * c.n_embd * 4;
  return { weights: parameterCount(c) * 4, kvCache: 2 * c.n_layer * kvTensor, kvTensor };
}

export const GiB = 2 ** 30;
