// numpy interop without numpy at test time: we read files numpy wrote (fixtures/numpy), and our
// writers still produce, byte for byte, the files numpy was shown to read (fixtures/ours,
// checked by fixtures/make_numpy_fixtures.py). Also the opt-in >4 GiB streamed round trip.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeNpy, NpzFile, NpzWriter, readNpy, readNpz, ZipReader, MemoryFile, type NpyArray } from '../src/index.js';
import { OUR_ARRAYS, ourFixtures } from './our-fixtures.js';

const FIX = join(import.meta.dirname, 'fixtures');
const numpyDir = join(FIX, 'numpy');
const oursDir = join(FIX, 'ours');
const TMP = mkdtempSync(join(tmpdir(), 'ibq-formats-interop-'));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));

const values = (a: NpyArray): unknown[] => Array.from(a.data as ArrayLike<unknown>);

describe('we read what numpy writes', () => {
  it('C and Fortran order, both byte orders, float16, v1/v2/v3 headers', async () => {
    const grid = Array.from({ length: 24 }, (_, i) => i * 0.5 - 3);
    const f = await readNpy(join(numpyDir, 'fortran.npy'));
    expect(f.shape).toEqual([2, 3, 4]);
    expect(values(f)).toEqual(grid); // converted to C order
    const i32 = Array.from({ length: 12 }, (_, i) => (i - 5) * 1000003);
    const be = await readNpy(join(numpyDir, 'big_endian.npy'));
    expect(be.dtype).toBe('int32');
    expect(values(be)).toEqual(i32);
    expect(values(await readNpy(join(numpyDir, 'big_endian_f8.npy')))).toEqual([Math.PI, -Math.E]);
    const h = await readNpy(join(numpyDir, 'f16.npy'));
    expect(h.dtype).toBe('float16');
    expect(values(h)).toEqual([0x3c00, 0xc000, 0x7bff, 0x0001, 0x2e66]);
    for (const v of [1, 2, 3]) {
      const a = await readNpy(join(numpyDir, `v${v}.npy`));
      expect(readFileSync(join(numpyDir, `v${v}.npy`))[6]).toBe(v);
      expect(a.shape).toEqual([3, 4]);
      expect(values(a)).toEqual(i32);
    }
  });

  it('every dtype np.savez writes (members carry ZIP64 extra fields)', () => {
    const z = NpzFile.open(join(numpyDir, 'dtypes.npz'));
    const signed = [-3, -2, -1, 0, 1, 2];
    const expected: Record<string, unknown[]> = {
      int8: signed, uint8: [0, 1, 2, 3, 4, 5], int16: signed, uint16: [0, 1, 2, 3, 4, 5], int32: signed,
      uint32: [0, 1, 2, 3, 4, 5], int64: signed.map(BigInt), uint64: [0n, 1n, 2n, 3n, 4n, 5n], float32: signed,
      float64: signed, bool: [0, 1, 1, 1, 1, 1],
      float16: [0xc200, 0xc000, 0xbc00, 0, 0x3c00, 0x4000],
    };
    expect(z.keys.sort()).toEqual(Object.keys(expected).sort());
    for (const [k, v] of Object.entries(expected)) {
      const a = z.get(k);
      expect(a.dtype, k).toBe(k);
      expect(values(a), k).toEqual(v);
    }
    // numpy's savez forces ZIP64 extra fields in the local headers.
    const raw = readFileSync(join(numpyDir, 'dtypes.npz'));
    expect(raw.readUInt16LE(28), 'local extra length').toBeGreaterThan(0);
    z.close();
  });
});

describe('numpy reads what we write', () => {
  const fixtures = ourFixtures();
  if (process.env.IBQ_UPDATE_FIXTURES === '1') {
    mkdirSync(oursDir, { recursive: true });
    for (const [name, bytes] of fixtures) writeFileSync(join(oursDir, name), bytes);
  }

  it.each([...fixtures.keys()])('%s: our writer still produces the numpy-checked bytes', (name) => {
    const committed = readFileSync(join(oursDir, name));
    expect(Buffer.from(fixtures.get(name)!).equals(committed)).toBe(true);
  });

  it('the ZIP64 archives carry zip64 records and read back with our reader', async () => {
    for (const name of ['zip64.npz', 'zip64_deflate.npz']) {
      const bytes = readFileSync(join(oursDir, name));
      // zip64 end of central directory record and locator are present.
      expect(bytes.includes(Buffer.from([0x50, 0x4b, 0x06, 0x06])), name).toBe(true);
      expect(bytes.includes(Buffer.from([0x50, 0x4b, 0x06, 0x07])), name).toBe(true);
      const back = await readNpz(bytes);
      expect(Object.keys(back)).toEqual(Object.keys(OUR_ARRAYS));
      for (const [k, v] of Object.entries(OUR_ARRAYS)) {
        expect(back[k]!.shape, `${name}:${k}`).toEqual(v.shape);
        expect(values(back[k]!), `${name}:${k}`).toEqual(Array.from(v.data as ArrayLike<unknown>));
      }
    }
    const zip = ZipReader.openSync(new MemoryFile(readFileSync(join(oursDir, 'entries.zip'))));
    expect([...zip.entries.keys()]).toEqual(['a.txt', 'dir/ünï.bin']);
    expect(new TextDecoder().decode(zip.readEntrySync('a.txt'))).toBe('hello '.repeat(50));
    expect(zip.entry('a.txt').method).toBe(8);
    expect(decodeNpy(readFileSync(join(oursDir, 'half.npy'))).dtype).toBe('float16');
  });
});

// Opt-in: streams a >4 GiB member and a member after it (offset past 4 GiB), then reads both
// back through the central directory's zip64 fields. Needs ~4.3 GB of free disk under $TMPDIR.
const HUGE = process.env.IBQ_TEST_ZIP64_HUGE === '1';
describe.skipIf(!HUGE)('ZIP64 past 4 GiB (IBQ_TEST_ZIP64_HUGE=1)', () => {
  it('streams a 4.3 GB uint8 member and reads its rows back lazily', () => {
    const rows = 4400;
    const rowBytes = 1 << 20; // 4400 MiB > 4 GiB
    const p = join(TMP, 'huge.npz');
    const w = new NpzWriter(p);
    w.begin('arr_0', 'uint8', [rows, rowBytes]);
    const row = new Uint8Array(rowBytes);
    for (let r = 0; r < rows; r++) {
      row.fill(r % 251);
      row[0] = r & 0xff;
      row[1] = r >> 8;
      w.write(row);
    }
    w.add('after', Int32Array.from([7, 8, 9]));
    w.close();
    expect(statSync(p).size).toBeGreaterThan(2 ** 32 + 3);
    const f = NpzFile.open(p);
    expect(f.header('arr_0').shape).toEqual([rows, rowBytes]);
    for (const r of [0, 1, 4095, 4096, rows - 1]) {
      const got = f.readRows('arr_0', r, 1) as Uint8Array;
      expect([got[0], got[1], got[2], got[rowBytes - 1]], `row ${r}`).toEqual([r & 0xff, r >> 8, r % 251, r % 251]);
    }
    expect([...f.get('after').data]).toEqual([7, 8, 9]);
    f.close();
    rmSync(p);
  }, 600_000);
});
