// An AR training run for people (`ibq train-ar`, the demo's second stage): token batches from
// shards (or images tokenized on the fly, the reference's recipe), a run folder with
// checkpoint.safetensors (every N steps and when stopped), metrics.jsonl, TensorBoard events,
// sample grids of every class, validation loss on held-out tokens each epoch, --resume.
// Under MPI (`dataParallel`) as the tokenizer's run (training.ts): per-rank slices of each
// global batch, rank 0 alone writes, validates and draws samples, a stop on any rank stops all.

import { appendFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  BatchLoader, floatToImage, type ImageDataset, type LoaderPosition, tileImages, TokenLoader, type TokenShardDataset, type TransformSpec, writePng,
} from '@ibq/data';
import { ArTrainer, type ArPrecision, type ArRecipe, type ArStepLog, type GPT, type GPTConfig, NonFiniteArLossError, sampleTokens, type TokenMicroBatch } from '@ibq/ar';
import type { IBQTokenizer } from '@ibq/ibq';
import type { Backend } from '@ibq/kernels';
import type { DataParallel } from '@ibq/mpi';
import { dispose, noGrad, tensor } from '@ibq/tensor';
import type { Io } from './io.js';
import { type SavedPosition, sharedResumePosition } from './mpi-launch.js';
import type { StopController } from './stop.js';
import { RunLog, stopAfterStep } from './run-log.js';
import { formatScalar } from './training.js';

/** Where training tokens come from. */
export type ArDataSource =
  | { kind: 'tokens'; train: TokenShardDataset; val?: TokenShardDataset }
  /** The reference's recipe: images, transformed (random crop), tokenized each step by the frozen tokenizer. */
  | { kind: 'images'; dataset: ImageDataset; transform?: TransformSpec; tokenizer: IBQTokenizer };

export interface ArRunOptions {
  config: GPTConfig;
  recipe: ArRecipe;
  /** The config's text, copied into the run folder. */
  configText: string;
  data: ArDataSource;
  backend: Backend;
  out: string;
  resume: boolean;
  seed: number;
  batchSize: number;
  accumulate: number;
  /** Stop after this many optimizer steps in all, counting resumed ones. */
  steps: number;
  /** The length of the LR / weight-decay schedule (T = epochs x steps per epoch); default `steps`. */
  scheduleSteps?: number;
  /** Stop after this many seconds of this session (the schedule still spans `steps`). */
  seconds?: number;
  checkpointEvery: number;
  sampleEvery: number;
  logEvery: number;
  ema: number | null;
  precision: ArPrecision;
  /** Decodes token grids for the sample grids; without it no grids are written. */
  tokenizer?: IBQTokenizer | null;
  /** Classifier-free guidance scale of the sample grids. */
  cfgScale?: number;
  stop: StopController;
  /** The ranks of an MPI launch; batchSize is then per rank. */
  dataParallel?: DataParallel | null;
}

export interface ArRunResult {
  trainer: ArTrainer;
  stepsThisSession: number;
  seconds: number;
  interrupted: boolean;
  lastLog: ArStepLog | null;
  /** Mean validation cross-entropy of the last validation pass (NaN when none ran). */
  valLoss: number;
  checkpoint: string;
}

/** Mean cross-entropy (nats per token) over a token set, in order, without dropout. */
export async function validationLoss(trainer: ArTrainer, data: TokenShardDataset, batchSize: number, stop?: StopController): Promise<number> {
  const loader = new TokenLoader(data, { batchSize, shuffle: false, dropLast: false, view: 0 });
  let sum = 0;
  let count = 0;
  for await (const b of loader.epoch(0)) {
    const r = await trainer.evalLoss({ tokens: b.tokens, labels: b.labels, size: b.size });
    sum += r.sum;
    count += r.count;
    if (stop) {
      await stop.boundary();
      if (stop.requested) break;
    }
  }
  return sum / count;
}

/** A grid of `perClass` samples of each of the first `classes` classes (one row per class). */
export async function writeSampleGrid(
  model: GPT, tokenizer: IBQTokenizer, path: string, o: { classes: number; perClass: number; cfgScale: number; seed: number; temperature?: number },
): Promise<void> {
  const N = o.classes * o.perClass;
  const classes = Int32Array.from({ length: N }, (_, i) => Math.floor(i / o.perClass));
  const indices = Int32Array.from({ length: N }, (_, i) => i % o.perClass);
  const images = await decodeSamples(model, tokenizer, classes, indices, { cfgScale: o.cfgScale, seed: o.seed, temperature: o.temperature ?? 1 });
  const R = tokenizer.config.ddconfig.resolution;
  const tiles = Array.from({ length: N }, (_, i) => floatToImage(images, R, R, 'chw', i * 3 * R * R));
  await writePng(path, tileImages(tiles, { columns: o.perClass }));
}

/** Samples with CFG and decodes them: float CHW images [N, 3, R, R] (not clamped). */
export async function decodeSamples(
  model: GPT, tokenizer: IBQTokenizer, classes: Int32Array, indices: Int32Array, o: { cfgScale: number; seed: number; temperature: number; topK?: number; topP?: number },
): Promise<Float32Array> {
  const wasTraining = model.training;
  model.eval();
  try {
    const tokens = await sampleTokens(model, { classes, indices }, { cfgScale: o.cfgScale, temperature: o.temperature, topK: o.topK ?? 0, topP: o.topP ?? 1, seed: o.seed });
    const side = Math.round(Math.sqrt(model.config.block_size));
    const t = tensor(tokens, [classes.length, side, side], { dtype: 'i32' });
    const x = noGrad(() => tokenizer.decodeIndices(t));
    const data = Float32Array.from(await x.data());
    dispose([t, x]);
    return data;
  } finally {
    if (wasTraining) model.train();
  }
}

/** Trains until `steps`, the time budget or a signal; the trainer stays alive for evaluation. */
export async function runArTraining(o: ArRunOptions, io: Io): Promise<ArRunResult> {
  const dp = o.dataParallel ?? null;
  const ranks = dp?.size ?? 1;
  const root = !dp || dp.isRoot;
  const shard = ranks > 1 ? { shard: { rank: dp!.rank, count: ranks } } : {};
  if (root) mkdirSync(join(o.out, 'samples'), { recursive: true });
  const checkpoint = join(o.out, 'checkpoint.safetensors');
  const L = o.config.block_size;
  const d = o.data;
  const tokenLoader = d.kind === 'tokens' ? new TokenLoader(d.train, { batchSize: o.batchSize, seed: o.seed, ...shard }) : null;
  const imageLoader = d.kind === 'images'
    ? new BatchLoader(d.dataset, { batchSize: o.batchSize, transform: d.transform, shuffle: true, seed: o.seed, onSkip: (s) => io.err(`skipped ${s.path ?? `item ${s.index}`}: ${s.reason}`), ...shard })
    : null;
  if (d.kind === 'tokens' && d.train.height * d.train.width !== L) {
    throw new Error(`the token shards hold ${d.train.height}x${d.train.width} grids; the config's block_size is ${L}`);
  }
  const batchesPerEpoch = (tokenLoader ?? imageLoader)!.batchesPerEpoch;
  const stepsPerEpoch = Math.max(1, Math.floor(batchesPerEpoch / o.accumulate));
  const trainer = new ArTrainer({
    config: o.config, recipe: o.recipe, backend: o.backend, stepsPerEpoch, totalSteps: o.scheduleSteps ?? o.steps, seed: o.seed, accumulate: o.accumulate,
    ema: o.ema, precision: o.precision, dataParallel: dp,
  });
  const globalBatch = o.batchSize * ranks;
  let position: Partial<LoaderPosition> = {};
  if (o.resume) {
    // Rank 0 reads the checkpoint; synchronize() below hands its state to the others.
    let from: SavedPosition = {};
    if (root) {
      if (!existsSync(checkpoint)) throw new Error(`--resume: no checkpoint in ${o.out} (expected ${checkpoint})`);
      const state = await trainer.load(checkpoint);
      from = { ...((state.loader as LoaderPosition | undefined) ?? {}), globalBatch: state.globalBatch as number | undefined, ranks: state.ranks as number | undefined };
    }
    const resumed = await sharedResumePosition(dp, from, o.batchSize);
    position = resumed.position;
    if (resumed.notice) io.err(resumed.notice);
    io.err(`resumed from ${checkpoint} at step ${trainer.step}${ranks > 1 ? ` on ${ranks} ranks` : ''}`);
  } else if (root) writeFileSync(join(o.out, 'config.yaml'), o.configText);
  // DDP's start: every rank takes rank 0's weights (and, after a resume, its whole state).
  await trainer.synchronize();

  const { stop } = o;
  let savedStep: number | undefined = o.resume ? trainer.step : undefined;
  stop.stopping = 'finishing this step, then writing a checkpoint';
  stop.onForcedExit = () => (savedStep === undefined ? 'no checkpoint written yet' : `${checkpoint} holds step ${savedStep}`);
  const startStep = trainer.step;
  const runLog = new RunLog(o.out, o, startStep, root);
  let lastLog: ArStepLog | null = null;
  let valLoss = NaN;
  let next: LoaderPosition | undefined;
  let stopped = false;
  const save = async () => {
    // Ranks whose weights drifted apart would train on silently; say so (a check of all weights, at checkpoints only).
    if (dp && !(await dp.inSync(trainer.model.parameters())) && root) {
      io.err(`warning: at step ${trainer.step} the ranks' weights are not bitwise identical (a non-deterministic kernel?); the checkpoint holds rank 0's`);
    }
    if (!root) return;
    const step = trainer.step;
    await trainer.save(checkpoint, { loader: next ?? position, seed: o.seed, globalBatch, ranks });
    savedStep = step;
  };
  const grid = async (step: number) => {
    if (!o.tokenizer || !root) return;
    await writeSampleGrid(trainer.model, o.tokenizer, join(o.out, 'samples', `step_${String(step).padStart(7, '0')}.png`), {
      classes: Math.min(o.config.class_num, 10), perClass: 8, cfgScale: o.cfgScale ?? 2, seed: o.seed,
    });
  };
  const validate = async (epoch: number) => {
    if (d.kind !== 'tokens' || !d.val || !root) return;
    valLoss = await validationLoss(trainer, d.val, o.batchSize);
    appendFileSync(runLog.metricsFile, `${JSON.stringify({ step: trainer.step, epoch, 'val/loss': valLoss, 'val/perplexity': Math.exp(valLoss) })}\n`);
    runLog.tb!.scalars(trainer.step, { 'val/loss': valLoss, 'val/perplexity': Math.exp(valLoss) });
    io.err(`epoch ${epoch}: validation loss ${valLoss.toFixed(4)} (perplexity ${Math.exp(valLoss).toFixed(1)}) at step ${trainer.step}`);
  };

  /** Token micro-batches, from shards or from images through the tokenizer. */
  async function* batches(): AsyncGenerator<TokenMicroBatch & { next: LoaderPosition }> {
    if (tokenLoader) {
      for await (const b of tokenLoader.iterate(position)) yield { tokens: b.tokens, labels: b.labels, size: b.size, next: b.next };
      return;
    }
    const tok = (d as Extract<ArDataSource, { kind: 'images' }>).tokenizer;
    for await (const b of imageLoader!.iterate(position)) {
      const x = tensor(b.images, [b.size, 3, b.height, b.width]);
      const enc = noGrad(() => tok.encode(x));
      const tokens = Int32Array.from((await enc.indices.data()) as Int32Array);
      dispose([x, enc.indices, enc.zq, enc.losses, enc.z]);
      if (tokens.length !== b.size * L) throw new Error(`the tokenizer gives ${tokens.length / b.size} tokens per image; the config's block_size is ${L}`);
      yield { tokens, labels: b.labels, size: b.size, next: b.next };
    }
  }

  try {
    const micro: TokenMicroBatch[] = [];
    for await (const b of batches()) {
      if (b.labels.some((l) => l < 0 || l >= o.config.class_num)) {
        throw new Error(`a label outside 0..${o.config.class_num - 1} (class_num): an unlabelled data set or the wrong config`);
      }
      micro.push(b);
      next = b.next;
      if (micro.length < o.accumulate) continue;
      const epochBefore = trainer.epoch;
      const log = await trainer.trainStep(micro.splice(0));
      if (log.skipped) io.err(`step ${log.step}: non-finite loss, update skipped (${trainer.nonFiniteInRow} in a row)`);
      if (log.overflowed) io.err(`step ${log.step}: f16 gradients overflowed at loss scale ${log.loss_scale}: update skipped, scale now ${trainer.scaler!.scale}`);
      lastLog = log;
      const done = trainer.step;
      const { secs, rate, eta } = runLog.progress(done);
      const scalars: Record<string, number> = {
        loss: log.loss, lr: log.lr, weight_decay: log.weight_decay, grad_norm: log.grad_norm, ...(trainer.scaler ? { loss_scale: log.loss_scale } : {}),
      };
      runLog.record(done, log.epoch, secs, scalars);
      io.status(`step ${done}/${o.steps}  ${(rate * globalBatch * o.accumulate * L).toFixed(0)} tokens/s  ETA ${eta.toFixed(0)}s  `
        + `loss ${formatScalar(log.loss)}  lr ${formatScalar(log.lr)}`);
      if (trainer.epoch > epochBefore) await validate(epochBefore);
      if (o.sampleEvery > 0 && done % o.sampleEvery === 0) await grid(done);
      if (o.checkpointEvery > 0 && done % o.checkpointEvery === 0) await save();
      if (runLog.finished(done, secs)) break;
      stopped = await stopAfterStep(stop, dp);
      if (stopped) break;
    }
  } catch (e) {
    io.status('');
    if (e instanceof NonFiniteArLossError) io.err(`${e.message} (${checkpoint})`);
    throw e;
  } finally {
    runLog.close();
    await imageLoader?.close();
  }
  io.status('');
  await save();
  return { trainer, stepsThisSession: trainer.step - startStep, seconds: runLog.seconds(), interrupted: stopped, lastLog, valLoss, checkpoint };
}
