// The batch loader: seeded shuffling per epoch, decoding and transforms ahead of the
// consumer (a worker pool for file datasets, asynchronous prefetch otherwise), float32
// batches [B, 3, H, W] in [-1, 1], corrupt files skipped and reported, resumable.
//
// Order and content are a pure function of (dataset, seed, epoch, position): the epoch's
// permutation comes from (seed, epoch), RandomCrop's numbers from (seed, epoch, item), and
// items are taken strictly in permutation order whatever order the workers finish in. A
// corrupt item is skipped and its batch filled from the next items of the order, so later
// batches shift by one item; `Batch.next` records the exact position (including that shift)
// to resume from.

import { ImageDecodeError } from './errors.js';
import { applyTransform, toFloat, type TransformSpec } from './pixels.js';
import { defaultWorkerCount, DecodePool } from './pool.js';
import { permutation, uniformAt } from './rng.js';
import type { ImageDataset } from './datasets/types.js';

export interface LoaderOptions {
  batchSize: number;
  /** Per-item transform; default none (then every item must already have the same size). */
  transform?: TransformSpec;
  /** 'chw' (default): [B, 3, H, W]; 'hwc': [B, H, W, 3]. */
  layout?: 'chw' | 'hwc';
  /** Shuffle each epoch (default true). False: dataset order. */
  shuffle?: boolean;
  seed?: number;
  /** Drop an incomplete last batch (default: true when shuffling, false otherwise). */
  dropLast?: boolean;
  /**
   * Decode workers for file-backed datasets (those with pathOf). Default: defaultWorkerCount()
   * (1-2). 0: decode on this thread (sharp still decodes on libuv's threads). Datasets without
   * files (IDX, CIFAR) are always read on this thread.
   */
  workers?: number;
  /** Batches prepared ahead of the consumer (default 2). */
  prefetch?: number;
  /** Called for each skipped item. Default: one line on stderr. */
  onSkip?: (item: SkippedItem) => void;
  /**
   * Data-parallel sharding: of each global batch of batchSize x count consecutive items of the
   * epoch's order, this process reads the rank-th slice of batchSize (so the processes together
   * read each item once per epoch, and their batches together are what one process with
   * batchSize x count would read). Batch indices count global batches; an incomplete last
   * global batch is dropped.
   */
  shard?: Shard;
}

export interface SkippedItem {
  epoch: number;
  /** Dataset index. */
  index: number;
  path?: string;
  reason: string;
}

export interface SkipSummary {
  /** Skips counted (an item skipped in two epochs counts twice). */
  count: number;
  /** Distinct items, with how many times each was skipped. */
  items: { index: number; path?: string; reason: string; times: number }[];
}

/** Where a loader stands: the next batch of an epoch and the position in the epoch's order. */
export interface LoaderPosition {
  epoch: number;
  /** Index of the next batch within the epoch. */
  batch: number;
  /** Index into the epoch's order of the next item to read. */
  cursor: number;
}

export interface Batch {
  /** [size, 3, H, W] (or [size, H, W, 3]) float32 in [-1, 1]. */
  images: Float32Array;
  /** Class labels; -1 where the dataset has none. */
  labels: Int32Array;
  /** Dataset indices of the items. */
  indices: Int32Array;
  size: number;
  height: number;
  width: number;
  channels: 3;
  layout: 'chw' | 'hwc';
  epoch: number;
  /** Batch index within the epoch. */
  batch: number;
  /** The position to resume from after this batch. */
  next: LoaderPosition;
}

/** A data-parallel rank's part of the data: `rank` of `count` processes. */
export interface Shard {
  rank: number;
  count: number;
}

export function checkShard(who: string, shard: Shard, dropLast: boolean): void {
  const { rank, count } = shard;
  if (!(Number.isInteger(count) && count >= 1 && Number.isInteger(rank) && rank >= 0 && rank < count)) {
    throw new Error(`${who}: bad shard rank ${rank} of ${count}`);
  }
  if (count > 1 && !dropLast) throw new Error(`${who}: sharding needs dropLast (every rank must get a full batch)`);
}

/**
 * What one rank reads of an epoch's order: of each global batch (batchSize x count consecutive
 * items), the rank-th slice of batchSize; an incomplete last global batch is dropped. The ranks'
 * batches together are one process's batches of batchSize x count, each item read once.
 */
/** Batches one process reads per epoch: under sharding only whole global batches, else per dropLast. */
export function batchesPerEpoch(n: number, batchSize: number, shard: Shard, dropLast: boolean): number {
  if (shard.count > 1) return Math.floor(n / (batchSize * shard.count));
  return dropLast ? Math.floor(n / batchSize) : Math.ceil(n / batchSize);
}

export function shardOrder(all: Uint32Array, batchSize: number, shard: Shard): Uint32Array {
  const { rank, count } = shard;
  if (count === 1) return all;
  const global = batchSize * count;
  const batches = Math.floor(all.length / global);
  const mine = new Uint32Array(batches * batchSize);
  for (let j = 0; j < batches; j++) mine.set(all.subarray(j * global + rank * batchSize, j * global + (rank + 1) * batchSize), j * batchSize);
  return mine;
}

type ItemResult =
  | { ok: true; data: Float32Array; height: number; width: number; label: number }
  | { ok: false; reason: string; path?: string; fatal?: Error };

function reasonOf(e: unknown): string {
  if (e instanceof ImageDecodeError) return e.reason;
  return e && typeof e === 'object' && 'message' in e ? String((e as Error).message) : String(e);
}

export class BatchLoader {
  readonly batchSize: number;
  readonly transform: TransformSpec;
  readonly layout: 'chw' | 'hwc';
  readonly shuffle: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  readonly prefetch: number;
  readonly shard: Shard;
  private readonly onSkip: (item: SkippedItem) => void;
  private pool: DecodePool | null = null;
  private readonly workers: number;
  private readonly skips = new Map<number, { index: number; path?: string; reason: string; times: number }>();
  private skipCount = 0;
  private closed = false;

  constructor(readonly dataset: ImageDataset, options: LoaderOptions) {
    if (!(Number.isInteger(options.batchSize) && options.batchSize >= 1)) {
      throw new Error(`BatchLoader: batchSize must be a positive integer, got ${options.batchSize}`);
    }
    this.batchSize = options.batchSize;
    this.transform = options.transform ?? {};
    this.layout = options.layout ?? 'chw';
    this.shuffle = options.shuffle ?? true;
    this.seed = options.seed ?? 0;
    this.dropLast = options.dropLast ?? this.shuffle;
    this.prefetch = Math.max(1, options.prefetch ?? 2);
    this.shard = options.shard ?? { rank: 0, count: 1 };
    checkShard('BatchLoader', this.shard, this.dropLast);
    this.onSkip = options.onSkip ?? ((s) => {
      process.stderr.write(`data: skipped item ${s.index}${s.path ? ` (${s.path})` : ''}: ${s.reason}\n`);
    });
    this.workers = dataset.pathOf ? (options.workers ?? defaultWorkerCount()) : 0;
    if (!(Number.isInteger(this.workers) && this.workers >= 0)) throw new Error(`BatchLoader: bad workers ${options.workers}`);
  }

  /** Nominal batches per epoch (before any skip). */
  get batchesPerEpoch(): number {
    return batchesPerEpoch(this.dataset.length, this.batchSize, this.shard, this.dropLast);
  }

  /** The dataset indices this process reads in an epoch, in reading order (its shard's slices of the global order). */
  order(epoch: number): Uint32Array {
    const n = this.dataset.length;
    const all = this.shuffle ? permutation(n, this.seed, 0x73687566 /* 'shuf' */, epoch) : Uint32Array.from({ length: n }, (_, i) => i);
    return shardOrder(all, this.batchSize, this.shard);
  }

  /** RandomCrop's (h_start, w_start) for an item of an epoch. */
  cropNumbers(epoch: number, index: number): [number, number] {
    return [uniformAt(this.seed, 0x63726f70 /* 'crop' */, epoch, index, 0), uniformAt(this.seed, 0x63726f70, epoch, index, 1)];
  }

  private startItem(index: number, epoch: number): Promise<ItemResult> {
    const u = this.transform.crop === 'random' ? this.cropNumbers(epoch, index) : undefined;
    const ds = this.dataset;
    if (this.workers > 0 && ds.pathOf) {
      if (!this.pool) this.pool = new DecodePool(this.workers);
      let path: string;
      try {
        path = ds.pathOf(index);
      } catch (e) {
        return Promise.resolve({ ok: false, reason: reasonOf(e) });
      }
      const label = ds.labelOf?.(index) ?? -1;
      return this.pool.run({ path, transform: this.transform, u, layout: this.layout }).then(
        (r): ItemResult => ({ ok: true, data: r.data, height: r.height, width: r.width, label }),
        // A file that cannot be decoded is skipped; a dead worker is fatal.
        (e): ItemResult => ({ ok: false, reason: reasonOf(e), path, fatal: e instanceof ImageDecodeError ? undefined : (e as Error) }),
      );
    }
    const path = ds.pathOf?.(index);
    return Promise.resolve()
      .then(() => ds.get(index))
      .then(
        (s): ItemResult => {
          const t = applyTransform({ data: s.image, height: s.height, width: s.width, channels: 3 }, this.transform, u);
          return { ok: true, data: toFloat(t.data, t.height, t.width, 3, this.layout), height: t.height, width: t.width, label: s.label ?? -1 };
        },
        (e): ItemResult => ({ ok: false, reason: reasonOf(e), path }),
      )
      .catch((e): ItemResult => ({ ok: false, reason: reasonOf(e), path }));
  }

  private recordSkip(epoch: number, index: number, r: { reason: string; path?: string; fatal?: Error }): void {
    if (r.fatal) throw new Error(`BatchLoader: ${r.fatal.message}`, { cause: r.fatal });
    this.skipCount++;
    const prev = this.skips.get(index);
    if (prev) prev.times++;
    else this.skips.set(index, { index, path: r.path, reason: r.reason, times: 1 });
    this.onSkip({ epoch, index, path: r.path, reason: r.reason });
  }

  private assemble(items: { data: Float32Array; height: number; width: number; label: number; index: number }[], epoch: number, batch: number, cursor: number): Batch {
    const { height, width } = items[0];
    const per = 3 * height * width;
    const images = new Float32Array(items.length * per);
    const labels = new Int32Array(items.length);
    const indices = new Int32Array(items.length);
    items.forEach((it, k) => {
      images.set(it.data, k * per);
      labels[k] = it.label;
      indices[k] = it.index;
    });
    return {
      images, labels, indices, size: items.length, height, width, channels: 3, layout: this.layout, epoch, batch,
      next: { epoch, batch: batch + 1, cursor },
    };
  }

  /**
   * The batches of one epoch, from batch `from.batch` (default 0) at order position
   * `from.cursor` (default batch * batchSize, exact when nothing before it was skipped; pass
   * a saved `Batch.next` for an exact resume).
   */
  async *epoch(epoch: number, from: { batch?: number; cursor?: number } = {}): AsyncGenerator<Batch> {
    if (this.closed) throw new Error('BatchLoader: closed');
    const B = this.batchSize;
    const order = this.order(epoch);
    const n = order.length;
    let batchIndex = from.batch ?? 0;
    let issued = from.cursor ?? batchIndex * B;
    const windowSize = this.prefetch * B;
    const pending: { pos: number; index: number; result: Promise<ItemResult> }[] = [];
    const fill = (): void => {
      while (pending.length < windowSize && issued < n) {
        const index = order[issued];
        pending.push({ pos: issued, index, result: this.startItem(index, epoch) });
        issued++;
      }
    };
    let items: { data: Float32Array; height: number; width: number; label: number; index: number }[] = [];
    let size: [number, number] | null = null;
    let cursor = issued;
    fill();
    while (pending.length > 0) {
      const head = pending.shift()!;
      fill();
      const r = await head.result;
      cursor = head.pos + 1;
      if (!r.ok) {
        this.recordSkip(epoch, head.index, r);
        continue;
      }
      if (size === null) size = [r.height, r.width];
      else if (r.height !== size[0] || r.width !== size[1]) {
        throw new Error(
          `BatchLoader: item ${head.index} is ${r.height}x${r.width} but the batch is ${size[0]}x${size[1]}; ` +
            'give a transform with a crop (or resize to a fixed size) so that items can be batched',
        );
      }
      items.push({ data: r.data, height: r.height, width: r.width, label: r.label, index: head.index });
      if (items.length === B) {
        yield this.assemble(items, epoch, batchIndex, cursor);
        items = [];
        batchIndex++;
      }
    }
    if (items.length > 0 && !this.dropLast) yield this.assemble(items, epoch, batchIndex, cursor);
  }

  /**
   * Batches across epochs from a position (default: epoch 0, batch 0), for `epochs` epochs
   * counted from the starting one (default: without end).
   */
  async *iterate(from: Partial<LoaderPosition> = {}, epochs = Infinity): AsyncGenerator<Batch> {
    const first = from.epoch ?? 0;
    for (let e = first; e < first + epochs; e++) {
      const start = e === first ? { batch: from.batch, cursor: from.cursor } : {};
      yield* this.epoch(e, start);
    }
  }

  /** Skipped items so far. */
  skipSummary(): SkipSummary {
    return { count: this.skipCount, items: [...this.skips.values()].sort((a, b) => a.index - b.index).map((x) => ({ ...x })) };
  }

  /** Stops the decode workers. */
  async close(): Promise<void> {
    this.closed = true;
    const p = this.pool;
    this.pool = null;
    if (p) await p.close();
  }
}
