import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Cifar10Dataset, DataFormatError, decodeIdx, encodeJpeg, FASHION_MNIST_DIR, IdxImageDataset, ImageDecodeError,
  ImageFolderDataset, openMnist, resizeBilinearCv, TokenShardDataset, writePng, writeTokenShard,
} from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'ibq-data-ds-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function solid(h: number, w: number, v: number): Uint8Array {
  return new Uint8Array(h * w * 3).fill(v);
}

/** IDX bytes: magic 0 0 type ndim, big-endian dims, data. */
function idx(type: number, shape: number[], data: Uint8Array): Uint8Array {
  const head = new Uint8Array(4 + 4 * shape.length);
  head[2] = type;
  head[3] = shape.length;
  const dv = new DataView(head.buffer);
  shape.forEach((d, i) => dv.setUint32(4 + 4 * i, d, false));
  const out = new Uint8Array(head.length + data.length);
  out.set(head);
  out.set(data, head.length);
  return out;
}

describe('ImageFolderDataset', () => {
  const root = join(dir, 'folder');
  beforeAll(async () => {
    // classes out of order on disk; nested folder; ignored extension; excluded ImageNet file; hidden entries
    mkdirSync(join(root, 'n02'), { recursive: true });
    mkdirSync(join(root, 'n01', 'sub'), { recursive: true });
    mkdirSync(join(root, '.hidden'), { recursive: true });
    await writePng(join(root, 'n02', 'b.png'), { data: solid(4, 5, 20), height: 4, width: 5, channels: 3 });
    await writePng(join(root, 'n02', 'a.PNG'), { data: solid(4, 5, 10), height: 4, width: 5, channels: 3 });
    writeFileSync(join(root, 'n01', 'z.JPEG'), await encodeJpeg({ data: solid(6, 6, 128), height: 6, width: 6, channels: 3 }));
    await writePng(join(root, 'n01', 'sub', 'c.png'), { data: solid(2, 3, 30), height: 2, width: 3, channels: 3 });
    writeFileSync(join(root, 'n01', 'notes.txt'), 'not an image');
    writeFileSync(join(root, 'n01', 'n06596364_9591.JPEG'), 'excluded by name');
    writeFileSync(join(root, 'n02', 'broken.png'), Buffer.from('definitely not a png'));
    await writePng(join(root, '.hidden', 'h.png'), { data: solid(2, 2, 1), height: 2, width: 2, channels: 3 });
  });

  it('classes = sorted folders, items = sorted relative paths, labels = class index', async () => {
    const ds = await ImageFolderDataset.open(root);
    expect(ds.classes).toEqual(['n01', 'n02']);
    expect(ds.files).toEqual(['n01/sub/c.png', 'n01/z.JPEG', 'n02/a.PNG', 'n02/b.png', 'n02/broken.png']);
    expect(ds.length).toBe(5);
    expect([0, 1, 2, 3, 4].map((i) => ds.labelOf(i))).toEqual([0, 0, 1, 1, 1]);
    const s = await ds.get(2);
    expect([s.height, s.width, s.label, s.path]).toEqual([4, 5, 1, join(root, 'n02', 'a.PNG')]);
    expect(s.image[0]).toBe(10);
    const err = await ds.get(4).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(ImageDecodeError);
    expect((err as ImageDecodeError).path).toBe(join(root, 'n02', 'broken.png'));
    expect(() => ds.pathOf(5)).toThrow(RangeError);
  });

  it('options: extensions, exclusions, one level only', async () => {
    const ds = await ImageFolderDataset.open(root, { extensions: ['.JPEG'], exclude: [], recursive: false });
    expect(ds.files).toEqual(['n01/n06596364_9591.JPEG', 'n01/z.JPEG']);
  });

  it('a folder of images without class folders is unlabelled', async () => {
    const flat = join(dir, 'flat');
    await writePng(join(flat, '2.png'), { data: solid(2, 2, 2), height: 2, width: 2, channels: 3 });
    await writePng(join(flat, '1.png'), { data: solid(2, 2, 1), height: 2, width: 2, channels: 3 });
    const ds = await ImageFolderDataset.open(flat);
    expect(ds.files).toEqual(['1.png', '2.png']);
    expect(ds.labelOf(0)).toBeUndefined();
    await expect(ImageFolderDataset.open(join(dir, 'nope'))).rejects.toThrow(/does not exist/);
  });
});

describe('IDX files', () => {
  const images = Uint8Array.from({ length: 3 * 28 * 28 }, (_, i) => (i * 7) & 255);
  const labels = Uint8Array.from([3, 1, 4]);

  it('decodes raw and gzipped IDX; rejects bad files', () => {
    const raw = idx(0x08, [3, 28, 28], images);
    const a = decodeIdx(raw);
    expect(a.shape).toEqual([3, 28, 28]);
    expect(a.data.length).toBe(3 * 28 * 28);
    const b = decodeIdx(gzipSync(raw));
    expect([...b.data.subarray(0, 50)]).toEqual([...a.data.subarray(0, 50)]);
    const f = decodeIdx(idx(0x0d, [2], new Uint8Array([0x3f, 0xc0, 0, 0, 0xc0, 0x20, 0, 0])));
    expect([...f.data]).toEqual([1.5, -2.5]);
    expect(() => decodeIdx(raw.subarray(0, 100), 'short.idx')).toThrow(DataFormatError);
    expect(() => decodeIdx(new Uint8Array([1, 2, 3, 4]), 'bad.idx')).toThrow(/bad\.idx.*magic/);
  });

  it('grey 28x28 -> RGB; sized by cv2-bilinear resize or by zero padding', () => {
    const ds = new IdxImageDataset(decodeIdx(idx(0x08, [3, 28, 28], images)), decodeIdx(idx(0x08, [3], labels)));
    const s = ds.getSync(1);
    expect([s.height, s.width, s.label]).toEqual([28, 28, 1]);
    expect([...s.image.subarray(0, 6)]).toEqual([images[784], images[784], images[784], images[785], images[785], images[785]]);

    const r = new IdxImageDataset(decodeIdx(idx(0x08, [3, 28, 28], images)), undefined, { size: 32 }).getSync(1);
    expect([r.height, r.width, r.label]).toEqual([32, 32, undefined]);
    expect([...r.image]).toEqual([...resizeBilinearCv(s.image, 28, 28, 3, 32, 32)]);

    const p = new IdxImageDataset(decodeIdx(idx(0x08, [3, 28, 28], images)), undefined, { size: 32, fit: 'pad' }).getSync(1);
    expect([p.height, p.width]).toEqual([32, 32]);
    expect(p.image[0]).toBe(0);
    expect(p.image[(2 * 32 + 2) * 3]).toBe(images[784]);
    expect(p.image[(29 * 32 + 29) * 3]).toBe(images[784 + 27 * 28 + 27]);
    expect(p.image[(30 * 32 + 30) * 3]).toBe(0);
  });

  it('Fashion-MNIST from Debian\'s dataset-fashion-mnist', async (ctx) => {
    if (!existsSync(FASHION_MNIST_DIR)) {
      console.log(`skipped: ${FASHION_MNIST_DIR} is absent (apt-get install dataset-fashion-mnist)`);
      ctx.skip();
    }
    const test = await openMnist('fashion-mnist', 'test', { size: 32 });
    expect(test.length).toBe(10000);
    expect(test.classes?.[9]).toBe('Ankle boot');
    const s = await test.get(0);
    expect([s.height, s.width, s.label]).toEqual([32, 32, 9]); // the first test image is an ankle boot
    expect(s.image.length).toBe(32 * 32 * 3);
    const counts = new Array(10).fill(0);
    for (let i = 0; i < test.length; i++) counts[test.labelOf(i)!]++;
    expect(counts).toEqual(new Array(10).fill(1000));
    const train = await openMnist('fashion-mnist', 'train');
    expect(train.length).toBe(60000);
    expect([train.height, train.width]).toEqual([28, 28]);
  });
});

describe('CIFAR-10 binary batches', () => {
  it('reads records (label byte + RGB planes) as HWC', async () => {
    const root = join(dir, 'cifar', 'cifar-10-batches-bin');
    mkdirSync(root, { recursive: true });
    const rec = (label: number, seed: number): Uint8Array => {
      const r = new Uint8Array(3073);
      r[0] = label;
      for (let i = 1; i < 3073; i++) r[i] = (i * seed) & 255;
      return r;
    };
    for (let k = 1; k <= 5; k++) writeFileSync(join(root, `data_batch_${k}.bin`), Buffer.concat([rec(k, k), rec(9, 100 + k)]));
    writeFileSync(join(root, 'test_batch.bin'), rec(2, 77));
    const train = await Cifar10Dataset.open(join(dir, 'cifar'), 'train');
    expect(train.length).toBe(10);
    expect(train.labelOf(2)).toBe(2);
    const s = train.getSync(2);
    expect([s.height, s.width, s.label]).toEqual([32, 32, 2]);
    // pixel 5: R from plane 0, G from plane 1, B from plane 2 (record byte 1 + plane * 1024 + 5)
    expect([s.image[15], s.image[16], s.image[17]]).toEqual([(6 * 2) & 255, (1030 * 2) & 255, (2054 * 2) & 255]);
    const test = await Cifar10Dataset.open(root, 'test');
    expect(test.length).toBe(1);
    expect(test.classes[2]).toBe('bird');
    writeFileSync(join(root, 'bad.bin'), new Uint8Array(3000));
    await expect(Cifar10Dataset.fromFiles([join(root, 'bad.bin')])).rejects.toThrow(/bad\.bin.*3073/);
  });
});

describe('token shards', () => {
  it('reads [N, h, w] int32 shards with labels, across shards', async () => {
    const root = join(dir, 'tokens');
    const t0 = Int32Array.from({ length: 3 * 2 * 2 }, (_, i) => i);
    const t1 = Int32Array.from({ length: 2 * 2 * 2 }, (_, i) => 1000 + i);
    await writeTokenShard(join(root, 'shard-00000.npy'), t0, 3, 2, 2, Int32Array.from([5, 6, 7]));
    await writeTokenShard(join(root, 'shard-00001.npy'), t1, 2, 2, 2, Int32Array.from([8, 9]));
    const ds = await TokenShardDataset.open(root);
    expect([ds.length, ds.height, ds.width]).toEqual([5, 2, 2]);
    expect([...ds.get(1).tokens]).toEqual([4, 5, 6, 7]);
    expect(ds.get(1).label).toBe(6);
    expect([...ds.get(4).tokens]).toEqual([1004, 1005, 1006, 1007]);
    expect(ds.labelOf(3)).toBe(8);
    const b = ds.getBatch([4, 0]);
    expect([...b.tokens]).toEqual([1004, 1005, 1006, 1007, 0, 1, 2, 3]);
    expect([...b.labels]).toEqual([9, 5]);
    expect(() => ds.get(5)).toThrow(RangeError);
    await ds.close();
    await expect(writeTokenShard(join(root, 'x.npy'), t0, 2, 2, 2)).rejects.toThrow(/12 tokens/);
  });
});
