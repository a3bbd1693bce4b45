// Layers with PyTorch's parameter names, shapes and default initialisation.

import { Tensor, apply, keep, noGrad, tidy } from '../engine.js';
import { add, cast, concat, conv2d, full, gelu, gatherRows, leakyRelu, matmul, ones, scale, silu, zeros } from '../ops.js';
import { Generator } from '../rng.js';
import { Module } from './module.js';

let defaultGenerator = new Generator(0);

/** Seeds the generator layers use for their initial weights. */
export function manualSeed(seed: number): void {
  defaultGenerator = new Generator(seed);
}

export function getDefaultGenerator(): Generator {
  return defaultGenerator;
}

let randomInit = true;

/**
 * Builds modules whose weights are about to be loaded: parameters start as zeros instead of
 * random draws (a 100M-parameter model's initialisation is wasted work before a load).
 */
export function withoutRandomInit<T>(build: () => T): T {
  const prev = randomInit;
  randomInit = false;
  try {
    return build();
  } finally {
    randomInit = prev;
  }
}

/** PyTorch's default for Linear and Conv: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)), the same bound for the bias. */
function defaultUniform(shape: number[], fanIn: number, gen: Generator): Tensor {
  if (!randomInit) return zeros(shape);
  const bound = fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0;
  return gen.uniform(shape, -bound, bound);
}

export interface InitOptions {
  generator?: Generator;
}

/** All ops run outside the tape: initial values are leaves. */
function init<T>(fn: () => T): T {
  return noGrad(() => keep(fn() as unknown as Tensor) as unknown as T);
}

export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, bias = true, o: InitOptions = {}) {
    super();
    const g = o.generator ?? defaultGenerator;
    this.weight = this.param('weight', init(() => defaultUniform([outFeatures, inFeatures], inFeatures, g)));
    this.bias = bias ? this.param('bias', init(() => defaultUniform([outFeatures], inFeatures, g))) : null;
  }
  /** y = x W^T + b over the last dimension. */
  forward(x: Tensor): Tensor {
    const lead = x.shape.slice(0, -1);
    const x2 = x.reshape([-1, this.inFeatures]);
    let y = matmul(x2, this.weight, false, true);
    if (this.bias) y = add(y, this.bias);
    return y.reshape([...lead, this.outFeatures]);
  }
}

export interface Conv2dConfig {
  stride?: number;
  /** Symmetric padding, or [top, bottom, left, right]. */
  padding?: number | [number, number, number, number];
  bias?: boolean;
}

export class Conv2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(readonly inChannels: number, readonly outChannels: number, readonly kernelSize: number, readonly config: Conv2dConfig = {}, o: InitOptions = {}) {
    super();
    const g = o.generator ?? defaultGenerator;
    const fanIn = inChannels * kernelSize * kernelSize;
    this.weight = this.param('weight', init(() => defaultUniform([outChannels, inChannels, kernelSize, kernelSize], fanIn, g)));
    this.bias = config.bias ?? true ? this.param('bias', init(() => defaultUniform([outChannels], fanIn, g))) : null;
  }
  forward(x: Tensor): Tensor {
    return conv2d(x, this.weight, this.bias, { stride: this.config.stride ?? 1, padding: this.config.padding ?? 0 });
  }
}

export class Embedding extends Module {
  readonly weight: Tensor;
  constructor(readonly numEmbeddings: number, readonly dim: number, o: InitOptions = {}) {
    super();
    const g = o.generator ?? defaultGenerator;
    this.weight = this.param('weight', init(() => (randomInit ? g.normal([numEmbeddings, dim]) : zeros([numEmbeddings, dim]))));
  }
  forward(ids: Tensor): Tensor {
    return gatherRows(this.weight, ids);
  }
}

/** Runs a norm op and frees its statistics outputs (the tape keeps what backward needs). */
function normOutput(outs: Tensor[]): Tensor {
  for (const t of outs.slice(1)) t.dispose();
  return outs[0];
}

export class GroupNorm extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(readonly numGroups: number, readonly numChannels: number, readonly eps = 1e-5) {
    super();
    if (numChannels % numGroups !== 0) throw new Error(`GroupNorm: ${numChannels} channels do not split into ${numGroups} groups`);
    this.weight = this.param('weight', init(() => ones([numChannels])));
    this.bias = this.param('bias', init(() => zeros([numChannels])));
  }
  forward(x: Tensor): Tensor {
    return normOutput(apply('group_norm', [x, this.weight, this.bias], { groups: this.numGroups, eps: this.eps }));
  }
  /**
   * silu(forward(x)) as one op (group_norm_silu: one pass each way, and only x is kept for the
   * backward, not the normalised h): the VQGAN blocks' nonlinearity(norm(x)).
   */
  forwardSilu(x: Tensor): Tensor {
    return normOutput(apply('group_norm_silu', [x, this.weight, this.bias], { groups: this.numGroups, eps: this.eps }));
  }
}

export class LayerNorm extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(readonly dim: number, readonly eps = 1e-5) {
    super();
    this.weight = this.param('weight', init(() => ones([dim])));
    this.bias = this.param('bias', init(() => zeros([dim])));
  }
  forward(x: Tensor): Tensor {
    return normOutput(apply('layer_norm', [x, this.weight, this.bias], { eps: this.eps }));
  }
}

export class RMSNorm extends Module {
  readonly weight: Tensor;
  constructor(readonly dim: number, readonly eps = 1e-5) {
    super();
    this.weight = this.param('weight', init(() => ones([dim])));
  }
  forward(x: Tensor): Tensor {
    return normOutput(apply('rms_norm', [x, this.weight], { eps: this.eps }));
  }
}

/** BatchNorm2d: batch statistics in training (running stats updated with momentum), running stats in eval. */
export class BatchNorm2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(readonly numFeatures: number, readonly eps = 1e-5, readonly momentum = 0.1) {
    super();
    this.weight = this.param('weight', init(() => ones([numFeatures])));
    this.bias = this.param('bias', init(() => zeros([numFeatures])));
    this.buffer('running_mean', init(() => zeros([numFeatures])));
    this.buffer('running_var', init(() => ones([numFeatures])));
    this.buffer('num_batches_tracked', init(() => full([], 0, { dtype: 'i32' })));
  }
  get runningMean(): Tensor {
    return this.getBuffer('running_mean');
  }
  get runningVar(): Tensor {
    return this.getBuffer('running_var');
  }
  forward(x: Tensor): Tensor {
    if (!this.training) {
      return apply('batch_norm_eval', [x, this.weight, this.bias, this.runningMean, this.runningVar], { eps: this.eps })[0];
    }
    const [y, mean, variance] = apply('batch_norm_train', [x, this.weight, this.bias], { eps: this.eps });
    const n = x.size / this.numFeatures;
    noGrad(() => {
      const m = this.momentum;
      const rm = keep(add(scale(this.runningMean, 1 - m), scale(mean, m)));
      // Running variance uses the unbiased estimate, as PyTorch does.
      const rv = keep(add(scale(this.runningVar, 1 - m), scale(variance, (m * n) / Math.max(n - 1, 1))));
      this.setBuffer('running_mean', rm);
      this.setBuffer('running_var', rv);
      // The i32 counter goes through f32 (exact below 2^24 steps): binary ops are float-only.
      const nb = this.getBuffer('num_batches_tracked');
      this.setBuffer('num_batches_tracked', keep(tidy(() => cast(add(cast(nb, 'f32'), 1), 'i32'))));
    });
    mean.dispose();
    variance.dispose();
    return y;
  }
}

export class Dropout extends Module {
  constructor(readonly p = 0.5, readonly generator: Generator = defaultGenerator) {
    super();
  }
  forward(x: Tensor): Tensor {
    return this.training && this.p > 0 ? this.generator.dropout(x, this.p) : x;
  }
}

export class SiLU extends Module {
  forward(x: Tensor): Tensor {
    return silu(x);
  }
}

export class GELU extends Module {
  forward(x: Tensor): Tensor {
    return gelu(x);
  }
}

export class LeakyReLU extends Module {
  constructor(readonly negativeSlope = 0.01) {
    super();
  }
  forward(x: Tensor): Tensor {
    return leakyRelu(x, this.negativeSlope);
  }
}

/** Children named 0, 1, 2... as torch.nn.ModuleList. */
export class ModuleList<M extends Module = Module> extends Module {
  readonly items: M[] = [];
  constructor(items: M[] = []) {
    super();
    items.forEach((m) => this.push(m));
  }
  push(m: M): void {
    this.module(String(this.items.length), m);
    this.items.push(m);
  }
  get length(): number {
    return this.items.length;
  }
  at(i: number): M {
    return this.items[i];
  }
}

// ---------------------------------------------------------------------------------------
// Attention

export interface AttentionOptions {
  causal?: boolean;
  /** Default 1/sqrt(head dim). */
  scale?: number;
}

/** softmax(q k^T * scale) v over [B, H, L, D] tensors; causal queries see keys up to their position. */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, o: AttentionOptions = {}): Tensor {
  const s = o.scale ?? 1 / Math.sqrt(q.shape[q.rank - 1]);
  return normOutput(apply('attention', [q, k, v], { causal: o.causal ?? false, scale: s }));
}

/** Keys and values of past positions for incremental decoding, [B, H, L, D] each. */
export class KVCache {
  k: Tensor | null = null;
  v: Tensor | null = null;
  get length(): number {
    return this.k ? this.k.shape[2] : 0;
  }
  /** Appends new positions and returns the whole cache. */
  append(k: Tensor, v: Tensor): [Tensor, Tensor] {
    const nk = keep(this.k ? concat([this.k, k], 2) : k.detach());
    const nv = keep(this.v ? concat([this.v, v], 2) : v.detach());
    this.k?.dispose();
    this.v?.dispose();
    this.k = nk;
    this.v = nv;
    return [nk, nv];
  }
  reset(): void {
    this.k?.dispose();
    this.v?.dispose();
    this.k = this.v = null;
  }
}

/** Rotary embedding on x [B, L, H, D] with cos/sin tables [L, D/2] (interleaved pairs). */
export function applyRope(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  return apply('rope', [x, cos, sin], { inverse: false })[0];
}

/**
 * The 2-D RoPE tables of LlamaGen/IBQ: `cls` leading rows of zeros (the class-token quirk),
 * then grid positions in raster order; pairs [0, D/4) rotate by the row, [D/4, D/2) by the column.
 */
export function rope2dTables(gridSize: number, headDim: number, base = 10000, cls = 1): { cos: number[]; sin: number[]; rows: number } {
  const half = headDim / 2;
  const quarter = half / 2;
  const rows = cls + gridSize * gridSize;
  const cos = new Array<number>(rows * half).fill(0);
  const sin = new Array<number>(rows * half).fill(0);
  for (let p = 0; p < gridSize * gridSize; p++) {
    const r = Math.floor(p / gridSize), c = p % gridSize;
    for (let j = 0; j < half; j++) {
      const f = Math.pow(base, -(2 * (j % quarter)) / half);
      const angle = (j < quarter ? r : c) * f;
      cos[(cls + p) * half + j] = Math.cos(angle);
      sin[(cls + p) * half + j] = Math.sin(angle);
    }
  }
  return { cos, sin, rows };
}

