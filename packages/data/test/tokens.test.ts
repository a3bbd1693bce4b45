// Token shards as `ibq tokenize` writes them (index, views, int64 labels, finished-shard
// records), the token loader (shuffle across shards, view choice, resume, prefetch) and the
// stored views (flip, ten crops).
import { mkdirSync, mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  augmentViews, readNpy, readShardRecord, shardStem, TokenLoader, TokenShardDataset, writeIndexedShard, writeTokenIndex,
  type TokenBatch, type TokenShardIndex,
} from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'ibq-data-tokens-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const H = 2, W = 3, V = 2;
/** Token value of (item, view, position): identifies all three. */
const tok = (item: number, view: number, p: number) => item * 100 + view * 10 + p;

async function makeFolder(name: string, sizes: number[]): Promise<string> {
  const root = join(dir, name);
  mkdirSync(root, { recursive: true });
  const index: TokenShardIndex = {
    format: 'ibq-token-shards', version: 1,
    tokenizer: { config: 'c.yaml', configSha256: 'x', checkpoint: 'c.ckpt', checkpointSha256: 'y', nEmbed: 1024, resolution: 8 },
    grid: [H, W], augmentation: { kind: 'flip', views: V }, dataset: { source: 'test', split: 'train', items: sizes.reduce((a, b) => a + b, 0) },
    shardItems: Math.max(...sizes), shards: sizes.length,
  };
  await writeTokenIndex(root, index);
  let item = 0;
  for (let k = 0; k < sizes.length; k++) {
    const n = sizes[k];
    const t = new Int32Array(n * V * H * W);
    const labels: number[] = [];
    for (let r = 0; r < n; r++, item++) {
      labels.push(item % 7);
      for (let v = 0; v < V; v++) for (let p = 0; p < H * W; p++) t[(r * V + v) * H * W + p] = tok(item, v, p);
    }
    await writeIndexedShard(root, k, t, labels, V, H, W, { first: item - n, end: item, rows: n, skipped: [] });
  }
  return root;
}

async function collect(it: AsyncIterable<TokenBatch>): Promise<TokenBatch[]> {
  const out: TokenBatch[] = [];
  for await (const b of it) out.push(b);
  return out;
}

describe('indexed token shards', () => {
  it('reads views of items across shards, sync and async; labels are int64 on disk', async () => {
    const root = await makeFolder('a', [5, 5, 3]);
    expect((await readNpy(join(root, `${shardStem(0)}.labels.npy`))).dtype).toBe('int64');
    expect((await readNpy(join(root, `${shardStem(2)}.npy`))).shape).toEqual([3, V, H, W]);
    expect(readShardRecord(root, 1)).toEqual({ first: 5, end: 10, rows: 5, skipped: [] });
    const ds = await TokenShardDataset.open(root);
    expect([ds.length, ds.views, ds.height, ds.width]).toEqual([13, V, H, W]);
    expect(ds.index?.augmentation.kind).toBe('flip');
    expect([...ds.get(7, 1).tokens]).toEqual([710, 711, 712, 713, 714, 715]);
    expect(ds.get(7).label).toBe(0);
    const a = await ds.readBatch([12, 0, 6], [1, 0, 1]);
    expect([...a.tokens]).toEqual([...ds.getBatch([12, 0, 6], [1, 0, 1]).tokens]);
    expect(a.tokens[0]).toBe(1210);
    expect([...a.labels]).toEqual([5, 0, 6]);
    expect(() => ds.get(0, 2)).toThrow(/view 2/);
    await ds.close();
  });

  it('a folder with an unfinished shard is refused, naming the shard', async () => {
    const root = await makeFolder('b', [4, 4]);
    unlinkSync(join(root, `${shardStem(1)}.json`));
    await expect(TokenShardDataset.open(root)).rejects.toThrow(/1 of 2 shards are not finished \(shard-00001\)/);
  });
});

describe('TokenLoader', () => {
  it('shuffles across shards, picks views at random, is a pure function of the seed and resumes exactly', async () => {
    const ds = await TokenShardDataset.open(await makeFolder('c', [6, 6, 6]));
    const loader = new TokenLoader(ds, { batchSize: 4, seed: 3 });
    expect(loader.batchesPerEpoch).toBe(4);
    const e0 = await collect(loader.epoch(0));
    expect(e0.length).toBe(4);
    const seen = e0.flatMap((b) => [...b.indices]);
    expect(new Set(seen).size).toBe(16);
    // items from all three shards in the first epoch's first two batches, not shard by shard
    expect(new Set(seen.slice(0, 8).map((i) => Math.floor(i / 6))).size).toBeGreaterThan(1);
    for (const b of e0) {
      for (let k = 0; k < b.size; k++) {
        expect(b.tokens[k * H * W]).toBe(tok(b.indices[k], b.views[k], 0));
        expect(b.labels[k]).toBe(b.indices[k] % 7);
      }
    }
    const views = e0.flatMap((b) => [...b.views]);
    expect(views).toContain(0);
    expect(views).toContain(1);
    const again = await collect(new TokenLoader(ds, { batchSize: 4, seed: 3, prefetch: 1 }).epoch(0));
    expect(again.map((b) => [...b.tokens])).toEqual(e0.map((b) => [...b.tokens]));
    const e1 = await collect(loader.epoch(1));
    expect(e1.map((b) => [...b.indices])).not.toEqual(e0.map((b) => [...b.indices]));
    // resume from a saved position: the same batches as the uninterrupted run
    const all: TokenBatch[] = [];
    for await (const b of loader.iterate()) {
      all.push(b);
      if (all.length === 7) break;
    }
    const resumed = [];
    for await (const b of loader.iterate(all[2].next)) {
      resumed.push(b);
      if (resumed.length === 4) break;
    }
    expect(resumed.map((b) => [...b.tokens])).toEqual(all.slice(3, 7).map((b) => [...b.tokens]));
    const fixed = await collect(new TokenLoader(ds, { batchSize: 5, shuffle: false }).epoch(0));
    expect(fixed.map((b) => b.size)).toEqual([5, 5, 5, 3]);
    expect(fixed.every((b) => [...b.views].every((v) => v === 0))).toBe(true);
    await ds.close();
  });
});

describe('TokenLoader sharded', () => {
  it('two ranks read the two halves of each global batch, with the same views', async () => {
    const ds = await TokenShardDataset.open(await makeFolder('d', [6, 6, 6]));
    const one = await collect(new TokenLoader(ds, { batchSize: 4, seed: 5 }).epoch(1));
    const ranks = [0, 1].map((rank) => new TokenLoader(ds, { batchSize: 2, seed: 5, shard: { rank, count: 2 } }));
    expect(ranks[0].batchesPerEpoch).toBe(4);
    const parts = await Promise.all(ranks.map(async (l) => collect(l.epoch(1))));
    expect(one.map((b) => [...b.tokens])).toEqual(one.map((_, j) => [...parts[0][j].tokens, ...parts[1][j].tokens]));
    const tail = await collect(ranks[1].epoch(1, 3));
    expect(tail.map((b) => [...b.indices])).toEqual([[...parts[1][3].indices]]);
    await ds.close();
  });
});

describe('augmentViews', () => {
  // A 3-channel S x S image whose value says (channel, y, x).
  const S = 5;
  const img = Float32Array.from({ length: 3 * S * S }, (_, i) => i);
  const at = (c: number, y: number, x: number) => c * S * S + y * S + x;

  it('flip stores the image then its mirror', () => {
    const v = augmentViews(img, 1, S, 'flip', S);
    expect(v.length).toBe(2 * 3 * S * S);
    expect(Array.from(v.subarray(0, 75))).toEqual(Array.from(img));
    expect(v[75 + at(1, 2, 0)]).toBe(img[at(1, 2, 4)]);
    expect(v[75 + at(2, 4, 3)]).toBe(img[at(2, 4, 1)]);
  });

  it("ten-crop matches torchvision's TenCrop: five_crop of the image, then of its mirror", () => {
    const R = 2;
    const v = augmentViews(img, 1, S, 'ten-crop', R);
    expect(v.length).toBe(10 * 3 * R * R);
    const view = (k: number, c: number, y: number, x: number) => v[k * 3 * R * R + c * R * R + y * R + x];
    const mirror = (c: number, y: number, x: number) => img[at(c, y, S - 1 - x)];
    // tl, tr, bl, br, centre at int(round((5 - 2) / 2)) = 2 (round half to even)
    const offsets = [[0, 0], [0, 3], [3, 0], [3, 3], [2, 2]];
    offsets.forEach(([y0, x0], k) => {
      for (let c = 0; c < 3; c++) for (let y = 0; y < R; y++) for (let x = 0; x < R; x++) {
        expect(view(k, c, y, x)).toBe(img[at(c, y0 + y, x0 + x)]);
        expect(view(5 + k, c, y, x)).toBe(mirror(c, y0 + y, x0 + x));
      }
    });
  });
});
