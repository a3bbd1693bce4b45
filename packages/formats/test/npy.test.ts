// .npy and .npz: read, write, stream, lazy rows, corrupt input (numpy interop: numpy-interop.test.ts).
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  crc32, DataFormatError, decodeNpy, encodeNpy, encodeNpz, NpyFile, NpzFile, NpzWriter, readNpy, readNpz,
  SampleNpzWriter, writeNpy, writeNpz,
} from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'ibq-data-npy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const numpyDir = new URL('./fixtures/numpy/', import.meta.url).pathname;

describe('crc32', () => {
  it('matches the standard check value', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
    const a = new TextEncoder().encode('12345');
    const b = new TextEncoder().encode('6789');
    expect(crc32(b, crc32(a))).toBe(0xcbf43926);
  });
});

describe('.npy', () => {
  it('reads files written by numpy', async () => {
    const i32 = await readNpy(join(numpyDir, 'i32.npy'));
    expect(i32.dtype).toBe('int32');
    expect(i32.shape).toEqual([3, 4]);
    expect([...i32.data]).toEqual(Array.from({ length: 12 }, (_, i) => (i - 5) * 1000003));
    const f32 = await readNpy(join(numpyDir, 'f32.npy'));
    expect([...f32.data]).toEqual([0, -1.5, 3.25, Math.fround(1e-7), -Infinity, 65504]);
  });

  it('writes byte-identical files to numpy (header, padding, data)', () => {
    const data = Int32Array.from({ length: 12 }, (_, i) => (i - 5) * 1000003);
    const ours = encodeNpy(data, [3, 4]);
    expect(Buffer.from(ours).equals(readFileSync(join(numpyDir, 'i32.npy')))).toBe(true);
    const f = Float32Array.from([0, -1.5, 3.25, 1e-7, -Infinity, 65504]);
    expect(Buffer.from(encodeNpy(f)).equals(readFileSync(join(numpyDir, 'f32.npy')))).toBe(true);
  });

  it('round-trips every dtype; rejects bad input with DataFormatError', async () => {
    const cases = [
      Uint8Array.from([0, 255]), Int8Array.from([-128, 127]), Uint16Array.from([65535]), Int16Array.from([-3]),
      Uint32Array.from([4294967295]), Int32Array.from([-2147483648]), Float32Array.from([1.5]), Float64Array.from([Math.PI]),
      BigInt64Array.from([-(2n ** 40n)]), BigUint64Array.from([2n ** 63n]),
    ];
    for (const c of cases) {
      const back = decodeNpy(encodeNpy(c));
      expect(back.data.constructor).toBe(c.constructor);
      expect([...back.data]).toEqual([...c]);
    }
    expect(decodeNpy(encodeNpy(Uint8Array.from([1, 0]), [2], 'bool')).dtype).toBe('bool');
    expect(() => decodeNpy(new Uint8Array([1, 2, 3]), 'x.npy')).toThrow(DataFormatError);
    const bytes = encodeNpy(Float32Array.from([1, 2, 3]));
    expect(() => decodeNpy(bytes.subarray(0, bytes.length - 2), 'cut.npy')).toThrow(/cut\.npy.*truncated/);
    const p = join(dir, 'w.npy');
    await writeNpy(p, Int32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]);
    const f = new NpyFile(p);
    expect(f.shape).toEqual([2, 3]);
    expect([...f.readRows(1, 1)]).toEqual([4, 5, 6]);
    expect(() => f.readRows(1, 2)).toThrow(RangeError);
    f.close();
  });
});

describe('.npz', () => {
  it('reads numpy savez (stored, arr_0, NHWC uint8) and savez_compressed (deflate)', async () => {
    const s = await readNpz(join(numpyDir, 'samples.npz'));
    expect(Object.keys(s)).toEqual(['arr_0']);
    expect(s.arr_0.dtype).toBe('uint8');
    expect(s.arr_0.shape).toEqual([2, 3, 4, 3]);
    expect([...s.arr_0.data]).toEqual(Array.from({ length: 72 }, (_, i) => i % 256));

    const m = await readNpz(join(numpyDir, 'mixed.npz'));
    expect(Object.keys(m)).toEqual(['tokens', 'x', 'd', 'l', 'b', 's']);
    expect(m.tokens.shape).toEqual([3, 4]);
    expect([...m.d.data]).toEqual([Math.PI, -Math.E]);
    expect([...m.l.data]).toEqual([-(2n ** 40n), 7n]);
    expect(m.b.dtype).toBe('bool');
    expect([...m.b.data]).toEqual([1, 0, 1]);
    expect(m.s.shape).toEqual([]);
    expect([...m.s.data]).toEqual([42]);

    const c = await readNpz(join(numpyDir, 'compressed.npz'));
    expect([...c.tokens.data]).toEqual([...m.tokens.data]);
    expect([...c.x.data]).toEqual([...m.x.data]);
  });

  it('NpzFile reads headers and row ranges without loading the file', () => {
    const f = NpzFile.open(join(numpyDir, 'samples.npz'));
    expect(f.keys).toEqual(['arr_0']);
    expect(f.header('arr_0').shape).toEqual([2, 3, 4, 3]);
    expect([...f.readRows('arr_0', 1, 1)]).toEqual(Array.from({ length: 36 }, (_, i) => 36 + i));
    expect(() => f.get('nope')).toThrow(/no array 'nope'/);
    f.close();
  });

  it('writes archives that read back, in memory and on disk, with and without ZIP64 fields', async () => {
    const arrays = {
      tokens: { data: Int32Array.from({ length: 12 }, (_, i) => i * 7), shape: [3, 4] },
      x: Float32Array.from([1, 2, 3]),
      flags: { data: Uint8Array.from([1, 0]), dtype: 'bool' as const },
    };
    for (const forceZip64 of [false, true]) {
      const bytes = encodeNpz(arrays, { forceZip64 });
      const back = await readNpz(bytes);
      expect(Object.keys(back)).toEqual(['tokens', 'x', 'flags']);
      expect(back.tokens.shape).toEqual([3, 4]);
      expect([...back.tokens.data]).toEqual([...arrays.tokens.data]);
      expect(back.flags.dtype).toBe('bool');
      const p = join(dir, `w${forceZip64 ? 64 : 32}.npz`);
      writeNpz(p, arrays, { forceZip64 });
      expect(Buffer.from(readFileSync(p)).equals(Buffer.from(bytes))).toBe(true);
    }
  });

  it('a corrupt member is reported (CRC), not returned', async () => {
    const bytes = encodeNpz({ a: Float32Array.from([1, 2, 3, 4]) });
    const bad = Uint8Array.from(bytes);
    bad[bad.length - 100] ^= 0xff; // inside the data of 'a'
    await expect(readNpz(bad)).rejects.toThrow(/CRC|npy/);
    await expect(readNpz(new Uint8Array(10))).rejects.toThrow(DataFormatError);
  });

  it('SampleNpzWriter streams NHWC uint8 images into arr_0', async () => {
    const p = join(dir, 'samples.npz');
    const w = new SampleNpzWriter(p, 5, 4, 4, 3);
    const img = (k: number): Uint8Array => new Uint8Array(48).fill(k * 10);
    w.append(img(0));
    const two = new Uint8Array(96);
    two.set(img(1));
    two.set(img(2), 48);
    w.append(two);
    expect(() => w.append(new Uint8Array(47))).toThrow(/whole number/);
    w.append(img(3));
    expect(() => w.close()).toThrow(/4 of the declared 5/);
    expect(existsSync(p)).toBe(false);

    const w2 = new SampleNpzWriter(p, 2, 4, 4, 3);
    w2.append(img(7));
    w2.append(img(8));
    w2.close();
    const f = NpzFile.open(p);
    expect(f.header('arr_0').shape).toEqual([2, 4, 4, 3]);
    expect([...f.readRows('arr_0', 1, 1)].every((v) => v === 80)).toBe(true);
    f.close();
    expect(statSync(p).size).toBeGreaterThan(96);
  });
});
