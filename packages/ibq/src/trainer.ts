// Tokenizer training as the reference's IBQ.training_step (spec: training.md §1-5): one forward,
// the discriminator step on the detached reconstruction, then the generator step against the
// just-updated discriminator, then the EMA update. Checkpoints hold everything a resumed run
// needs to continue the same loss curve.
//
// Data-parallel (an MPI launch, `dataParallel` given): as the reference's DDP without
// SyncBatchNorm. Each rank steps on its own shard; gradients are averaged before both
// optimizer steps, so weights, Adam moments and the EMA stay identical on every rank. Buffers
// (BatchNorm running statistics) are broadcast from rank 0 at each step, as DDP's
// broadcast_buffers=True does at each forward; BatchNorm normalises with each rank's own batch
// statistics; the LeCAM EMAs (Python floats in the reference, not buffers) stay per rank.
// Logged scalars are averaged over the ranks, and a non-finite loss on any rank skips the
// update on all.

import {
  Adam, EMA, Generator, GradScaler, type HostTensor, type Tensor, abs, add, assign, autocast, backward, concat, dispose, keep,
  lrAfterDrops, mean, nn, noGrad, readSafetensors, scale, setBackend, slice, sub, tensor, tidy, toFloat32, writeSafetensors,
} from '@ibq/tensor';
import { type Backend, supportsF16 } from '@ibq/kernels';
import type { DataParallel } from '@ibq/mpi';
import type { IBQConfig } from './config.js';
import { emaKey } from './checkpoint.js';
import { NLayerDiscriminator, hingeDLoss, lecamReg, nonSaturatingGLoss } from './discriminator.js';
import { IBQTokenizer } from './model.js';

/** What the perceptual term needs: LPIPS(x, y) -> [B,1,1,1], differentiable in y. */
export interface PerceptualLoss {
  forward(x: Tensor, y: Tensor): Tensor;
}

export interface TrainerOptions {
  config: IBQConfig;
  backend: Backend;
  seed?: number;
  /** LPIPS network; null trains without the perceptual term (and says so). */
  perceptual?: PerceptualLoss | null;
  /** Micro-batches summed into one optimizer step (global batch = micro batch x accumulate). */
  accumulate?: number;
  /** Non-finite losses in a row before the run stops. */
  maxNonFinite?: number;
  /** Train the PatchGAN discriminator and use the GAN term (default: the config's loss has one). */
  gan?: boolean;
  /** Optimizer steps per epoch, for the epoch-based LR drops. */
  stepsPerEpoch?: number;
  /** '16-mixed': f16 autocast with dynamic loss scaling (needs f16 on the backend). Default '32'. */
  precision?: Precision;
  /** Ranks of a data-parallel run (MPI); null or absent trains in this process alone. */
  dataParallel?: DataParallel | null;
}

/** The precisions a run can train in (Lightning's names). */
export type Precision = '32' | '16-mixed';

/**
 * The precision a run trains in, from the config's `trainer.precision` and the --precision flag
 * (which wins), on a backend: an explicit request the backend cannot honour is an error; a
 * config's request that it cannot is a notice, and the run trains in f32 (the official configs
 * ask for 16-mixed or bf16-mixed, written for CUDA GPUs and NPUs).
 */
export function resolvePrecision(fromConfig: string | null, flag: string | undefined, backend: Backend): { precision: Precision; notice: string | null } {
  const canonical = (v: string, where: string): Precision | 'bf16-mixed' => {
    if (['32', '32-true'].includes(v)) return '32';
    if (['16', '16-mixed'].includes(v)) return '16-mixed';
    if (['bf16', 'bf16-mixed'].includes(v)) return 'bf16-mixed';
    throw new Error(`${where}: unknown precision '${v}' (expected 32, 16-mixed or bf16-mixed)`);
  };
  const f16 = supportsF16(backend);
  if (flag !== undefined) {
    const p = canonical(flag, '--precision');
    if (p === 'bf16-mixed') throw new Error('--precision bf16-mixed: no backend here has bfloat16; use 16-mixed (f16 with loss scaling) or 32');
    if (p === '16-mixed' && f16 !== true) throw new Error(`--precision 16-mixed: backend '${backend.name}' cannot: ${f16}`);
    return { precision: p, notice: null };
  }
  if (fromConfig === null) return { precision: '32', notice: null };
  const p = canonical(fromConfig, 'trainer.precision');
  if (p === '32') return { precision: '32', notice: null };
  if (p === '16-mixed' && f16 === true) return { precision: p, notice: `training in 16-mixed (f16 autocast with loss scaling), as the config's trainer.precision asks` };
  const why = p === 'bf16-mixed' ? 'no backend here has bfloat16' : `backend '${backend.name}' has no f16 (${f16})`;
  return { precision: '32', notice: `the config asks for precision ${fromConfig}, but ${why}: training in 32 (--precision overrides)` };
}

/** Scalars logged for one step, named as the reference logs them. */
export interface StepLog {
  step: number;
  epoch: number;
  skipped: boolean;
  total_loss: number;
  reconstruct_loss: number;
  perceptual_loss: number;
  /** reconstruct_loss + perceptual_weight x perceptual_loss. */
  nll_loss: number;
  g_loss: number;
  codebook_quant_loss: number;
  codebook_sample_entropy_loss: number;
  codebook_avg_entropy_loss: number;
  codebook_entropy_loss: number;
  disc_loss: number;
  logits_real: number;
  logits_fake: number;
  lecam_loss: number;
  /** 0 before disc_start, 1 after: the weight of the GAN terms. */
  disc_factor: number;
  lr: number;
  /** The loss scale this step ran with (1 in f32). */
  loss_scale: number;
  /** Updates the loss scaler skipped because a scaled gradient overflowed (16-mixed; the scale backs off). */
  overflowed: ('discriminator' | 'generator')[];
  /** Code indices chosen in this step (for usage statistics). */
  indices: Int32Array;
}

export class NonFiniteLossError extends Error {
  constructor(readonly count: number, readonly step: number) {
    super(`${count} non-finite losses in a row (last at step ${step}): stopping; the last checkpoint is intact`);
    this.name = 'NonFiniteLossError';
  }
}

const LOG_NAMES = [
  'total_loss', 'reconstruct_loss', 'perceptual_loss', 'g_loss', 'codebook_quant_loss', 'codebook_sample_entropy_loss',
  'codebook_avg_entropy_loss', 'codebook_entropy_loss', 'nll_loss',
] as const;

export class IBQTrainer {
  readonly config: IBQConfig;
  readonly backend: Backend;
  readonly model: IBQTokenizer;
  readonly disc: NLayerDiscriminator | null;
  readonly optG: Adam;
  readonly optD: Adam | null;
  /** EMA of every trainable parameter (generator and discriminator), as LitEma. */
  readonly ema: EMA | null;
  readonly perceptual: PerceptualLoss | null;
  readonly accumulate: number;
  readonly maxNonFinite: number;
  readonly stepsPerEpoch: number;
  readonly generator: Generator;
  readonly precision: Precision;
  /** Loss scaling for 16-mixed: one scaler for both optimizers, as Lightning's precision plugin. */
  readonly scaler: GradScaler | null;
  readonly dp: DataParallel | null;
  /** LeCAM EMAs of the mean real and fake logits, one element each (device scalars). */
  lecamReal: Tensor;
  lecamFake: Tensor;
  /** Generator (optimizer) steps taken. */
  step = 0;
  nonFiniteInRow = 0;

  constructor(o: TrainerOptions) {
    this.config = o.config;
    this.backend = o.backend;
    setBackend(o.backend);
    this.accumulate = o.accumulate ?? 1;
    this.maxNonFinite = o.maxNonFinite ?? 5;
    this.stepsPerEpoch = o.stepsPerEpoch ?? Infinity;
    this.perceptual = o.perceptual ?? null;
    this.precision = o.precision ?? '32';
    this.dp = o.dataParallel ?? null;
    if (this.precision === '16-mixed') {
      const ok = supportsF16(o.backend);
      if (ok !== true) throw new Error(`precision 16-mixed: backend '${o.backend.name}' cannot: ${ok}`);
    }
    this.scaler = this.precision === '16-mixed' ? new GradScaler() : null;
    this.generator = new Generator(o.seed ?? 0);
    nn.manualSeed(o.seed ?? 0);
    const lc = o.config.lossconfig;
    this.model = new IBQTokenizer(o.config);
    const gan = o.gan ?? true;
    this.disc = gan ? new NLayerDiscriminator(lc.disc_in_channels, lc.disc_ndf, lc.disc_num_layers, nn.getDefaultGenerator()) : null;
    const betas: [number, number] = [0.5, 0.9];
    this.optG = new Adam(this.model.parameters(), { lr: o.config.learning_rate, betas });
    this.optD = this.disc ? new Adam(this.disc.parameters(), { lr: o.config.learning_rate, betas }) : null;
    this.ema = o.config.use_ema ? new EMA(this.emaParams(), 0.999) : null;
    if (this.ema) {
      // Quirk: the reference builds its EMA before replacing the VectorQuantizer2 codebook
      // (U(+-1/N) init) with IBQ's, so the EMA codebook starts from a U(+-1/N) draw.
      const shadow = this.ema.shadow.get('quantize.embedding.weight')!;
      const n = o.config.n_embed;
      const u = this.generator.uniform(shadow.shape, -1 / n, 1 / n);
      assign(shadow, u);
      u.dispose();
    }
    this.lecamReal = keep(tensor([0], [1]));
    this.lecamFake = keep(tensor([0], [1]));
  }

  /** fn under f16 autocast in 16-mixed, as is otherwise. */
  private amp<T>(fn: () => T): T {
    return this.scaler ? autocast('f16', fn) : fn();
  }

  /** Backward through every loss (scaled in 16-mixed) and one step; false when the scaler skipped it. */
  private async backwardAndStep(losses: Tensor[], opt: Adam): Promise<boolean> {
    if (!this.scaler) {
      for (const l of losses) backward(l);
      await this.dp?.allReduceGradients(opt.params);
      opt.step();
      return true;
    }
    for (const l of losses) this.scaler.backward(l);
    // Averaged while still scaled: the unscale and its finiteness check then agree on every rank.
    await this.dp?.allReduceGradients(opt.params);
    const stepped = await this.scaler.step(opt);
    this.scaler.update();
    return stepped;
  }

  /** Every buffer (BatchNorm running statistics) of the generator and the discriminator. */
  private buffers(): Tensor[] {
    return [...this.model.namedBuffers(), ...(this.disc?.namedBuffers() ?? [])].map(([, t]) => t);
  }

  /**
   * Makes every rank's state rank 0's (weights, buffers, EMA, Adam moments, LeCAM EMAs, counters,
   * loss scale): after construction (DDP's initial broadcast) and after rank 0 alone loaded a
   * checkpoint. A no-op without data parallelism.
   */
  async synchronize(): Promise<void> {
    if (!this.dp || this.dp.size === 1) return;
    const tensors = [...this.model.parameters(), ...(this.disc?.parameters() ?? []), ...this.buffers(), this.lecamReal, this.lecamFake];
    if (this.ema) tensors.push(...this.ema.shadow.values());
    for (const opt of [this.optG, this.optD]) if (opt) tensors.push(...opt.state().m, ...opt.state().v);
    await this.dp.broadcast(tensors);
    const scalars = await this.dp.broadcastNumbers([
      this.step, this.optG.stepCount, this.optD?.stepCount ?? 0, this.nonFiniteInRow, this.generator.seed, this.generator.offset,
      this.scaler?.scale ?? 0, this.scaler?.growthTracker ?? 0,
    ]);
    [this.step, this.optG.stepCount] = scalars;
    if (this.optD) this.optD.stepCount = scalars[2];
    this.nonFiniteInRow = scalars[3];
    this.generator.seed = scalars[4];
    this.generator.offset = scalars[5];
    if (this.scaler) this.scaler.loadState({ scale: scalars[6], growthTracker: scalars[7] });
  }

  private emaParams(): [string, Tensor][] {
    const gen = this.model.namedParameters();
    const disc = this.disc ? this.disc.namedParameters('loss.discriminator.') : [];
    return [...gen, ...disc];
  }

  get epoch(): number {
    return Number.isFinite(this.stepsPerEpoch) ? Math.floor(this.step / this.stepsPerEpoch) : 0;
  }

  /** LR of both optimizers: the base LR dropped x rate at each listed epoch already completed. */
  get lr(): number {
    return lrAfterDrops(this.config.learning_rate, this.epoch, this.config.lr_drop_epoch, this.config.lr_drop_rate);
  }

  /**
   * One optimizer step over `micro` batches ([B,3,R,R] in [-1,1]). A non-finite loss skips the
   * update (nothing is applied) and counts toward maxNonFinite.
   */
  async trainStep(micro: Tensor[]): Promise<StepLog> {
    if (micro.length !== this.accumulate) throw new Error(`trainStep: expected ${this.accumulate} micro-batches, got ${micro.length}`);
    setBackend(this.backend);
    const lr = this.lr;
    this.optG.lr = lr;
    if (this.optD) this.optD.lr = lr;
    const lc = this.config.lossconfig;
    const discFactor = this.step >= lc.disc_start ? 1 : 0;
    const k = this.accumulate;
    // DDP's broadcast_buffers: every rank starts the step with rank 0's running statistics.
    if (this.dp && this.dp.size > 1) await this.dp.broadcast(this.buffers());

    // One forward per micro-batch; the graphs stay alive for the generator step.
    const lossScale = this.scaler?.scale ?? 1;
    const overflowed: StepLog['overflowed'] = [];
    const fwd = micro.map((x) => tidy(() => this.amp(() => this.model.forward(x))));
    const garbage: Tensor[] = [];

    // --- discriminator step (on detached reconstructions) ---
    let dScalars = [0, 0, 0, 0]; // disc_loss, logits_real, logits_fake, lecam
    let dFinite = true;
    // Before disc_start the reference still runs D on both batches (the LeCAM EMAs and the
    // BatchNorm running stats move) and steps opt_disc with zero gradients: Adam's counter
    // advances (later bias corrections depend on it) while its moments and the weights stay put.
    if (this.disc && this.optD) {
      this.optD.zeroGrad();
      const taped = <T>(f: () => T): T => (discFactor > 0 ? f() : noGrad(f)); // nothing to backpropagate before disc_start
      const dLosses: Tensor[] = [];
      for (let i = 0; i < k; i++) {
        const x = micro[i];
        const out = tidy(() => this.amp(() => taped(() => {
          const real = this.disc!.forward(x.detach());
          const fake = this.disc!.forward(fwd[i].xrec.detach());
          const mr = mean(real), mf = mean(fake);
          // LeCAM EMAs are updated first, with no gradient (the reference uses .item()).
          noGrad(() => {
            const d = 0.999;
            const nr = keep(add(scale(this.lecamReal, d), scale(mr, 1 - d)));
            const nf = keep(add(scale(this.lecamFake, d), scale(mf, 1 - d)));
            this.lecamReal.dispose();
            this.lecamFake.dispose();
            this.lecamReal = nr;
            this.lecamFake = nf;
          });
          const lecam = lecamReg(real, fake, this.lecamReal, this.lecamFake);
          const dLoss = scale(add(scale(lecam, lc.lecam_loss_weight), hingeDLoss(real, fake)), discFactor);
          return { loss: scale(dLoss, 1 / k), log: concat([dLoss.reshape([1]), mr.reshape([1]), mf.reshape([1]), lecam.reshape([1])]) };
        })));
        dLosses.push(out.loss);
        garbage.push(out.log);
        const v = Array.from(await out.log.data());
        dScalars = dScalars.map((s, j) => s + v[j] / k);
      }
      // Averaged over the ranks: one rank's inf or NaN makes every rank skip the update.
      if (this.dp) dScalars = await this.dp.average(dScalars);
      dFinite = dScalars.every(Number.isFinite);
      if (discFactor === 0) {
        this.optD.skipStep();
        this.scaler?.update(); // the reference's scaler sees that (clean) step too
      } else if (dFinite && !(await this.backwardAndStep(dLosses, this.optD))) overflowed.push('discriminator');
      this.optD.zeroGrad();
      dispose(dLosses);
    }

    // --- generator step (against the just-updated discriminator) ---
    this.optG.zeroGrad();
    const gLosses: Tensor[] = [];
    let sums = new Array<number>(LOG_NAMES.length).fill(0);
    const indices: Int32Array[] = [];
    for (let i = 0; i < k; i++) {
      const x = micro[i];
      const { xrec, losses } = fwd[i];
      const out = tidy(() => this.amp(() => {
        const rec = mean(abs(sub(x, xrec)));
        const p = this.perceptual ? mean(this.perceptual.forward(x, xrec)) : null;
        const nll = p ? add(rec, scale(p, lc.perceptual_weight)) : rec;
        // Before disc_start D still sees the reconstruction (its BatchNorm statistics move), with no gradient to G.
        const g = !this.disc ? null : discFactor > 0 ? nonSaturatingGLoss(this.disc.forward(xrec)) : noGrad(() => nonSaturatingGLoss(this.disc!.forward(xrec)));
        const q = slice(losses, [0], [1]);
        const se = slice(losses, [1], [1]);
        const ae = slice(losses, [2], [1]);
        const ent = sub(scale(se, this.config.sample_minimization_weight), scale(ae, this.config.batch_maximization_weight));
        let total = add(nll, scale(q, lc.quant_loss_weight));
        if (this.config.use_entropy_loss) total = add(total, scale(ent, lc.entropy_loss_weight));
        if (g && discFactor > 0) total = add(total, scale(g, lc.gen_loss_weight * discFactor));
        const zero = tensor([0], [1]);
        const log = concat([total, rec, p ?? zero, g ?? zero, q, se, ae, ent, nll].map((t) => t.reshape([1])));
        return { loss: scale(total, 1 / k), log };
      }));
      gLosses.push(out.loss);
      garbage.push(out.log);
      const v = await out.log.data();
      v.forEach((s, j) => (sums[j] += s / k));
      indices.push((await fwd[i].indices.data()) as Int32Array);
    }
    if (this.dp) sums = await this.dp.average(sums);
    const gFinite = dFinite && sums.every(Number.isFinite);
    if (gFinite) {
      // A step the scaler skips still counts, and the EMA still moves, as in the reference.
      if (!(await this.backwardAndStep(gLosses, this.optG))) overflowed.push('generator');
      this.ema?.update();
      this.nonFiniteInRow = 0;
    } else {
      this.nonFiniteInRow++;
    }
    this.optG.zeroGrad();
    // Gradients the G loss left on the discriminator are discarded, as the reference's next zero_grad does.
    this.optD?.zeroGrad();
    dispose([gLosses, garbage, fwd]);

    const log: StepLog = {
      step: this.step,
      epoch: this.epoch,
      skipped: !gFinite,
      ...(Object.fromEntries(LOG_NAMES.map((n, j) => [n, sums[j]])) as Record<(typeof LOG_NAMES)[number], number>),
      disc_loss: dScalars[0],
      logits_real: dScalars[1],
      logits_fake: dScalars[2],
      lecam_loss: dScalars[3],
      disc_factor: discFactor,
      lr,
      loss_scale: lossScale,
      overflowed,
      indices: concatInts(indices),
    };
    if (gFinite) this.step++;
    else if (this.nonFiniteInRow >= this.maxNonFinite) throw new NonFiniteLossError(this.nonFiniteInRow, this.step);
    return log;
  }

  // -------------------------------------------------------------------------------------
  // Checkpoints: one safetensors file, official names for weights, EMA and discriminator.

  /** Writes everything a resumed run needs, atomically. `extra` lands in the metadata (data position...). */
  async save(path: string, extra: Record<string, unknown> = {}): Promise<void> {
    const entries: [string, { dtype: 'f32' | 'i32'; shape: readonly number[]; data: () => Promise<Float32Array | Int32Array> }][] = [];
    const add_ = (name: string, t: Tensor) =>
      entries.push([name, { dtype: t.dtype as 'f32' | 'i32', shape: [...t.shape], data: async () => (await t.data()) as Float32Array | Int32Array }]);
    for (const [n, t] of this.model.stateDict()) add_(n, t);
    if (this.disc) for (const [n, t] of this.disc.stateDict()) add_(`loss.discriminator.${n}`, t);
    if (this.ema) for (const [n, t] of this.ema.shadow) add_(emaKey(n), t);
    const optState = (tag: string, opt: Adam, names: string[]) => {
      const s = opt.state();
      names.forEach((n, i) => {
        add_(`optimizer.${tag}.exp_avg.${n}`, s.m[i]);
        add_(`optimizer.${tag}.exp_avg_sq.${n}`, s.v[i]);
      });
    };
    optState('gen', this.optG, this.model.namedParameters().map(([n]) => n));
    if (this.optD && this.disc) optState('disc', this.optD, this.disc.namedParameters().map(([n]) => n));
    add_('lecam.logits_real_ema', this.lecamReal);
    add_('lecam.logits_fake_ema', this.lecamFake);
    const state = {
      step: this.step,
      genOptimizerSteps: this.optG.stepCount,
      discOptimizerSteps: this.optD?.stepCount ?? 0,
      nonFiniteInRow: this.nonFiniteInRow,
      rng: this.generator.state(),
      precision: this.precision,
      scaler: this.scaler?.state() ?? null,
      ...extra,
    };
    await writeSafetensors(path, entries, { metadata: { format: 'ibq-train-state', 'ibq.state': JSON.stringify(state) } });
  }

  /** Restores a checkpoint written by save(); returns its metadata `extra` fields. */
  async load(path: string): Promise<Record<string, unknown>> {
    const { tensors, metadata } = await readSafetensors(path);
    if (metadata.format !== 'ibq-train-state') throw new Error(`${path}: not a training checkpoint (written by 'ibq train')`);
    const pick = (prefix: string) => new Map([...tensors].filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]));
    const gen = new Map([...tensors].filter(([k]) => !k.includes('loss.') && !k.startsWith('model_ema.') && !k.startsWith('optimizer.') && !k.startsWith('lecam.')));
    this.model.loadStateDict(gen);
    if (this.disc) this.disc.loadStateDict(pick('loss.discriminator.'));
    const write = (t: Tensor, h: HostTensor | undefined, what: string) => {
      if (!h) throw new Error(`${path}: missing '${what}'`);
      t.backend.write(t.info.buffer, toFloat32(h), t.info.offset);
    };
    if (this.ema) for (const [n, t] of this.ema.shadow) write(t, tensors.get(emaKey(n)), emaKey(n));
    const loadOpt = (tag: string, opt: Adam, names: string[], steps: number) => {
      const s = opt.state();
      names.forEach((n, i) => {
        write(s.m[i], tensors.get(`optimizer.${tag}.exp_avg.${n}`), `optimizer.${tag}.exp_avg.${n}`);
        write(s.v[i], tensors.get(`optimizer.${tag}.exp_avg_sq.${n}`), `optimizer.${tag}.exp_avg_sq.${n}`);
      });
      opt.stepCount = steps;
    };
    const state = JSON.parse(metadata['ibq.state']);
    loadOpt('gen', this.optG, this.model.namedParameters().map(([n]) => n), state.genOptimizerSteps);
    if (this.optD && this.disc) loadOpt('disc', this.optD, this.disc.namedParameters().map(([n]) => n), state.discOptimizerSteps);
    write(this.lecamReal, tensors.get('lecam.logits_real_ema'), 'lecam.logits_real_ema');
    write(this.lecamFake, tensors.get('lecam.logits_fake_ema'), 'lecam.logits_fake_ema');
    this.step = state.step;
    this.nonFiniteInRow = state.nonFiniteInRow;
    // A run may resume in another precision (say, on another machine); the scale carries over when both are 16-mixed.
    if (this.scaler && state.scaler) this.scaler.loadState(state.scaler);
    this.generator.seed = state.rng.seed;
    this.generator.offset = state.rng.offset;
    return state;
  }

  dispose(): void {
    this.model.dispose();
    this.disc?.dispose();
    this.optG.dispose();
    this.optD?.dispose();
    this.ema?.dispose();
    this.lecamReal.dispose();
    this.lecamFake.dispose();
  }
}

function concatInts(parts: Int32Array[]): Int32Array {
  const out = new Int32Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

