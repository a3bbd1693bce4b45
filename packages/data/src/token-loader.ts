// The token batch loader: a seeded shuffle across all shards per epoch, a random choice among
// an item's stored views (image / mirror / ten crops), and batches read ahead of the consumer
// with asynchronous positioned reads. Order and content are a pure function of (dataset,
// seed, epoch, position), as BatchLoader's, so a resumed run reads the same batches.

import { type LoaderPosition, type Shard, batchesPerEpoch, checkShard, shardOrder } from './loader.js';
import { permutation, uniformAt } from './rng.js';
import type { TokenShardDataset } from './datasets/tokens.js';

export interface TokenLoaderOptions {
  batchSize: number;
  /** Shuffle each epoch across every shard (default true). False: dataset order. */
  shuffle?: boolean;
  seed?: number;
  /** Drop an incomplete last batch (default: true when shuffling, false otherwise). */
  dropLast?: boolean;
  /** Batches read ahead of the consumer (default 2). */
  prefetch?: number;
  /** Which stored view of an item: 'random' (default when shuffling) or a fixed index (default 0 otherwise). */
  view?: 'random' | number;
  /** Data-parallel sharding of each global batch, as BatchLoader's `shard`. */
  shard?: Shard;
}

export interface TokenBatch {
  /** [size, h * w] token indices, raster order. */
  tokens: Int32Array;
  /** Class labels; -1 where the shards have none. */
  labels: Int32Array;
  /** Dataset indices and the view read for each. */
  indices: Int32Array;
  views: Int32Array;
  size: number;
  height: number;
  width: number;
  epoch: number;
  batch: number;
  /** The position to resume from after this batch. */
  next: LoaderPosition;
}

export class TokenLoader {
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  readonly prefetch: number;
  readonly view: 'random' | number;
  readonly shard: Shard;

  constructor(readonly dataset: TokenShardDataset, o: TokenLoaderOptions) {
    if (!(Number.isInteger(o.batchSize) && o.batchSize >= 1)) throw new Error(`TokenLoader: batchSize must be a positive integer, got ${o.batchSize}`);
    this.batchSize = o.batchSize;
    this.shuffle = o.shuffle ?? true;
    this.seed = o.seed ?? 0;
    this.dropLast = o.dropLast ?? this.shuffle;
    this.prefetch = Math.max(1, o.prefetch ?? 2);
    this.view = o.view ?? (this.shuffle ? 'random' : 0);
    this.shard = o.shard ?? { rank: 0, count: 1 };
    checkShard('TokenLoader', this.shard, this.dropLast);
    if (this.view !== 'random' && !(Number.isInteger(this.view) && this.view >= 0 && this.view < dataset.views)) {
      throw new Error(`TokenLoader: view ${this.view} outside 0..${dataset.views - 1}`);
    }
  }

  get batchesPerEpoch(): number {
    return batchesPerEpoch(this.dataset.length, this.batchSize, this.shard, this.dropLast);
  }

  /** The dataset indices this process reads in an epoch, in reading order (its shard's slices). */
  order(epoch: number): Uint32Array {
    const n = this.dataset.length;
    const all = this.shuffle ? permutation(n, this.seed, 0x746f6b73 /* 'toks' */, epoch) : Uint32Array.from({ length: n }, (_, i) => i);
    return shardOrder(all, this.batchSize, this.shard);
  }

  /** The view read for an item in an epoch. */
  viewOf(epoch: number, index: number): number {
    if (this.view !== 'random') return this.view;
    return Math.floor(uniformAt(this.seed, 0x76696577 /* 'view' */, epoch, index) * this.dataset.views);
  }

  /** The batches of one epoch from batch `from` (default 0). */
  async *epoch(epoch: number, from = 0): AsyncGenerator<TokenBatch> {
    const order = this.order(epoch);
    const B = this.batchSize;
    const count = this.batchesPerEpoch;
    const read = (b: number): Promise<TokenBatch> => {
      const idx = order.subarray(b * B, Math.min(order.length, (b + 1) * B));
      const indices = Int32Array.from(idx);
      const views = Int32Array.from(idx, (i) => this.viewOf(epoch, i));
      return this.dataset.readBatch(indices, views).then(({ tokens, labels }) => ({
        tokens, labels, indices, views, size: indices.length, height: this.dataset.height, width: this.dataset.width, epoch, batch: b,
        next: { epoch, batch: b + 1, cursor: Math.min(order.length, (b + 1) * B) },
      }));
    };
    const pending: Promise<TokenBatch>[] = [];
    let issued = from;
    const fill = () => {
      while (pending.length < this.prefetch && issued < count) {
        const p = read(issued++);
        p.catch(() => undefined); // a consumer that stops early leaves reads behind; their errors surface only when awaited
        pending.push(p);
      }
    };
    fill();
    while (pending.length > 0) {
      const head = pending.shift()!;
      fill();
      yield await head;
    }
  }

  /** Batches across epochs from a position (default epoch 0, batch 0), for `epochs` epochs (default without end). */
  async *iterate(from: Partial<LoaderPosition> = {}, epochs = Infinity): AsyncGenerator<TokenBatch> {
    const first = from.epoch ?? 0;
    for (let e = first; e < first + epochs; e++) yield* this.epoch(e, e === first ? (from.batch ?? 0) : 0);
  }
}
