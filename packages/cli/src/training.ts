// A training run for people: a run folder (checkpoint, metrics.jsonl, TensorBoard events,
// PNG grids of inputs and reconstructions), a progress line, checkpoints every N steps and
// when stopped by SIGINT or SIGTERM (stop.ts), and --resume from the folder's checkpoint. The
// per-step timing, metrics and stop check are run-log.ts's, shared with ar-training.ts.
//
// Under MPI (`dataParallel`) every rank runs this loop on its shard of each global batch;
// only rank 0 writes the run folder and prints progress; a stop request on any rank stops all
// of them after the same step; --resume continues at the same place in the data with the same
// or another number of ranks.

import { existsSync, mkdirSync, statSync } from 'node:fs';
import { writeFileAtomicSync } from '@ibq/formats';
import { join } from 'node:path';
import { BatchLoader, type ImageDataset, type LoaderPosition } from '@ibq/data';
import { dispose, tensor } from '@ibq/tensor';
import { type IBQConfig, IBQTrainer, NonFiniteLossError, type PerceptualLoss, type Precision, type StepLog } from '@ibq/ibq';
import type { Backend } from '@ibq/kernels';
import type { DataParallel } from '@ibq/mpi';
import type { Io } from './io.js';
import { type SavedPosition, sharedResumePosition } from './mpi-launch.js';
import type { StopController } from './stop.js';
import { writeReconstructionGrid } from './reconstruction.js';
import { RunLog, stopAfterStep } from './run-log.js';

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
  /** Checked after each step: a signal ends the run with a checkpoint. */
  stop: StopController;
  /** The ranks of an MPI launch; batchSize is then per rank (global batch = batchSize x ranks x accumulate). */
  dataParallel?: DataParallel | null;
}

export interface RunResult {
  trainer: IBQTrainer;
  stepsThisSession: number;
  seconds: number;
  /** Stopped by a signal (o.stop says which) rather than by `steps` or the time budget. */
  interrupted: boolean;
  lastLog: StepLog | null;
  checkpoint: string;
}

/** A loss or rate for the progress line: 4 decimals, or exponent notation when large or tiny. */
export const formatScalar = (v: number) => (Math.abs(v) >= 100 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : v.toFixed(4));
const fmt = formatScalar;

/** Trains until `steps`, the time budget or a signal; the trainer stays alive for evaluation. */
export async function runTraining(o: RunOptions, io: Io): Promise<RunResult> {
  const dp = o.dataParallel ?? null;
  const ranks = dp?.size ?? 1;
  const root = !dp || dp.isRoot;
  if (root) mkdirSync(join(o.out, 'images'), { recursive: true });
  const checkpoint = join(o.out, 'checkpoint.safetensors');
  const loader = new BatchLoader(o.dataset, {
    batchSize: o.batchSize,
    transform: o.transform,
    shuffle: true,
    seed: o.seed,
    onSkip: (s) => io.err(`${ranks > 1 ? `rank ${dp!.rank}: ` : ''}skipped ${s.path ?? `item ${s.index}`}: ${s.reason}`),
    ...(ranks > 1 ? { shard: { rank: dp!.rank, count: ranks } } : {}),
  });
  const stepsPerEpoch = Math.max(1, Math.floor(loader.batchesPerEpoch / o.accumulate));
  const trainer = new IBQTrainer({
    config: o.config, backend: o.backend, seed: o.seed, perceptual: o.perceptual, accumulate: o.accumulate, gan: o.gan, stepsPerEpoch, precision: o.precision,
    dataParallel: dp,
  });
  const globalBatch = o.batchSize * ranks;
  let position: Partial<LoaderPosition> = {};
  if (o.resume) {
    // Rank 0 reads the checkpoint (the run folder need not be on a shared file system) and synchronize() hands its state to the others.
    let from: SavedPosition = {};
    if (root) {
      if (!existsSync(checkpoint)) throw new Error(`--resume: no checkpoint in ${o.out} (expected ${checkpoint})`);
      const state = await trainer.load(checkpoint);
      from = { ...((state.loader as LoaderPosition | undefined) ?? {}), globalBatch: state.globalBatch as number | undefined, ranks: state.ranks as number | undefined };
    }
    const resumed = await sharedResumePosition(dp, from, o.batchSize);
    position = resumed.position;
    if (root) {
      if (resumed.notice) io.err(resumed.notice);
      io.err(`resumed from ${checkpoint} at step ${trainer.step}${ranks > 1 ? ` on ${ranks} ranks` : ''}`);
    }
  } else if (root) {
    writeFileAtomicSync(join(o.out, 'config.yaml'), o.configText);
  }
  // DDP's start: every rank takes rank 0's weights (and, after a resume, its whole state).
  await trainer.synchronize();

  const usage = new UsageWindow(o.config.n_embed);
  const { stop } = o;
  // Which step the checkpoint on disk holds, for a forced exit's message. A save under way
  // replaces the file (a new inode) only at its final rename.
  const inode = () => (existsSync(checkpoint) ? statSync(checkpoint).ino : -1);
  let saved = o.resume ? { step: trainer.step, inode: inode() } : undefined;
  let saving: number | undefined;
  const stepOnDisk = () => (saving !== undefined && inode() !== (saved?.inode ?? -1) ? saving : saved?.step);
  stop.stopping = 'finishing this step, then writing a checkpoint';
  stop.onForcedExit = () => {
    const step = stepOnDisk();
    return step === undefined ? 'no checkpoint written yet' : `${checkpoint} holds step ${step} (continue with --resume)`;
  };
  stop.discardPartialWritesIn(o.out);

  const startStep = trainer.step;
  const runLog = new RunLog(o.out, o, startStep, root);
  let lastLog: StepLog | null = null;
  let next: LoaderPosition | undefined;
  let stopped = false;
  const save = async () => {
    // Ranks whose weights drifted apart would train on silently; say so (a check of all weights, at checkpoints only).
    if (dp && !(await dp.inSync(trainer.model.parameters())) && root) {
      io.err(`warning: at step ${trainer.step} the ranks' generator weights are not bitwise identical (a non-deterministic kernel?); the checkpoint holds rank 0's`);
    }
    if (!root) return;
    saving = trainer.step;
    await trainer.save(checkpoint, { loader: next ?? position, seed: o.seed, globalBatch, ranks });
    saved = { step: saving, inode: inode() };
    saving = undefined;
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
      const { secs, rate, eta } = runLog.progress(done);
      const scalars: Record<string, number> = {
        total_loss: log.total_loss, reconstruct_loss: log.reconstruct_loss, perceptual_loss: log.perceptual_loss, nll_loss: log.nll_loss,
        codebook_quant_loss: log.codebook_quant_loss, codebook_entropy_loss: log.codebook_entropy_loss,
        codebook_sample_entropy_loss: log.codebook_sample_entropy_loss, codebook_avg_entropy_loss: log.codebook_avg_entropy_loss,
        g_loss: log.g_loss, disc_loss: log.disc_loss, logits_real: log.logits_real, logits_fake: log.logits_fake,
        lecam_loss: log.lecam_loss, disc_factor: log.disc_factor, lr: log.lr, codebook_usage: usage.usage(),
        ...(trainer.scaler ? { loss_scale: log.loss_scale } : {}),
      };
      runLog.record(done, log.epoch, secs, scalars);
      if (root) io.status(`step ${done}/${o.steps}  ${rate.toFixed(2)} steps/s  ETA ${eta.toFixed(0)}s  `
        + `loss ${fmt(log.total_loss)}  L1 ${fmt(log.reconstruct_loss)}  quant ${fmt(log.codebook_quant_loss)}  `
        + `entropy ${fmt(log.codebook_entropy_loss)}  usage ${(100 * usage.usage()).toFixed(1)}%`);
      if (root && o.imageEvery > 0 && done % o.imageEvery === 0) await writeTrainingGrid(trainer, shape, batch.images, join(o.out, 'images', `step_${String(done).padStart(7, '0')}.png`));
      if (o.checkpointEvery > 0 && done % o.checkpointEvery === 0) await save();
      if (runLog.finished(done, secs)) break;
      stopped = await stopAfterStep(stop, dp);
      if (stopped) break;
    }
  } catch (e) {
    io.status('');
    if (e instanceof NonFiniteLossError) io.err(`${e.message} (${checkpoint})`);
    throw e;
  } finally {
    runLog.close();
    await loader.close();
  }
  io.status('');
  await save();
  return { trainer, stepsThisSession: trainer.step - startStep, seconds: runLog.seconds(), interrupted: stopped, lastLog, checkpoint };
}

/** Inputs (left) beside reconstructions (right), one row per image (up to 8). */
async function writeTrainingGrid(trainer: IBQTrainer, shape: number[], images: Float32Array, path: string): Promise<void> {
  const [b, , h, w] = shape;
  await writeReconstructionGrid(trainer.model, images, Math.min(b, 8), h, w, path, 2);
}
