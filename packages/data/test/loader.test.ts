import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  applyTransform, BatchLoader, decodeIdx, encodeJpeg, IdxImageDataset, ImageFolderDataset, permutation, toFloat,
  workerSource, writePng, type Batch, type ImageDataset, type SkippedItem,
} from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'ibq-data-loader-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const N_GOOD = 14;
const root = join(dir, 'imgs');
/** Image k: a size and colour that identify it. */
function imageOf(k: number): { data: Uint8Array; height: number; width: number; channels: 3 } {
  const height = 10 + (k % 4);
  const width = 12 + (k % 3);
  const data = new Uint8Array(height * width * 3);
  for (let i = 0; i < height * width; i++) {
    data[i * 3] = k * 10;
    data[i * 3 + 1] = (i * 5) & 255;
    data[i * 3 + 2] = 255 - k;
  }
  return { data, height, width, channels: 3 };
}

beforeAll(async () => {
  for (let k = 0; k < N_GOOD; k++) {
    const cls = `c${k % 3}`;
    mkdirSync(join(root, cls), { recursive: true });
    await writePng(join(root, cls, `img${String(k).padStart(2, '0')}.png`), imageOf(k));
  }
  // A truncated JPEG and random bytes named .png: both must be skipped, not fatal.
  const jpg = await encodeJpeg({ data: new Uint8Array(64 * 64 * 3).fill(90), height: 64, width: 64, channels: 3 });
  writeFileSync(join(root, 'c0', 'img98-truncated.jpg'), jpg.subarray(0, jpg.length >> 1));
  writeFileSync(join(root, 'c1', 'img99-random.png'), Buffer.from(Array.from({ length: 500 }, (_, i) => (i * 31 + 7) & 255)));
});

async function collect(it: AsyncIterable<Batch>, max = Infinity): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of it) {
    out.push(b);
    if (out.length >= max) break;
  }
  return out;
}

describe('BatchLoader', () => {
  it('worker source is plain JavaScript that defines what it runs', () => {
    const src = workerSource();
    expect(() => new Function('require', src)).not.toThrow();
    expect(src).toContain('runFileJob');
  });

  it('batches of float CHW images with labels; corrupt files skipped, counted, reported; workers == in-thread', async () => {
    const ds = await ImageFolderDataset.open(root);
    expect(ds.length).toBe(N_GOOD + 2);
    const results: Record<string, { batches: Batch[]; skipped: SkippedItem[]; summary: ReturnType<BatchLoader['skipSummary']> }> = {};
    for (const workers of [0, 2]) {
      const skipped: SkippedItem[] = [];
      const loader = new BatchLoader(ds, {
        batchSize: 4, transform: { resize: 8, crop: 'random' }, seed: 11, workers, onSkip: (s) => skipped.push(s),
      });
      const batches = await collect(loader.epoch(0));
      results[workers] = { batches, skipped, summary: loader.skipSummary() };
      await loader.close();
    }
    for (const r of Object.values(results)) {
      // 14 good images, batch 4, drop last -> 3 batches; the 2 bad files skipped wherever they fall.
      expect(r.batches.map((b) => b.size)).toEqual([4, 4, 4]);
      for (const b of r.batches) {
        expect(b.images.length).toBe(4 * 3 * 8 * 8);
        expect([b.height, b.width, b.channels, b.layout]).toEqual([8, 8, 3, 'chw']);
        for (const v of b.images) expect(v >= -1 && v <= 1).toBe(true);
        b.indices.forEach((idx, k) => {
          expect(b.labels[k]).toBe(ds.labelOf(idx));
          expect(ds.files[idx]).not.toMatch(/img9[89]/);
        });
      }
      // By the end of the epoch every item was read: both bad files were reported once.
      expect(r.summary.count).toBe(2);
      expect(r.skipped.map((s) => s.path!.replace(/.*\//, '')).sort()).toEqual(['img98-truncated.jpg', 'img99-random.png']);
      expect(r.summary.items.map((s) => s.times)).toEqual([1, 1]);
    }
    expect(results[0].batches.map((b) => [...b.indices])).toEqual(results[2].batches.map((b) => [...b.indices]));
    for (let i = 0; i < results[0].batches.length; i++) {
      expect(Buffer.from(results[0].batches[i].images.buffer).equals(Buffer.from(results[2].batches[i].images.buffer))).toBe(true);
    }
    // (libvips' message text can carry earlier warnings of its thread: compare without it)
    const strip = (x: typeof results[0]['summary']) => ({ count: x.count, items: x.items.map(({ index, path, times }) => ({ index, path, times })) });
    expect(strip(results[0].summary)).toEqual(strip(results[2].summary));
  });

  it('an item equals the transform applied by hand (random crop numbers from the seed)', async () => {
    const ds = await ImageFolderDataset.open(root);
    const loader = new BatchLoader(ds, { batchSize: 2, transform: { resize: 9, crop: 'random', cropSize: [9, 7] }, seed: 3, workers: 1, onSkip: () => {} });
    const [b] = await collect(loader.epoch(5), 1);
    const idx = b.indices[1];
    const k = Number(/img(\d+)/.exec(ds.files[idx])![1]);
    const t = applyTransform(imageOf(k), { resize: 9, crop: 'random', cropSize: [9, 7] }, loader.cropNumbers(5, idx));
    expect([b.height, b.width]).toEqual([9, 7]);
    expect([...b.images.subarray(3 * 9 * 7)]).toEqual([...toFloat(t.data, 9, 7, 3, 'chw')]);
    await loader.close();
  });

  it('the order is a seeded permutation per epoch; the same seed gives the same batches', async () => {
    const ds = await ImageFolderDataset.open(root);
    const make = (seed: number): BatchLoader => new BatchLoader(ds, { batchSize: 3, transform: { resize: 8, crop: 'center' }, seed, workers: 1, onSkip: () => {} });
    const a = make(1);
    const b = make(1);
    const c = make(2);
    expect([...a.order(0)]).toEqual([...permutation(ds.length, 1, 0x73687566, 0)]);
    expect([...a.order(0)]).not.toEqual([...a.order(1)]);
    expect([...a.order(0)]).not.toEqual([...c.order(0)]);
    expect([...a.order(0)].sort((x, y) => x - y)).toEqual(Array.from({ length: ds.length }, (_, i) => i));
    const ba = await collect(a.iterate({}, 2));
    const bb = await collect(b.iterate({}, 2));
    expect(ba.map((x) => [x.epoch, x.batch, ...x.indices])).toEqual(bb.map((x) => [x.epoch, x.batch, ...x.indices]));
    expect(ba.every((x, i) => Buffer.from(x.images.buffer).equals(Buffer.from(bb[i].images.buffer)))).toBe(true);
    expect(new Set(ba.map((x) => x.epoch))).toEqual(new Set([0, 1]));
    await Promise.all([a.close(), b.close(), c.close()]);
  });

  it('resumes exactly from a saved position, skips included', async () => {
    const ds = await ImageFolderDataset.open(root);
    const opts = { batchSize: 3, transform: { resize: 8, crop: 'random' as const }, seed: 9, workers: 1, onSkip: () => {} };
    const full = new BatchLoader(ds, opts);
    const all = await collect(full.iterate({}, 3));
    await full.close();
    for (const cut of [1, 3, 5, all.length - 2]) {
      const resumed = new BatchLoader(ds, opts);
      const rest = await collect(resumed.iterate(all[cut - 1].next, 3 - all[cut - 1].epoch));
      await resumed.close();
      expect(rest.map((x) => [x.epoch, x.batch, ...x.indices])).toEqual(all.slice(cut).map((x) => [x.epoch, x.batch, ...x.indices]));
      expect(rest.every((x, i) => Buffer.from(x.images.buffer).equals(Buffer.from(all[cut + i].images.buffer)))).toBe(true);
    }
    // Starting at (epoch, batch) alone assumes no earlier skip: exact for a clean dataset.
    const clean = new IdxImageDataset(
      decodeIdx(idx3(20)), undefined, {},
    );
    const l1 = new BatchLoader(clean, { batchSize: 4, seed: 4 });
    const whole = await collect(l1.epoch(2));
    const l2 = new BatchLoader(clean, { batchSize: 4, seed: 4 });
    const tail = await collect(l2.epoch(2, { batch: 3 }));
    expect(tail.map((x) => [...x.indices])).toEqual(whole.slice(3).map((x) => [...x.indices]));
  });

  it('shards: the ranks\' batches together are one process\'s global batch, each item once per epoch', async () => {
    const ds = new IdxImageDataset(decodeIdx(idx3(23)), undefined, {});
    const one = new BatchLoader(ds, { batchSize: 6, seed: 9 });
    const ranks = [0, 1, 2].map((rank) => new BatchLoader(ds, { batchSize: 2, seed: 9, shard: { rank, count: 3 } }));
    expect(ranks.map((l) => l.batchesPerEpoch)).toEqual([3, 3, 3]);
    for (const epoch of [0, 1]) {
      const whole = await collect(one.epoch(epoch));
      const parts = await Promise.all(ranks.map((l) => collect(l.epoch(epoch))));
      expect(parts.map((p) => p.map((b) => b.batch))).toEqual([[0, 1, 2], [0, 1, 2], [0, 1, 2]]);
      expect(whole.map((b) => [...b.indices])).toEqual(whole.map((_, j) => parts.flatMap((p) => [...p[j].indices])));
      // Resuming a rank at a global batch picks up its own slice.
      const tail = await collect(ranks[1].epoch(epoch, { batch: 2 }));
      expect(tail.map((b) => [...b.indices])).toEqual([[...parts[1][2].indices]]);
    }
    expect(() => new BatchLoader(ds, { batchSize: 2, shard: { rank: 3, count: 3 } })).toThrow(/bad shard rank 3 of 3/);
    expect(() => new BatchLoader(ds, { batchSize: 2, shuffle: false, shard: { rank: 0, count: 2 } })).toThrow(/needs dropLast/);
  });

  it('in-memory datasets load on this thread; no shuffle keeps dataset order and the last partial batch', async () => {
    const ds = new IdxImageDataset(decodeIdx(idx3(10)), undefined, { size: 6 });
    const loader = new BatchLoader(ds, { batchSize: 4, shuffle: false, layout: 'hwc' });
    expect(loader.batchesPerEpoch).toBe(3);
    const bs = await collect(loader.epoch(0));
    expect(bs.map((b) => [...b.indices])).toEqual([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]);
    expect(bs[0].layout).toBe('hwc');
    const s = ds.getSync(5);
    expect([...bs[1].images.subarray(6 * 6 * 3, 2 * 6 * 6 * 3)]).toEqual([...toFloat(s.image, 6, 6, 3, 'hwc')]);
    expect([...bs[0].labels]).toEqual([-1, -1, -1, -1]);
  });

  it('a dataset whose get() fails is skipped per item; mismatched sizes without a crop are an error', async () => {
    const flaky: ImageDataset = {
      length: 6,
      async get(i) {
        if (i === 2) throw new Error('boom');
        return { image: new Uint8Array(2 * 2 * 3).fill(i), height: 2, width: 2, label: i };
      },
    };
    const skipped: SkippedItem[] = [];
    const loader = new BatchLoader(flaky, { batchSize: 2, shuffle: false, onSkip: (s) => skipped.push(s) });
    const bs = await collect(loader.epoch(0));
    expect(bs.map((b) => [...b.labels])).toEqual([[0, 1], [3, 4], [5]]);
    expect(skipped.map((s) => [s.index, s.reason])).toEqual([[2, 'boom']]);
    expect(bs[1].next).toEqual({ epoch: 0, batch: 2, cursor: 5 });

    const mixed: ImageDataset = {
      length: 2,
      async get(i) {
        return { image: new Uint8Array((2 + i) * 2 * 3), height: 2 + i, width: 2 };
      },
    };
    await expect(collect(new BatchLoader(mixed, { batchSize: 2, shuffle: false }).epoch(0))).rejects.toThrow(/give a transform/);
  });
});

/** An IDX uint8 [n, 4, 4] file's bytes, item i filled with i. */
function idx3(n: number): Uint8Array {
  const out = new Uint8Array(4 + 12 + n * 16);
  out[2] = 0x08;
  out[3] = 3;
  const dv = new DataView(out.buffer);
  dv.setUint32(4, n, false);
  dv.setUint32(8, 4, false);
  dv.setUint32(12, 4, false);
  for (let i = 0; i < n; i++) out.fill(i * 10, 16 + i * 16, 16 + (i + 1) * 16);
  return out;
}
