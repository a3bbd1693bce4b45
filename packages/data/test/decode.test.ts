import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import {
  applyTransform, decodeImage, encodeJpeg, encodePng, ImageDecodeError, readImage, readImageForModel, readImageSize,
  tileImages, toFloat, writePng,
} from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'ibq-data-decode-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const fixtureDir = new URL('./fixtures/', import.meta.url);
const pil = JSON.parse(readFileSync(new URL('pil_rgb.json', fixtureDir), 'utf8')) as Record<
  string, { height: number; width: number; mode: string; rgb: string }
>;

function gradient(h: number, w: number): Uint8Array {
  const d = new Uint8Array(h * w * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const o = (y * w + x) * 3;
      d[o] = (x * 255) / Math.max(1, w - 1);
      d[o + 1] = (y * 255) / Math.max(1, h - 1);
      d[o + 2] = (x * 7 + y * 13) & 255;
    }
  }
  return d;
}

describe("decoding matches PIL's Image.open(p).convert('RGB') (fixtures made by make_pil_fixtures.py)", () => {
  for (const [name, e] of Object.entries(pil)) {
    it(`${name} (PIL mode ${e.mode})`, async () => {
      const img = await readImage(new URL(`images/${name}`, fixtureDir).pathname);
      expect([img.height, img.width, img.channels]).toEqual([e.height, e.width, 3]);
      expect(Buffer.from(img.data).equals(Buffer.from(e.rgb, 'base64'))).toBe(true);
    });
  }
});

describe('image I/O', () => {
  it('PNG round trip is lossless, for RGB, grey and RGBA inputs', async () => {
    const data = gradient(7, 9);
    const png = await encodePng({ data, height: 7, width: 9, channels: 3 });
    const back = await decodeImage(png);
    expect([back.height, back.width]).toEqual([7, 9]);
    expect(Buffer.from(back.data).equals(Buffer.from(data))).toBe(true);

    const grey = Uint8Array.from({ length: 12 }, (_, i) => i * 20);
    const g = await decodeImage(await encodePng({ data: grey, height: 3, width: 4, channels: 1 }));
    expect([...g.data.subarray(0, 6)]).toEqual([0, 0, 0, 20, 20, 20]);

    const rgba = Uint8Array.from([10, 20, 30, 0, 40, 50, 60, 255]); // alpha dropped, not composited
    const a = await decodeImage(await encodePng({ data: rgba, height: 1, width: 2, channels: 4 }));
    expect([...a.data]).toEqual([10, 20, 30, 40, 50, 60]);
  });

  it('writePng writes a file that reads back; readImageSize reads the header', async () => {
    const data = gradient(5, 6);
    const p = join(dir, 'sub', 'x.png');
    await writePng(p, { data, height: 5, width: 6, channels: 3 });
    expect([...(await readImage(p)).data]).toEqual([...data]);
    expect(await readImageSize(p)).toEqual({ height: 5, width: 6 });
  });

  it('decodes JPEG and WebP written by sharp', async () => {
    const data = gradient(16, 20);
    const smooth = data.map((v, i) => (i % 3 === 2 ? 128 : v));
    const jpg = await encodeJpeg({ data: smooth, height: 16, width: 20, channels: 3 }, { quality: 95 });
    const j = await decodeImage(jpg);
    expect([j.height, j.width]).toEqual([16, 20]);
    let err = 0;
    for (let i = 0; i < smooth.length; i++) err += Math.abs(j.data[i] - smooth[i]);
    expect(err / smooth.length).toBeLessThan(3);
    const webp = await sharp(Buffer.from(data), { raw: { width: 20, height: 16, channels: 3 } }).webp({ lossless: true }).toBuffer();
    expect([...(await decodeImage(webp)).data]).toEqual([...data]);
  });

  it('unreadable files are ImageDecodeError naming the file', async () => {
    const random = join(dir, 'random.png');
    writeFileSync(random, Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 97 + 13) & 255)));
    const jpg = await encodeJpeg({ data: gradient(64, 64), height: 64, width: 64, channels: 3 });
    const truncated = join(dir, 'truncated.jpg');
    writeFileSync(truncated, jpg.subarray(0, Math.floor(jpg.length / 2)));
    const empty = join(dir, 'empty.jpg');
    writeFileSync(empty, Buffer.alloc(0));
    for (const p of [random, truncated, empty, join(dir, 'missing.png')]) {
      const err = await readImage(p).then(() => null, (e: unknown) => e);
      expect(err, p).toBeInstanceOf(ImageDecodeError);
      expect((err as ImageDecodeError).path).toBe(p);
      expect((err as Error).message).toContain(p);
    }
    await expect(decodeImage(Buffer.from('not an image'), 'upload.bin')).rejects.toThrow(/upload\.bin/);
  });

  it('readImageForModel: SmallestMaxSize + CenterCrop + x/127.5-1, CHW', async () => {
    const data = gradient(30, 40);
    const p = join(dir, 'model.png');
    await writePng(p, { data, height: 30, width: 40, channels: 3 });
    const m = await readImageForModel(p, { size: 16 });
    expect([m.height, m.width, m.sourceHeight, m.sourceWidth]).toEqual([16, 16, 30, 40]);
    const t = applyTransform({ data, height: 30, width: 40, channels: 3 }, { resize: 16, crop: 'center' });
    expect([...m.data]).toEqual([...toFloat(t.data, 16, 16, 3, 'chw')]);
    const whole = await readImageForModel(p, { size: 15, crop: 'none', layout: 'hwc' });
    expect([whole.height, whole.width]).toEqual([15, 20]);
  });

  it('tileImages lays images out in a grid', () => {
    const a = { data: new Uint8Array(2 * 2 * 3).fill(100), height: 2, width: 2, channels: 3 };
    const b = { data: new Uint8Array(2 * 2 * 3).fill(200), height: 2, width: 2, channels: 3 };
    const g = tileImages([a, b, a], { columns: 2, pad: 1 });
    expect([g.height, g.width]).toEqual([2 * 2 + 3, 2 * 2 + 3]);
    expect(g.data[(1 * g.width + 1) * 3]).toBe(100);
    expect(g.data[(1 * g.width + 4) * 3]).toBe(200);
    expect(g.data[0]).toBe(0);
  });
});
