// `ibq tokenize --config T.yaml --ckpt T --data DIR|fashion-mnist|cifar10 --out SHARDS`: runs
// the tokenizer once over a data set and writes token shards (int32 [rows, views, h, w],
// int64 labels) with an index, as LlamaGen's extract_codes_c2i.py does for its AR training.
// Shards are written whole and atomically; a re-run skips finished ones; --shard i/n splits
// the shards between processes; corrupt images are skipped, counted and reported.

import { createHash } from 'node:crypto';
import { createReadStream, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  augmentViews, BatchLoader, Cifar10Dataset, type ImageDataset, ImageFolderDataset, openMnist, readShardRecord, readTokenIndex,
  type TokenAugmentation, type TokenShardIndex, type TokenShardRecord, viewCount, writeIndexedShard, writeTokenIndex,
} from '@ibq/data';
import { type IBQConfig, type IBQTokenizer, latentSize } from '@ibq/ibq';
import { dispose, noGrad, tensor } from '@ibq/tensor';
import { type Command, EXIT_OK, type OptionValues, UsageError } from '../command.js';
import type { Io } from '../io.js';
import { type StopController, watchStopSignals } from '../stop.js';
import { existingFile, loadTokenizer, positiveInt, requiredString, TOKENIZER_OPTIONS } from '../tokenizer.js';

/** Shards stay under this size. */
const SHARD_BYTES = 256 * 1024 * 1024;

export interface ImageSource {
  dataset: ImageDataset;
  /** What index.json records: 'fashion-mnist', 'cifar10:<root>' or the folder. */
  source: string;
  split: string;
}

/**
 * --data: 'fashion-mnist' (Debian's files, 28x28), 'cifar10' (with --data-root DIR) or an image
 * folder in ImageNet layout (sub-folders are classes).
 */
export async function openImageSource(values: OptionValues, split: 'train' | 'test'): Promise<ImageSource> {
  const data = requiredString(values, 'data');
  if (data === 'fashion-mnist') return { dataset: await openMnist('fashion-mnist', split), source: data, split };
  if (data === 'cifar10') {
    const root = values['data-root'];
    if (typeof root !== 'string') throw new UsageError('--data cifar10 needs --data-root DIR (the folder of data_batch_*.bin)');
    existingFile(root, 'CIFAR-10 folder');
    return { dataset: await Cifar10Dataset.open(root, split), source: `cifar10:${root}`, split };
  }
  existingFile(data, 'data folder');
  return { dataset: await ImageFolderDataset.open(data), source: data, split: 'folder' };
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Items [start, start + length) of a dataset, as a dataset. */
function subset(ds: ImageDataset, start: number, length: number): ImageDataset {
  return {
    length,
    get: (i) => ds.get(start + i),
    ...(ds.pathOf ? { pathOf: (i: number) => ds.pathOf!(start + i) } : {}),
    ...(ds.labelOf ? { labelOf: (i: number) => ds.labelOf!(start + i) } : {}),
  };
}

function parseShardOption(v: unknown): { part: number; parts: number } {
  if (v === undefined) return { part: 0, parts: 1 };
  const m = typeof v === 'string' ? /^(\d+)\/(\d+)$/.exec(v) : null;
  const part = m ? Number(m[1]) : NaN;
  const parts = m ? Number(m[2]) : NaN;
  if (!(parts >= 1 && part >= 0 && part < parts)) throw new UsageError(`--shard: expected i/n with 0 <= i < n, got '${String(v)}'`);
  return { part, parts };
}

/** The index fields that must agree for a re-run to continue a folder. */
function sameIndex(a: TokenShardIndex, b: TokenShardIndex): string | null {
  const checks: [string, unknown, unknown][] = [
    ['tokenizer config', a.tokenizer.configSha256, b.tokenizer.configSha256],
    ['tokenizer checkpoint', a.tokenizer.checkpointSha256, b.tokenizer.checkpointSha256],
    ['augmentation', JSON.stringify(a.augmentation), JSON.stringify(b.augmentation)],
    ['data', `${a.dataset.source} ${a.dataset.split} (${a.dataset.items} items)`, `${b.dataset.source} ${b.dataset.split} (${b.dataset.items} items)`],
    ['items per shard', a.shardItems, b.shardItems],
  ];
  for (const [what, x, y] of checks) if (x !== y) return `its ${what} is ${String(x)}, this run's is ${String(y)}`;
  return null;
}

/** A folder that holds tokens of another tokenizer, augmentation or data set. */
export class TokenFolderMismatchError extends Error {
  constructor(readonly folder: string, readonly why: string) {
    super(`${folder} holds tokens of another run: ${why}`);
    this.name = 'TokenFolderMismatchError';
  }
}

export interface TokenizeOptions {
  model: IBQTokenizer;
  config: IBQConfig;
  configPath: string;
  configSha256: string;
  ckptPath: string;
  ckptSha256: string;
  dataset: ImageDataset;
  source: string;
  split: string;
  out: string;
  kind: TokenAugmentation['kind'];
  cropRange?: number;
  batchSize: number;
  /** Items per shard (default: as many as fit in 256 MiB). */
  shardItems?: number;
  part: number;
  parts: number;
  stop: StopController;
  deviceName: string;
}

export interface TokenizeResult {
  /** Shards written by this call; shards finished in the folder (all parts, all runs) of `shards`. */
  written: number;
  finished: number;
  shards: number;
  /** Images stored and corrupt images skipped, over the finished shards. */
  rows: number;
  corrupt: number;
  views: number;
  seconds: number;
  interrupted: boolean;
}

/** Writes the unfinished shards of this part (index first, each shard whole); `ibq tokenize` and the demo. */
export async function tokenizeToShards(o: TokenizeOptions, io: Io): Promise<TokenizeResult> {
  const { model, config, dataset, source, split: dsSplit, out, kind, cropRange, batchSize, part, parts, stop } = o;
    const R = config.ddconfig.resolution;
    const g = latentSize(config);
    const views = viewCount(kind);
    const S = kind === 'ten-crop' ? Math.floor(R * cropRange!) : R;
    const N = dataset.length;
    const shardItems = o.shardItems ?? Math.max(1, Math.floor(SHARD_BYTES / (views * g * g * 4)));
    const index: TokenShardIndex = {
      format: 'ibq-token-shards', version: 1,
      tokenizer: {
        config: o.configPath, configSha256: o.configSha256, checkpoint: o.ckptPath, checkpointSha256: o.ckptSha256, nEmbed: config.n_embed, resolution: R,
      },
      grid: [g, g],
      augmentation: { kind, ...(cropRange !== undefined ? { cropRange } : {}), views },
      dataset: { source, split: dsSplit, items: N, ...(dataset.classes ? { classes: dataset.classes } : {}) },
      shardItems, shards: Math.ceil(N / shardItems),
    };
    mkdirSync(out, { recursive: true });
    const existing = readTokenIndex(out);
    if (existing) {
      const why = sameIndex(existing, index);
      if (why) throw new TokenFolderMismatchError(out, why);
    } else await writeTokenIndex(out, index);

    const mine = Array.from({ length: index.shards }, (_, k) => k).filter((k) => k % parts === part);
    const todo = mine.filter((k) => !readShardRecord(out, k));
    io.err(`tokenize: ${N} images (${source}, ${dsSplit}) -> ${index.shards} shards of ${shardItems} items, ${views} view(s) of ${g}x${g} tokens `
      + `(${kind}); ${mine.length - todo.length} of this process's ${mine.length} shards already finished; ${o.deviceName}`);
    const t0 = Date.now();
    let done = 0;
    const total = todo.reduce((a, k) => a + Math.min(shardItems, N - k * shardItems), 0);
    let written = 0;
    for (const k of todo) {
      const first = k * shardItems;
      const end = Math.min(N, first + shardItems);
      const skipped: TokenShardRecord['skipped'] = [];
      const loader = new BatchLoader(subset(dataset, first, end - first), {
        batchSize, shuffle: false, dropLast: false, transform: { resize: S, crop: 'center' },
        onSkip: (s) => {
          skipped.push({ index: first + s.index, ...(s.path ? { path: s.path } : {}), reason: s.reason });
          io.err(`skipped ${s.path ?? `item ${first + s.index}`}: ${s.reason}`);
        },
      });
      const tokens = new Int32Array((end - first) * views * g * g);
      const labels: number[] = [];
      try {
        for await (const batch of loader.epoch(0)) {
          await stop.boundary();
          if (stop.requested) break;
          const x = augmentViews(batch.images, batch.size, S, kind, R);
          const t = tensor(x, [batch.size * views, 3, R, R]);
          const enc = noGrad(() => model.encode(t));
          tokens.set((await enc.indices.data()) as Int32Array, labels.length * views * g * g);
          dispose([t, enc.indices, enc.zq, enc.losses, enc.z]);
          for (const l of batch.labels) labels.push(l);
          done += batch.size;
          const secs = (Date.now() - t0) / 1000;
          io.status(`shard ${k + 1}/${index.shards}  ${done}/${total} images  ${(done / secs).toFixed(1)}/s  ETA ${((total - done) / Math.max(done / secs, 1e-9)).toFixed(0)}s`);
        }
      } finally {
        await loader.close();
      }
      if (stop.requested) break;
      done += skipped.length;
      const rows = labels.length;
      await writeIndexedShard(out, k, tokens.subarray(0, rows * views * g * g), labels, views, g, g, { first, end, rows, skipped });
      written++;
    }
    io.status('');
    // Totals over every finished shard (this run's and earlier ones).
    let rows = 0;
    let corrupt = 0;
    let finished = 0;
    for (let k = 0; k < index.shards; k++) {
      const r = readShardRecord(out, k);
      if (!r) continue;
      finished++;
      rows += r.rows;
      corrupt += r.skipped.length;
    }
    return { written, finished, shards: index.shards, rows, corrupt, views, seconds: (Date.now() - t0) / 1000, interrupted: stop.requested };
}

export const tokenizeCommand: Command = {
  name: 'tokenize',
  summary: 'run a tokenizer over a data set once and write token shards for train-ar',
  usage: `usage: ibq tokenize --config T.yaml --ckpt T --data DIR|fashion-mnist|cifar10 --out SHARDS [options]

Encodes every image (shorter side resized, centre crop to the tokenizer's resolution) and
writes SHARDS/shard-NNNNN.npy (int32 [rows, views, h, w]), shard-NNNNN.labels.npy (int64),
shard-NNNNN.json (marks the shard finished, lists skipped images) and index.json (the
tokenizer, its config and checkpoint hashes, the grid, the augmentation). A re-run skips
finished shards; a corrupt image is skipped and reported, never fatal.
  --data D            an image folder (ImageNet layout), fashion-mnist, or cifar10 (with --data-root DIR)
  --split S           train (default) or test, for fashion-mnist and cifar10
  --out SHARDS        the output folder
  --flip              store each image and its mirror (2 views, as LlamaGen without --ten-crop)
  --ten-crop R        LlamaGen's ten crops: centre crop to floor(resolution x R) (e.g. 1.1), then the
                      4 corner and centre crops at the resolution, and their mirrors (10 views)
  --shard i/n         only the shards k with k mod n = i (several processes on one data set)
  --shard-items N     items per shard (default: as many as fit in 256 MiB)
  --config C.yaml     tokenizer config (the reference's YAML schema)
  --ckpt W            weights: an official .ckpt (EMA copies unless --raw), an AR .ckpt, or .safetensors
  --device D          auto (default: webgpu, else cpu, else reference), webgpu, cpu or reference
  --batch-size N      images per forward pass (default 32)
  --ema | --raw       which copy of an official tokenizer checkpoint to use (default --ema)`,
  options: {
    ...TOKENIZER_OPTIONS, data: { type: 'string' }, 'data-root': { type: 'string' }, split: { type: 'string' }, out: { type: 'string' },
    flip: { type: 'boolean' }, 'ten-crop': { type: 'string' }, shard: { type: 'string' }, 'shard-items': { type: 'string' },
  },
  async run(values, io) {
    const out = requiredString(values, 'out');
    const split = (values.split ?? 'train') as string;
    if (split !== 'train' && split !== 'test') throw new UsageError(`--split: expected train or test, got '${split}'`);
    if (values.flip && values['ten-crop'] !== undefined) throw new UsageError('--flip and --ten-crop exclude each other (ten-crop already holds the mirrors)');
    let cropRange: number | undefined;
    if (values['ten-crop'] !== undefined) {
      cropRange = Number(values['ten-crop']);
      if (!(cropRange >= 1)) throw new UsageError(`--ten-crop: expected a crop range >= 1 (e.g. 1.1), got '${String(values['ten-crop'])}'`);
    }
    const kind: TokenAugmentation['kind'] = cropRange !== undefined ? 'ten-crop' : values.flip ? 'flip' : 'none';
    const { part, parts } = parseShardOption(values.shard);
    const batchSize = positiveInt(values, 'batch-size', 32);
    const configPath = requiredString(values, 'config');
    const ckptPath = requiredString(values, 'ckpt');
    const { dataset, source, split: dsSplit } = await openImageSource(values, split);
    const { model, config, backend } = await loadTokenizer(values, io);
    const stop = watchStopSignals(io, 'finishing this batch; the unfinished shard is not written, finished ones are kept');
    try {
      if (dataset.length === 0) throw new UsageError(`--data ${String(values.data)}: no images found`);
      const r = await tokenizeToShards({
        model, config, configPath, configSha256: createHash('sha256').update(readFileSync(configPath)).digest('hex'), ckptPath,
        ckptSha256: await sha256File(ckptPath), dataset, source, split: dsSplit, out, kind, cropRange, batchSize,
        shardItems: values['shard-items'] === undefined ? undefined : positiveInt(values, 'shard-items', 1), part, parts, stop, deviceName: backend.name,
      }, io).catch((e) => {
        if (e instanceof TokenFolderMismatchError) throw new UsageError(`--out ${e.message}; choose another --out`);
        throw e;
      });
      const { written, finished, shards: planned, rows, corrupt, views, seconds: secs } = r;
      io.out(`${stop.requested ? 'interrupted: ' : ''}wrote ${written} shards in ${secs.toFixed(0)} s; ${finished}/${planned} finished in ${out}: `
        + `${rows} images x ${views} view(s), ${corrupt} corrupt image(s) skipped`);
      if (finished < planned && !stop.requested) io.out(`the other shards belong to other --shard parts; run them to finish the folder`);
      if (stop.requested) io.err(`${stop.reason}: finished shards are kept; run the same command again to continue`);
      return stop.requested ? stop.exitCode() : EXIT_OK;
    } finally {
      stop.dispose();
      model.dispose();
      backend.destroy();
    }
  },
};

