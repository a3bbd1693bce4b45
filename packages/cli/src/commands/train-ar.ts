// `ibq train-ar --config AR.yaml (--tokens SHARDS | --data DIR --tokenizer-ckpt T) [options]`:
// trains the class-conditional GPT with the reference's recipe, from pre-extracted token
// shards (the fast path) or from images tokenized on the fly by the frozen tokenizer (the
// reference's exact recipe: SmallestMaxSize + RandomCrop, no flip).

import { existsSync, readFileSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { type ArConfig, ArConfigError, type ArPrecision, loadArConfig } from '@ibq/ar';
import type { DataParallel } from '@ibq/mpi';
import { trainTransform, TokenShardDataset } from '@ibq/data';
import { ConfigError, type IBQConfig, type IBQTokenizer, loadConfig, parseConfig, resolvePrecision } from '@ibq/ibq';
import { type ArDataSource, runArTraining } from '../ar-training.js';
import { type Command, EXIT_OK, type OptionValues, UsageError } from '../command.js';
import type { Io } from '../io.js';
import { MPI_OPTIONS, MPI_USAGE, announceRankDevice, underMpiLaunch } from '../mpi-launch.js';
import { watchStopSignals } from '../stop.js';
import { DEVICE_OPTION, existingFile, positiveInt, positiveIntOrZero, requiredString } from '../options.js';
import { buildTokenizer, openBackend } from '../tokenizer.js';
import { openImageSource } from './tokenize.js';

function readArConfig(path: string): { config: ArConfig; text: string } {
  existingFile(path, 'config');
  const text = readFileSync(path, 'utf8');
  try {
    return { config: loadArConfig(text, path), text };
  } catch (e) {
    if (e instanceof ArConfigError) throw new UsageError(e.message);
    throw e;
  }
}

/**
 * The tokenizer's config: --tokenizer-config, else the AR config's first_stage_config (the
 * reference keeps the tokenizer's init_args there), else the one the shards' index names.
 */
function tokenizerConfig(values: OptionValues, ar: ArConfig, arPath: string, fromIndex?: string): { config: IBQConfig; path: string } | null {
  try {
    if (typeof values['tokenizer-config'] === 'string') {
      const p = existingFile(values['tokenizer-config'], 'tokenizer config');
      return { config: loadConfig(p), path: p };
    }
    if (ar.firstStage) {
      const where = `${arPath} (model.init_args.first_stage_config.params)`;
      return { config: parseConfig(JSON.stringify({ model: { init_args: ar.firstStage } }), where), path: where };
    }
    if (fromIndex && existsSync(fromIndex)) return { config: loadConfig(fromIndex), path: fromIndex };
  } catch (e) {
    if (e instanceof ConfigError) throw new UsageError(e.message);
    throw e;
  }
  return null;
}

export const trainArCommand: Command = {
  name: 'train-ar',
  summary: 'train the class-conditional AR transformer on token shards or images',
  usage: `usage: ibq train-ar --config AR.yaml (--tokens SHARDS | --data DIR --tokenizer-ckpt T) [options]

The reference's recipe: AdamW (0.9, 0.95), warm-up / plateau / linear-decay LR and cosine
weight decay per step (written into every parameter group, as the reference does), global
gradient clipping, label dropout 0.1 to the null class, the config's dropouts; the
cross-entropy is computed in chunks, so the full logits never exist at once. The run folder
gets checkpoint.safetensors (weights under the official transformer.* names, optimizer and EMA
state; atomically, every N steps and on Ctrl-C / SIGTERM), metrics.jsonl, TensorBoard events,
config.yaml, samples/step_*.png (a row of samples per class, with CFG) and, with --val-tokens,
the validation loss each epoch. The official YAML works with only the data path changed.
  --config AR.yaml      the AR config (the reference's YAML schema)
  --tokens SHARDS       token shards written by 'ibq tokenize' (random view per item and epoch)
  --val-tokens SHARDS   held-out token shards: validation loss and perplexity every epoch
  --data D              or images (folder, fashion-mnist or cifar10 with --data-root), tokenized
                        on the fly with --tokenizer-ckpt (SmallestMaxSize + RandomCrop, no flip)
  --tokenizer-ckpt T    the tokenizer's weights (for --data, and for the sample grids)
  --tokenizer-config C  its config (default: the AR config's first_stage_config, or the shards' index)
  --device D            auto (default), webgpu, cpu or reference
  --out RUN             the run folder (default runs/<config name>)
  --resume              continue the run in --out from its checkpoint
  --steps N             stop after N optimizer steps in all (default: the schedule's length,
                        trainer.max_epochs x steps per epoch, over which LR and weight decay run)
  --batch-size N        sequences per micro-batch (default: the config's data batch_size)
  --accumulate K        micro-batches per optimizer step (default 1)
  --ema [D]             keep an EMA of the weights (LlamaGen's --ema), decay 0.9999
  --seed S              initialisation, data order, dropout and label dropout (default 0)
  --precision P         32, or 16-mixed (f16 autocast with loss scaling, webgpu with shader-f16)
  --cfg-scale S         guidance of the sample grids (default 2)
  --checkpoint-every N (default 1000)   --sample-every N (default 1000)   --log-every N (default 10)
${MPI_USAGE}`,
  options: {
    ...DEVICE_OPTION, config: { type: 'string' }, tokens: { type: 'string' }, 'val-tokens': { type: 'string' }, data: { type: 'string' },
    'data-root': { type: 'string' }, 'tokenizer-ckpt': { type: 'string' }, 'tokenizer-config': { type: 'string' }, out: { type: 'string' },
    resume: { type: 'boolean' }, steps: { type: 'string' }, 'batch-size': { type: 'string' }, accumulate: { type: 'string' }, ema: { type: 'boolean' },
    seed: { type: 'string' }, precision: { type: 'string' }, 'cfg-scale': { type: 'string' }, 'checkpoint-every': { type: 'string' },
    'sample-every': { type: 'string' }, 'log-every': { type: 'string' }, ...MPI_OPTIONS,
  },
  async run(values, io: Io) {
    return underMpiLaunch(values, io, (rankIo, dp) => trainAr(values, rankIo, dp));
  },
};

async function trainAr(values: OptionValues, io: Io, dp: DataParallel | null): Promise<number> {
  const ranks = dp?.size ?? 1;
  const configPath = requiredString(values, 'config');
  const { config: ar, text } = readArConfig(configPath);
  const hasTokens = typeof values.tokens === 'string';
  const hasData = typeof values.data === 'string';
  if (hasTokens === hasData) throw new UsageError('give either --tokens SHARDS or --data D (with --tokenizer-ckpt)');
  if (hasData && typeof values['tokenizer-ckpt'] !== 'string') throw new UsageError('--data needs --tokenizer-ckpt (images are tokenized on the fly)');
  if (hasData && values['val-tokens'] !== undefined) throw new UsageError('--val-tokens goes with --tokens (tokenize the held-out images with ibq tokenize)');
  const ckpt = typeof values['tokenizer-ckpt'] === 'string' ? existingFile(values['tokenizer-ckpt'], 'tokenizer checkpoint') : null;
  let train: TokenShardDataset | null = null;
  let val: TokenShardDataset | null = null;
  const backend = await openBackend(values.device as string | undefined);
  announceRankDevice(dp, backend);
  let tokenizer: IBQTokenizer | null = null;
  const stop = watchStopSignals(io, 'finishing this step, then writing a checkpoint');
  try {
    let data: ArDataSource;
    let items: number;
    if (hasTokens) {
      train = await TokenShardDataset.open(existingFile(values.tokens as string, 'token shards'));
      if (typeof values['val-tokens'] === 'string') val = await TokenShardDataset.open(existingFile(values['val-tokens'], 'validation token shards'));
      const nEmbed = train.index?.tokenizer.nEmbed;
      if (nEmbed !== undefined && nEmbed !== ar.gpt.vocab_size) {
        throw new UsageError(`the shards hold tokens of a ${nEmbed}-code tokenizer; the config's vocab_size is ${ar.gpt.vocab_size}`);
      }
      data = { kind: 'tokens', train, ...(val ? { val } : {}) };
      items = train.length;
      const idx = train.index?.tokenizer;
      const tc = tokenizerConfig(values, ar, configPath, idx?.config);
      const tckpt = ckpt ?? (idx && existsSync(idx.checkpoint) ? idx.checkpoint : null);
      if (tc && tckpt) tokenizer = await buildTokenizer(tc.config, tckpt, { configPath: tc.path }, io);
      else io.err('no tokenizer found (--tokenizer-ckpt, or the one the shards name): no sample grids');
    } else {
      const tc = tokenizerConfig(values, ar, configPath);
      if (!tc) throw new UsageError('--data: the AR config has no first_stage_config; give --tokenizer-config');
      tokenizer = await buildTokenizer(tc.config, ckpt!, { configPath: tc.path }, io);
      const src = await openImageSource(values, 'train');
      const R = tc.config.ddconfig.resolution;
      data = src.source === 'fashion-mnist' || src.source.startsWith('cifar10')
        ? { kind: 'images', dataset: src.dataset, transform: { resize: R, crop: 'random' }, tokenizer }
        : { kind: 'images', dataset: src.dataset, transform: trainTransform(R), tokenizer };
      items = src.dataset.length;
    }
    const t = ar.train;
    const batchSize = positiveInt(values, 'batch-size', t.batch_size);
    const accumulate = positiveInt(values, 'accumulate', 1);
    const perEpoch = Math.max(1, Math.floor(Math.floor(items / (batchSize * ranks)) / accumulate));
    const scheduleSteps = (t.max_epochs ?? 1) * perEpoch;
    const steps = positiveInt(values, 'steps', scheduleSteps);
    const out = typeof values.out === 'string' ? values.out : join('runs', basename(configPath, extname(configPath)));
    let precision: ArPrecision;
    try {
      const r = resolvePrecision(t.precision, values.precision as string | undefined, backend);
      precision = r.precision;
      if (r.notice) io.err(r.notice);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    const cfgScale = values['cfg-scale'] === undefined ? 2 : Number(values['cfg-scale']);
    if (!(cfgScale >= 1)) throw new UsageError(`--cfg-scale: expected a number >= 1, got '${String(values['cfg-scale'])}'`);
    io.err(`training the AR model on ${backend.name} in precision ${precision}: ${items} ${hasTokens ? 'token grids' : 'images'}, batch ${batchSize}${ranks > 1 ? ` x ${ranks} ranks` : ''} x ${accumulate}, `
      + `${steps} steps (${perEpoch} per epoch, schedule over ${scheduleSteps}) -> ${out}`);
    const r = await runArTraining({
      config: ar.gpt, recipe: { ...t, gradient_clip_val: t.gradient_clip_val ?? 1 }, configText: text, data, backend, out, resume: values.resume === true,
      seed: positiveIntOrZero(values, 'seed'), batchSize, accumulate, steps, scheduleSteps, checkpointEvery: positiveInt(values, 'checkpoint-every', 1000),
      sampleEvery: positiveInt(values, 'sample-every', 1000), logEvery: positiveInt(values, 'log-every', 10), ema: values.ema ? 0.9999 : null,
      precision, tokenizer, cfgScale, stop, dataParallel: dp,
    }, io);
    const last = r.lastLog ? `; last loss ${r.lastLog.loss.toFixed(4)}` : '';
    io.out(`${r.interrupted ? 'interrupted' : 'finished'} at step ${r.trainer.step} after ${r.seconds.toFixed(0)} s${last}; checkpoint ${r.checkpoint}`);
    if (r.interrupted) io.err(`${stop.requested ? stop.reason : 'stopped by a signal to another rank'}: checkpoint written; continue with the same command and --resume`);
    r.trainer.dispose();
    return r.interrupted ? stop.exitCode() : EXIT_OK;
  } finally {
    stop.dispose();
    tokenizer?.dispose();
    await train?.close();
    await val?.close();
    backend.destroy();
  }
}
