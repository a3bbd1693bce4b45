// A training run for people: a run folder (checkpoint, metrics.jsonl, TensorBoard events,
// PNG grids of inputs and reconstructions), a progress line, checkpoints every N steps and
// on Ctrl-C, and --resume from the folder's checkpoint.

import { appendFileSync, existsSync, mkdirSync } from 'node:fs';
import { writeFileAtomicSync } from '@ibq/formats';
import { join } from 'node:path';
import { BatchLoader, type ImageDataset, type LoaderPosition } from '@ibq/data';
import { dispose, tensor } from '@ibq/tensor';
import { type IBQConfig, IBQTrainer, NonFiniteLossError, type PerceptualLoss, type Precision, type StepLog } from '@ibq/ibq';
import type { Backend } from '@ibq/kernels';
import type { Io } from './io.js';
import { writeReconstructionGrid } from './reconstruction.js';
import { TensorBoardWriter } from './tensorboard.js';

/** Codebook usage over the last `window` steps. */
export class UsageWindow {
  private readonly steps: Int32Array[] = [];
  constructor(readonly nEmbed: number, readonly window = 100) {}
  add(indices: Int32Array): void {
    this.steps.push(indices);
    if (this.steps.length > this.window) this.steps.shift();
  }
  /** Fraction of codes chosen at least once in the window. */
  usage(): number {
    const seen = new Uint8Array(this.nEmbed);
    let used = 0;
    for (const s of this.steps) for (const i of s) if (!seen[i]) {
      seen[i] = 1;
      used++;
    }
    return used / this.nEmbed;
  }
}

export interface RunOptions {
  config: IBQConfig;
  /** The config's YAML text, copied into the run folder. */
  configText: string;
  dataset: ImageDataset;
  /** Applied by the loader (resize / crop); none for datasets already at the resolution. */
  transform?: { resize: number; crop: 'random' | 'center' };
  backend: Backend;
  out: string;
  resume: boolean;
  seed: number;
  batchSize: number;
  accumulate: number;
  /** Stop after this many optimizer steps (total, counting resumed ones). */
  steps: number;
  /** Stop after this many seconds of this session (the demo's time budget). */
  seconds?: number;
  checkpointEvery: number;
  imageEvery: number;
  logEvery: number;
  perceptual: PerceptualLoss | null;
  gan: boolean;
  precision?: Precision;
}

export interface RunResult {
  trainer: IBQTrainer;
  stepsThisSession: number;
  seconds: number;
  interrupted: boolean;
  lastLog: StepLog | null;
  checkpoint: string;
}

const fmt = (v: number) => (Math.abs(v) >= 100 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : v.toFixed(4));

/** Trains until `steps`, the time budget or Ctrl-C; the trainer stays alive for evaluation. */
export async function runTraining(o: RunOptions, io: Io): Promise<RunResult> {
  mkdirSync(join(o.out, 'images'), { recursive: true });
  const checkpoint = join(o.out, 'checkpoint.safetensors');
  const loader = new BatchLoader(o.dataset, {
    batchSize: o.batchSize,
    transform: o.transform,
    shuffle: true,
    seed: o.seed,
    onSkip: (s) => io.err(`skipped ${s.path ?? `item ${s.index}`}: ${s.reason}`),
  });
  const stepsPerEpoch = Math.max(1, Math.floor(loader.batchesPerEpoch / o.accumulate));
  const trainer = new IBQTrainer({
    config: o.config, backend: o.backend, seed: o.seed, perceptual: o.perceptual, accumulate: o.accumulate, gan: o.gan, stepsPerEpoch, precision: o.precision,
  });
  let position: Partial<LoaderPosition> = {};
  if (o.resume) {
    if (!existsSync(checkpoint)) throw new Error(`--resume: no checkpoint in ${o.out} (expected ${checkpoint})`);
    const state = await trainer.load(checkpoint);
    position = (state.loader as LoaderPosition | undefined) ?? {};
    io.err(`resumed from ${checkpoint} at step ${trainer.step}`);
  } else {
    writeFileAtomicSync(join(o.out, 'config.yaml'), o.configText);
  }

  const metricsFile = join(o.out, 'metrics.jsonl');
  const tb = new TensorBoardWriter(o.out);
  const usage = new UsageWindow(o.config.n_embed);
  let stop = false;
  const onSigint = () => {
    if (stop) process.exit(130); // a second Ctrl-C: leave now (the last checkpoint is intact)
    stop = true;
    io.err('\nCtrl-C: finishing this step and writing a checkpoint (Ctrl-C again to quit at once)');
  };
  process.on('SIGINT', onSigint);

  const t0 = Date.now();
  const startStep = trainer.step;
  let lastLog: StepLog | null = null;
  let next: LoaderPosition | undefined;
  const save = async () => {
    await trainer.save(checkpoint, { loader: next ?? position, seed: o.seed });
  };
  try {
    const micro: Float32Array[] = [];
    let shape: number[] = [];
    for await (const batch of loader.iterate(position)) {
      micro.push(batch.images);
      shape = [batch.size, 3, batch.height, batch.width];
      next = batch.next;
      if (micro.length < o.accumulate) continue;
      const xs = micro.splice(0).map((m) => tensor(m, shape));
      let log: StepLog;
      try {
        log = await trainer.trainStep(xs);
      } finally {
        dispose(xs);
      }
      if (log.skipped) io.err(`step ${log.step}: non-finite loss, update skipped (${trainer.nonFiniteInRow} in a row)`);
      if (log.overflowed.length) {
        io.err(`step ${log.step}: f16 gradients overflowed at loss scale ${log.loss_scale}: the ${log.overflowed.join(' and ')} update skipped, scale now ${trainer.scaler!.scale}`);
      }
      lastLog = log;
      usage.add(log.indices);
      const done = trainer.step;
      const secs = (Date.now() - t0) / 1000;
      const rate = (done - startStep) / Math.max(secs, 1e-9);
      const scalars: Record<string, number> = {
        total_loss: log.total_loss, reconstruct_loss: log.reconstruct_loss, perceptual_loss: log.perceptual_loss, nll_loss: log.nll_loss,
        codebook_quant_loss: log.codebook_quant_loss, codebook_entropy_loss: log.codebook_entropy_loss,
        codebook_sample_entropy_loss: log.codebook_sample_entropy_loss, codebook_avg_entropy_loss: log.codebook_avg_entropy_loss,
        g_loss: log.g_loss, disc_loss: log.disc_loss, logits_real: log.logits_real, logits_fake: log.logits_fake,
        lecam_loss: log.lecam_loss, disc_factor: log.disc_factor, lr: log.lr, codebook_usage: usage.usage(),
        ...(trainer.scaler ? { loss_scale: log.loss_scale } : {}),
      };
      if (done % o.logEvery === 0 || done === o.steps) {
        appendFileSync(metricsFile, `${JSON.stringify({ step: done, epoch: log.epoch, time: secs, ...scalars })}\n`);
        tb.scalars(done, Object.fromEntries(Object.entries(scalars).map(([k, v]) => [`train/${k}`, v])));
      }
      const left = Math.min(o.steps - done, o.seconds !== undefined ? (o.seconds - secs) * rate : Infinity);
      io.status(`step ${done}/${o.steps}  ${rate.toFixed(2)} steps/s  ETA ${Math.max(0, left / Math.max(rate, 1e-9)).toFixed(0)}s  `
        + `loss ${fmt(log.total_loss)}  L1 ${fmt(log.reconstruct_loss)}  quant ${fmt(log.codebook_quant_loss)}  `
        + `entropy ${fmt(log.codebook_entropy_loss)}  usage ${(100 * usage.usage()).toFixed(1)}%`);
      if (o.imageEvery > 0 && done % o.imageEvery === 0) await writeTrainingGrid(trainer, shape, batch.images, join(o.out, 'images', `step_${String(done).padStart(7, '0')}.png`));
      if (o.checkpointEvery > 0 && done % o.checkpointEvery === 0) await save();
      if (done >= o.steps || stop || (o.seconds !== undefined && secs >= o.seconds)) break;
    }
  } catch (e) {
    io.status('');
    if (e instanceof NonFiniteLossError) io.err(`${e.message} (${checkpoint})`);
    throw e;
  } finally {
    process.off('SIGINT', onSigint);
    tb.close();
    await loader.close();
  }
  io.status('');
  await save();
  return { trainer, stepsThisSession: trainer.step - startStep, seconds: (Date.now() - t0) / 1000, interrupted: stop, lastLog, checkpoint };
}

/** Inputs (left) beside reconstructions (right), one row per image (up to 8). */
async function writeTrainingGrid(trainer: IBQTrainer, shape: number[], images: Float32Array, path: string): Promise<void> {
  const [b, , h, w] = shape;
  await writeReconstructionGrid(trainer.model, images, Math.min(b, 8), h, w, path, 2);
}
