// AR training as the reference's Net2NetTransformer (spec: ar.md §4): input z[:, :-1] and the
// label (dropped to the null class with probability 0.1), target all of z, mean cross-entropy;
// AdamW (0.9, 0.95) with the per-step warm-up / plateau / linear-decay LR and the cosine
// weight decay written into every parameter group (the reference's quirk: its "no decay"
// group is decayed too), global-norm clipping, gradient accumulation, optional EMA (LlamaGen's
// --ema). The cross-entropy is chunked over rows with the backward run per chunk, so the
// [rows x vocab] float32 logits never exist whole. Checkpoints hold everything a resumed run
// needs to continue the same loss curve.
//
// Data-parallel (`dataParallel`, an MPI launch): each rank steps on its slice of the global
// batch; the gradients are averaged over the ranks before clipping, so clipping sees the global
// gradient and every rank takes the same AdamW step (EMA included). Label dropout draws by the
// row's place in the global batch, so 2 ranks x B drop the same labels as 1 process x 2B; the
// dropout masks come from one stream per rank, seeded alike (as the reference's seed_everything).

import {
  Adam, EMA, Generator, GradScaler, type HostTensor, type Tensor, add, apply, autocast, backward, clipGradNorm, dispose, full, keep, noGrad,
  readSafetensors, setBackend, slice, sum, tensor, tidy, toFloat32, warmupPlateauLinear, writeSafetensors,
} from '@ibq/tensor';
import { type Backend, supportsF16 } from '@ibq/kernels';
import { uniformAt } from '@ibq/data';
import type { DataParallel } from '@ibq/mpi';
import { type ArTrainSettings, type GPTConfig, LABEL_DROP_PROB } from './config.js';
import { GPT, dropLabels } from './model.js';

/**
 * The recipe's numbers (official YAML: model.init_args and trainer): peak LR (3e-4), start
 * weight decay (0.05), warm-up epochs, warm-up start ratio, final LR ratio, final weight decay
 * (0: constant), global-norm clipping (1.0; 0 or null: none).
 */
export type ArRecipe = Pick<ArTrainSettings, 'learning_rate' | 'weight_decay' | 'wp' | 'wp0' | 'wpe' | 'twde' | 'gradient_clip_val'>;

export type ArPrecision = '32' | '16-mixed';

export interface ArTrainerOptions {
  config: GPTConfig;
  recipe: ArRecipe;
  backend: Backend;
  /** Optimizer steps per epoch (the schedule's I) and in all (T = epochs x I). */
  stepsPerEpoch: number;
  totalSteps: number;
  seed?: number;
  /** Micro-batches per optimizer step. */
  accumulate?: number;
  /** EMA decay of the weights (LlamaGen's --ema: 0.9999); null: none. */
  ema?: number | null;
  /** Non-finite losses in a row before the run stops (default 5). */
  maxNonFinite?: number;
  precision?: ArPrecision;
  /** Rows (batch x position) per cross-entropy chunk; default: 64 MiB of float32 logits. */
  ceChunkRows?: number;
  /** Ranks of a data-parallel run (MPI); null or absent trains in this process alone. */
  dataParallel?: DataParallel | null;
}

/** One micro-batch: token sequences [B, L] (L = block_size) and labels [B]. */
export interface TokenMicroBatch {
  tokens: Int32Array;
  labels: Int32Array;
  size: number;
}

export interface ArStepLog {
  step: number;
  epoch: number;
  skipped: boolean;
  loss: number;
  lr: number;
  weight_decay: number;
  /** Global gradient norm before clipping (NaN when the step was skipped). */
  grad_norm: number;
  loss_scale: number;
  /** 16-mixed: the scaler skipped this update (an f16 gradient overflowed). */
  overflowed: boolean;
}

export class NonFiniteArLossError extends Error {
  constructor(readonly count: number, readonly step: number) {
    super(`${count} non-finite losses in a row (last at step ${step}): stopping; the last checkpoint is intact`);
    this.name = 'NonFiniteArLossError';
  }
}

export const AR_STATE_FORMAT = 'ibq-ar-train-state';

/** The cosine weight decay of the reference: wd_end + (wd - wd_end)(0.5 + 0.5 cos(pi it/(T-1))), wd_end = twde or wd. */
export function weightDecayAt(r: ArRecipe, it: number, totalSteps: number): number {
  const end = r.twde || r.weight_decay;
  const v = it / Math.max(1, totalSteps - 1);
  return end + (r.weight_decay - end) * (0.5 + 0.5 * Math.cos(Math.PI * v));
}

export function lrAt(r: ArRecipe, it: number, stepsPerEpoch: number, totalSteps: number): number {
  return warmupPlateauLinear(
    { peak: r.learning_rate, totalSteps, warmupSteps: Math.round(r.wp * stepsPerEpoch), warmupStart: r.wp0, end: r.wpe },
    it,
  );
}

export class ArTrainer {
  readonly config: GPTConfig;
  readonly recipe: ArRecipe;
  readonly backend: Backend;
  readonly model: GPT;
  readonly opt: Adam;
  readonly ema: EMA | null;
  readonly generator: Generator;
  readonly scaler: GradScaler | null;
  readonly precision: ArPrecision;
  readonly accumulate: number;
  readonly stepsPerEpoch: number;
  readonly totalSteps: number;
  readonly maxNonFinite: number;
  readonly seed: number;
  readonly ceChunkRows: number;
  readonly dp: DataParallel | null;
  /** Optimizer steps taken (the reference's global_step). */
  step = 0;
  nonFiniteInRow = 0;

  constructor(o: ArTrainerOptions) {
    this.config = o.config;
    this.recipe = o.recipe;
    this.backend = o.backend;
    setBackend(o.backend);
    this.seed = o.seed ?? 0;
    this.accumulate = o.accumulate ?? 1;
    this.stepsPerEpoch = Math.max(1, o.stepsPerEpoch);
    this.totalSteps = Math.max(1, o.totalSteps);
    this.maxNonFinite = o.maxNonFinite ?? 5;
    this.precision = o.precision ?? '32';
    this.dp = o.dataParallel ?? null;
    if (this.precision === '16-mixed') {
      const ok = supportsF16(o.backend);
      if (ok !== true) throw new Error(`precision 16-mixed: backend '${o.backend.name}' cannot: ${ok}`);
    }
    this.scaler = this.precision === '16-mixed' ? new GradScaler() : null;
    this.ceChunkRows = o.ceChunkRows ?? Math.max(1, Math.floor((1 << 24) / o.config.vocab_size));
    // Separate streams: initial weights, then the dropout masks of training. Training needs
    // every weight on the backend: what does not fit is refused (ArMemoryError), never streamed.
    this.model = new GPT(o.config, { generator: new Generator(this.seed), weights: 'resident' });
    this.model.train();
    this.generator = new Generator(this.seed + 1);
    // Two groups as configure_optimizers builds them (ndim >= 2: weight_decay, else 0), but the
    // per-step annealing writes the same decay into both before the first step, so every
    // parameter is decayed: one group with no exclusions is the same optimizer.
    this.opt = new Adam(this.model.parameters(), { lr: this.lrAt(0), betas: [0.9, 0.95], eps: 1e-8, weightDecay: this.wdAt(0), decoupled: true });
    this.ema = o.ema ? new EMA(this.model.namedParameters(), o.ema) : null;
  }

  get epoch(): number {
    return Math.floor(this.step / this.stepsPerEpoch);
  }

  /** The LR of step `it` (held at its last value past the schedule's end). */
  lrAt(it: number): number {
    return lrAt(this.recipe, Math.min(it, this.totalSteps - 1), this.stepsPerEpoch, this.totalSteps);
  }

  wdAt(it: number): number {
    return weightDecayAt(this.recipe, Math.min(it, this.totalSteps - 1), this.totalSteps);
  }

  private amp<T>(fn: () => T): T {
    return this.scaler ? autocast('f16', fn) : fn();
  }

  /**
   * Sum of the cross-entropy over every position of `h` [B, L, C] against `targets` [B*L],
   * chunked over rows. With `gradScale`, each chunk's loss x gradScale is backpropagated to
   * the head and to h's detached copy at once (so the chunk's logits are freed before the
   * next), and the gradient w.r.t. h is returned for the rest of the network.
   */
  private chunkedCrossEntropy(h: Tensor, targets: Int32Array, gradScale: number | null): { sum: Tensor; dh: Tensor | null } {
    const [B, L, C] = h.shape;
    const N = B * L;
    const detached = h.detach();
    const flat = detached.reshape([N, C]);
    detached.dispose();
    if (gradScale !== null) flat.requiresGrad = true;
    let total: Tensor | null = null;
    for (let r0 = 0; r0 < N; r0 += this.ceChunkRows) {
      const rows = Math.min(this.ceChunkRows, N - r0);
      const t = tensor(targets.subarray(r0, r0 + rows), [rows], { dtype: 'i32' });
      const s = tidy(() => this.amp(() => {
        const logits = this.model.head.forward(slice(flat, [r0, 0], [rows, C]));
        const [loss, lse] = apply('cross_entropy', [logits, t]);
        lse.dispose();
        return sum(loss);
      }));
      t.dispose();
      if (gradScale !== null) {
        const seed = noGrad(() => full(s.shape, gradScale, { dtype: s.dtype, backend: s.backend }));
        backward(s, seed);
        seed.dispose();
      }
      const d = noGrad(() => s.detach());
      s.dispose();
      const next: Tensor = total ? noGrad(() => keep(add(total!, d))) : keep(d);
      if (total) {
        total.dispose();
        d.dispose();
      }
      total = next;
    }
    const dh = gradScale !== null ? (flat.grad ? keep(flat.grad.reshape([B, L, C])) : null) : null;
    flat.dispose();
    return { sum: total!, dh };
  }

  /** Inputs z[:, :-1] and targets z of sequences [B, L]. */
  private split(b: TokenMicroBatch): { inputs: Int32Array; targets: Int32Array; L: number } {
    const L = b.tokens.length / b.size;
    if (!Number.isInteger(L) || L !== this.config.block_size) {
      throw new Error(`trainStep: sequences of ${L} tokens; the config's block_size is ${this.config.block_size}`);
    }
    const inputs = new Int32Array(b.size * (L - 1));
    for (let i = 0; i < b.size; i++) inputs.set(b.tokens.subarray(i * L, i * L + L - 1), i * (L - 1));
    return { inputs, targets: b.tokens, L };
  }

  /**
   * One optimizer step over `micro` batches. A non-finite loss skips the update (nothing is
   * applied) and counts toward maxNonFinite.
   */
  async trainStep(micro: TokenMicroBatch[]): Promise<ArStepLog> {
    if (micro.length !== this.accumulate) throw new Error(`trainStep: expected ${this.accumulate} micro-batches, got ${micro.length}`);
    setBackend(this.backend);
    const lr = this.lrAt(this.step);
    const wd = this.wdAt(this.step);
    this.opt.lr = lr;
    this.opt.weightDecay = wd;
    const lossScale = this.scaler?.scale ?? 1;
    const rowsAll = micro.reduce((a, b) => a + b.size * this.config.block_size, 0);
    this.opt.zeroGrad();
    let lossSum = 0;
    for (let i = 0; i < micro.length; i++) {
      const b = micro[i];
      const { inputs, targets } = this.split(b);
      // Label dropout from a counter-based stream of (seed, step, micro-batch, row): resumable.
      const row0 = this.dp ? this.dp.rank * b.size : 0; // this micro-batch's first row in the global batch
      const u = Float64Array.from({ length: b.size }, (_, r) => uniformAt(this.seed, 0x6c64726f /* 'ldro' */, this.step, i, row0 + r));
      const labels = dropLabels(b.labels, LABEL_DROP_PROB, this.config.class_num, u);
      const x = tensor(inputs, [b.size, this.config.block_size - 1], { dtype: 'i32' });
      const y = tensor(labels, [b.size], { dtype: 'i32' });
      const h = tidy(() => this.amp(() => this.model.features(x, y, { train: true, generator: this.generator })));
      const { sum: s, dh } = this.chunkedCrossEntropy(h, targets, lossScale / rowsAll);
      if (dh) backward(h, dh);
      lossSum += await readScalar(s);
      dispose([x, y, h, s, dh ?? []]);
    }
    // Averaged over the ranks (equal rows each): the global mean, and one rank's inf or NaN skips the update on all.
    const loss = this.dp ? (await this.dp.average([lossSum / rowsAll]))[0] : lossSum / rowsAll;
    const finite = Number.isFinite(loss);
    let gradNorm = NaN;
    let overflowed = false;
    if (finite) {
      const params = this.model.parameters();
      await this.dp?.allReduceGradients(params);
      const clip = this.recipe.gradient_clip_val;
      // Clipping the scaled gradients at clip x scale is clipping the unscaled ones at clip.
      if (clip) {
        const n = clipGradNorm(params, clip * lossScale);
        gradNorm = (await n.item()) / lossScale;
        n.dispose();
      }
      if (this.scaler) {
        overflowed = !(await this.scaler.step(this.opt));
        this.scaler.update();
      } else this.opt.step();
      this.ema?.update();
      this.nonFiniteInRow = 0;
    } else this.nonFiniteInRow++;
    this.opt.zeroGrad();
    const log: ArStepLog = {
      step: this.step, epoch: this.epoch, skipped: !finite, loss, lr, weight_decay: wd, grad_norm: gradNorm, loss_scale: lossScale, overflowed,
    };
    if (finite) this.step++;
    else if (this.nonFiniteInRow >= this.maxNonFinite) throw new NonFiniteArLossError(this.nonFiniteInRow, this.step);
    return log;
  }

  /**
   * Makes every rank's state rank 0's (weights, EMA, AdamW moments, counters, dropout stream,
   * loss scale): after construction (DDP's initial broadcast) and after rank 0 alone loaded a
   * checkpoint. A no-op without data parallelism.
   */
  async synchronize(): Promise<void> {
    if (!this.dp || this.dp.size === 1) return;
    const s = this.opt.state();
    await this.dp.broadcast([...this.model.parameters(), ...(this.ema?.shadow.values() ?? []), ...s.m, ...s.v]);
    const n = await this.dp.broadcastNumbers([
      this.step, this.opt.stepCount, this.nonFiniteInRow, this.generator.seed, this.generator.offset, this.scaler?.scale ?? 0, this.scaler?.growthTracker ?? 0,
    ]);
    [this.step, this.opt.stepCount, this.nonFiniteInRow, this.generator.seed, this.generator.offset] = n;
    if (this.scaler) this.scaler.loadState({ scale: n[5], growthTracker: n[6] });
  }

  /**
   * Validation: the summed cross-entropy and the number of predicted tokens of a batch (no
   * dropout, no label dropout), with the EMA weights when `ema` and there are some.
   */
  async evalLoss(b: TokenMicroBatch): Promise<{ sum: number; count: number }> {
    setBackend(this.backend);
    const { inputs, targets } = this.split(b);
    const x = tensor(inputs, [b.size, this.config.block_size - 1], { dtype: 'i32' });
    const y = tensor(b.labels, [b.size], { dtype: 'i32' });
    const s = noGrad(() => {
      const h = tidy(() => this.amp(() => this.model.features(x, y, { train: false })));
      const r = this.chunkedCrossEntropy(h, targets, null).sum;
      h.dispose();
      return r;
    });
    const v = await readScalar(s);
    dispose([x, y, s]);
    return { sum: v, count: b.size * this.config.block_size };
  }

  // -------------------------------------------------------------------------------------
  // Checkpoints: the official names (`transformer.*`), the EMA beside them, optimizer moments.

  async save(path: string, extra: Record<string, unknown> = {}): Promise<void> {
    const entries: [string, { dtype: 'f32'; shape: readonly number[]; data: () => Promise<Float32Array> }][] = [];
    const put = (name: string, t: Tensor) => entries.push([name, { dtype: 'f32', shape: [...t.shape], data: async () => (await t.data()) as Float32Array }]);
    const named = this.model.namedParameters();
    for (const [n, t] of named) put(`transformer.${n}`, t);
    if (this.ema) for (const [n, t] of this.ema.shadow) put(`model_ema.transformer.${n}`, t);
    const s = this.opt.state();
    named.forEach(([n], i) => {
      put(`optimizer.exp_avg.${n}`, s.m[i]);
      put(`optimizer.exp_avg_sq.${n}`, s.v[i]);
    });
    const state = {
      step: this.step, optimizerSteps: this.opt.stepCount, nonFiniteInRow: this.nonFiniteInRow, rng: this.generator.state(), seed: this.seed,
      precision: this.precision, scaler: this.scaler?.state() ?? null, config: this.config, ...extra,
    };
    await writeSafetensors(path, entries, { metadata: { format: AR_STATE_FORMAT, 'ibq.state': JSON.stringify(state) } });
  }

  /** Restores a checkpoint written by save(); returns its metadata fields (the extra ones included). */
  async load(path: string): Promise<Record<string, unknown>> {
    const { tensors, metadata } = await readSafetensors(path);
    if (metadata.format !== AR_STATE_FORMAT) throw new Error(`${path}: not an AR training checkpoint (written by 'ibq train-ar')`);
    const weights = new Map([...tensors].filter(([k]) => k.startsWith('transformer.')));
    this.model.loadWeights(weights);
    const write = (t: Tensor, h: HostTensor | undefined, what: string) => {
      if (!h) throw new Error(`${path}: missing '${what}'`);
      t.backend.write(t.info.buffer, toFloat32(h), t.info.offset);
    };
    if (this.ema) {
      for (const [n, t] of this.ema.shadow) {
        const k = `model_ema.transformer.${n}`;
        // A run resumed with --ema from a checkpoint without one starts its EMA from the weights.
        write(t, tensors.get(k) ?? tensors.get(`transformer.${n}`), k);
      }
    }
    const s = this.opt.state();
    this.model.namedParameters().forEach(([n], i) => {
      write(s.m[i], tensors.get(`optimizer.exp_avg.${n}`), `optimizer.exp_avg.${n}`);
      write(s.v[i], tensors.get(`optimizer.exp_avg_sq.${n}`), `optimizer.exp_avg_sq.${n}`);
    });
    const state = JSON.parse(metadata['ibq.state']);
    this.opt.stepCount = state.optimizerSteps;
    this.step = state.step;
    this.nonFiniteInRow = state.nonFiniteInRow;
    if (this.scaler && state.scaler) this.scaler.loadState(state.scaler);
    this.generator.seed = state.rng.seed;
    this.generator.offset = state.rng.offset;
    return state;
  }

  dispose(): void {
    this.model.dispose();
    this.opt.dispose();
    this.ema?.dispose();
  }
}

async function readScalar(t: Tensor): Promise<number> {
  const v = await t.data();
  return Number(v[0]);
}

