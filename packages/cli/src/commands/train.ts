// `ibq train --config FILE [--data PATH | fashion-mnist] [--device D] [--out RUN] [--resume]`

import { readFileSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { ImageFolderDataset, type ImageDataset, openMnist, trainTransform } from '@ibq/data';
import { LPIPS, type LpipsWeightsSource, loadLpips, lpipsWeightsAvailable } from '@ibq/eval';
import { ConfigError, type IBQConfig, parseConfig, resolvePrecision } from '@ibq/ibq';
import type { DataParallel } from '@ibq/mpi';
import { type Command, type OptionValues, UsageError } from '../command.js';
import type { Io } from '../io.js';
import { DEVICE_OPTION, existingFile, positiveInt, positiveIntOrZero, requiredString } from '../options.js';
import { openBackend } from '../tokenizer.js';
import { MPI_OPTIONS, MPI_USAGE, announceRankDevice, underMpiLaunch } from '../mpi-launch.js';
import { watchStopSignals } from '../stop.js';
import { runTraining } from '../training.js';

export const TRAIN_OPTIONS = {
  ...DEVICE_OPTION,
  data: { type: 'string' },
  out: { type: 'string' },
  resume: { type: 'boolean' },
  steps: { type: 'string' },
  'batch-size': { type: 'string' },
  accumulate: { type: 'string' },
  seed: { type: 'string' },
  'checkpoint-every': { type: 'string' },
  'image-every': { type: 'string' },
  'log-every': { type: 'string' },
  'lpips-vgg16': { type: 'string' },
  'lpips-heads': { type: 'string' },
  'lpips-from': { type: 'string' },
  precision: { type: 'string' },
  ...MPI_OPTIONS,
} as const;

export const TRAIN_USAGE = `  --data PATH|fashion-mnist  an image folder (ImageNet layout) or Debian's Fashion-MNIST
  --device D           auto (default), webgpu, cpu or reference
  --out RUN            the run folder (default runs/<config name>)
  --resume             continue the run in --out from its checkpoint
  --steps N            optimizer steps in all (default: the config's max_epochs)
  --batch-size N       images per micro-batch (default: the config's data batch_size)
  --accumulate K       micro-batches per optimizer step (default 1)
  --seed S             initialisation, data order and crops (default 0)
  --checkpoint-every N  (default 500)   --image-every N (default 200)   --log-every N (default 10)
  --lpips-vgg16 F --lpips-heads F   torchvision's vgg16 .pth and LPIPS v0.1 vgg.pth, for the perceptual term
  --lpips-from CKPT    or take them from an official tokenizer checkpoint (loss.perceptual_loss.*)
  --precision P        32, or 16-mixed: f16 autocast with loss scaling, on a webgpu device with
                       shader-f16 (default: the config's trainer.precision where the device can, else 32)
${MPI_USAGE}`;

export async function openTrainingData(values: OptionValues, config: IBQConfig): Promise<{ dataset: ImageDataset; transform?: { resize: number; crop: 'random' } }> {
  const data = requiredString(values, 'data');
  const R = config.ddconfig.resolution;
  if (data === 'fashion-mnist') return { dataset: await openMnist('fashion-mnist', 'train', { size: R }) };
  existingFile(data, 'data folder');
  return { dataset: await ImageFolderDataset.open(data), transform: trainTransform(R) as { resize: number; crop: 'random' } };
}

export async function openPerceptual(values: OptionValues, io: Io): Promise<LPIPS | null> {
  const sources: LpipsWeightsSource[] = [];
  if (typeof values['lpips-from'] === 'string') sources.push({ checkpoint: values['lpips-from'] });
  if (typeof values['lpips-vgg16'] === 'string' || typeof values['lpips-heads'] === 'string') {
    if (typeof values['lpips-vgg16'] !== 'string' || typeof values['lpips-heads'] !== 'string') throw new UsageError('--lpips-vgg16 and --lpips-heads go together');
    sources.push({ vgg16: values['lpips-vgg16'], heads: values['lpips-heads'] });
  }
  if (sources.length === 0) {
    io.err('no VGG16 weights given (--lpips-vgg16/--lpips-heads or --lpips-from): training without the perceptual (LPIPS) term');
    return null;
  }
  const found = await lpipsWeightsAvailable(sources);
  if (!found.available) throw new UsageError(`LPIPS weights: ${found.reason}`);
  return loadLpips(found.source);
}

function readConfig(path: string): { config: IBQConfig; text: string } {
  existingFile(path, 'config');
  const text = readFileSync(path, 'utf8');
  try {
    return { config: parseConfig(text, path), text };
  } catch (e) {
    if (e instanceof ConfigError) throw new UsageError(e.message);
    throw e;
  }
}

export const trainCommand: Command = {
  name: 'train',
  summary: 'train an IBQ tokenizer (checkpoints, metrics, TensorBoard, image grids)',
  usage: `usage: ibq train --config FILE --data PATH|fashion-mnist [options]

Runs the reference's training step (discriminator, then generator, then EMA) with the
config's losses and Adam settings. The run folder gets checkpoint.safetensors (written
atomically every N steps and on Ctrl-C), metrics.jsonl, TensorBoard event files
('tensorboard --logdir runs/'), config.yaml and images/step_*.png (inputs beside
reconstructions). The reference's YAML works with only the data path changed.
Ctrl-C (SIGINT) or SIGTERM stops the run after the current step with a checkpoint and
prints the --resume command; a second signal quits at once (the last checkpoint stays
whole). Exit code: 0 finished, 130 stopped by SIGINT, 143 by SIGTERM, 1 failed, 2 bad usage.
  --config FILE        the tokenizer config (the reference's YAML schema)
${TRAIN_USAGE}`,
  options: { ...TRAIN_OPTIONS, config: { type: 'string' } },
  async run(values, io) {
    return underMpiLaunch(values, io, (rankIo, dp) => train(values, rankIo, dp));
  },
};

async function train(values: OptionValues, io: Io, dp: DataParallel | null): Promise<number> {
  const ranks = dp?.size ?? 1;
  const configPath = requiredString(values, 'config');
  const { config, text } = readConfig(configPath);
  const { dataset, transform } = await openTrainingData(values, config);
  const batchSize = positiveInt(values, 'batch-size', config.batch_size);
  const accumulate = positiveInt(values, 'accumulate', 1);
  const perEpoch = Math.max(1, Math.floor(Math.floor(dataset.length / (batchSize * ranks)) / accumulate));
  const steps = positiveInt(values, 'steps', (config.max_epochs ?? 1) * perEpoch);
  const out = typeof values.out === 'string' ? values.out : join('runs', basename(configPath, extname(configPath)));
  const perceptual = await openPerceptual(values, io);
  const backend = await openBackend(values.device as string | undefined);
  announceRankDevice(dp, backend);
  try {
    let precision;
    try {
      const r = resolvePrecision(config.precision, values.precision as string | undefined, backend);
      precision = r.precision;
      if (r.notice) io.err(r.notice);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    io.err(`training on ${backend.name} in precision ${precision}: ${dataset.length} images, batch ${batchSize}${ranks > 1 ? ` x ${ranks} ranks` : ''} x ${accumulate}, ${steps} steps -> ${out}`);
    const stop = watchStopSignals(io, 'finishing this step, then writing a checkpoint');
    try {
      const r = await runTraining({
        config, configText: text, dataset, transform, backend, out, resume: values.resume === true,
        seed: positiveIntOrZero(values, 'seed'), batchSize, accumulate, steps,
        checkpointEvery: positiveInt(values, 'checkpoint-every', 500), imageEvery: positiveInt(values, 'image-every', 200),
        logEvery: positiveInt(values, 'log-every', 10), perceptual, gan: true, precision, stop, dataParallel: dp,
      }, io);
      const where = `at step ${r.trainer.step} after ${r.seconds.toFixed(0)} s; checkpoint ${r.checkpoint}`;
      if (r.interrupted) {
        io.out(`${stop.requested ? stop.reason : 'stopped by a signal to another rank'} ${where}`);
        io.out(`to continue: ${ranks > 1 ? `mpiexec -n ${ranks} ` : ''}${resumeCommand(values, out)}`);
      } else {
        io.out(`finished ${where}`);
      }
      r.trainer.dispose();
      return stop.exitCode();
    } finally {
      stop.dispose();
    }
  } finally {
    perceptual?.dispose();
    backend.destroy();
  }
}

/** This run's command line with --resume (and --out, which the run folder depends on). */
function resumeCommand(values: OptionValues, out: string): string {
  const args = ['ibq', 'train'];
  for (const [name, v] of Object.entries(values)) {
    if (name === 'resume' || v === undefined || v === false) continue;
    for (const one of Array.isArray(v) ? v : [v]) args.push(`--${name}`, ...(one === true ? [] : [String(one)]));
  }
  if (values.out === undefined) args.push('--out', out);
  args.push('--resume');
  return args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\\''")}'`)).join(' ');
}

