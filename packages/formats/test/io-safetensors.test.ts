// safetensors: reading a file written from the spec by Python, bit-exact round trips, every
// header error, atomic writes and the streaming (bounded memory) property.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CheckpointError,
  SafetensorsReader,
  bytesOf,
  decodeSafetensors,
  encodeSafetensors,
  readSafetensors,
  toFloat32,
  writeSafetensors,
  type HostDType,
  type HostTensor,
  type HostTypedArray,
} from '../src/index.js';

const FIX = join(import.meta.dirname, 'fixtures');
const TMP = mkdtempSync(join(tmpdir(), 'ibq-io-st-'));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));

const expected = JSON.parse(readFileSync(join(FIX, 'expected.json'), 'utf8')).files['reference.safetensors'] as {
  tensors: Record<string, { dtype: string; shape: number[]; values: (number | string)[] }>;
  metadata: Record<string, string>;
  order: string[];
};

/** A safetensors file from a header object and a data buffer, for error cases. */
function rawFile(header: unknown, data: Uint8Array | number = 0, { headerText }: { headerText?: string } = {}): Uint8Array {
  const json = new TextEncoder().encode(headerText ?? JSON.stringify(header));
  const out = new Uint8Array(8 + json.byteLength + (typeof data === 'number' ? data : data.byteLength));
  new DataView(out.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  out.set(json, 8);
  if (typeof data !== 'number') out.set(data, 8 + json.byteLength);
  return out;
}

let n = 0;
const tmp = (bytes: Uint8Array) => {
  const p = join(TMP, `e${n++}.safetensors`);
  writeFileSync(p, bytes);
  return p;
};

async function expectError(bytes: Uint8Array, pattern: RegExp, key?: string): Promise<void> {
  const path = tmp(bytes);
  let err: unknown;
  try {
    const r = await SafetensorsReader.open(path);
    await r.close();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(CheckpointError);
  expect((err as Error).message).toMatch(pattern);
  expect((err as CheckpointError).file).toBe(path);
  if (key !== undefined) expect((err as CheckpointError).key).toBe(key);
  // The in-memory decoder validates the same way.
  expect(() => decodeSafetensors(bytes, 'mem')).toThrow(pattern);
}

describe('reading a file written from the format spec by Python (torch tensors)', () => {
  it('values, dtypes, shapes, metadata, order', async () => {
    const { tensors, metadata } = await readSafetensors(join(FIX, 'reference.safetensors'));
    expect(metadata).toEqual(expected.metadata);
    expect([...tensors.keys()]).toEqual(expected.order);
    for (const [k, e] of Object.entries(expected.tensors)) {
      const t = tensors.get(k)!;
      expect(t.dtype, k).toBe(e.dtype);
      expect([...t.shape], k).toEqual(e.shape);
      if (t.dtype === 'i64' || t.dtype === 'i32' || t.dtype === 'u8') expect(Array.from(t.data as ArrayLike<number | bigint>, String), k).toEqual(e.values);
      else expect(Array.from(toFloat32(t)), k).toEqual(e.values);
    }
    expect(tensors.get('i64')!.data).toEqual(new BigInt64Array([0n, -1n, 2n ** 53n + 1n, -(2n ** 63n)]));
  });

  it('the TS writer reproduces the Python-written file byte for byte', async () => {
    const file = readFileSync(join(FIX, 'reference.safetensors'));
    const { tensors, metadata } = await readSafetensors(join(FIX, 'reference.safetensors'));
    expect(Buffer.from(encodeSafetensors(tensors, { metadata }))).toEqual(file);
    const out = join(TMP, 'rewrite.safetensors');
    await writeSafetensors(out, tensors, { metadata });
    expect(readFileSync(out)).toEqual(file);
  });
});

function randomBytes(nbytes: number, seed: number): Uint8Array {
  const out = new Uint8Array(nbytes);
  let s = seed >>> 0;
  for (let i = 0; i < nbytes; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

function randomTensor(dtype: HostDType, shape: number[], seed: number): HostTensor {
  const numel = shape.reduce((a, b) => a * b, 1);
  const ctor = { f32: Float32Array, f64: Float64Array, f16: Uint16Array, bf16: Uint16Array, i64: BigInt64Array, i32: Int32Array, i16: Int16Array, i8: Int8Array, u8: Uint8Array, bool: Uint8Array }[dtype];
  const data = new ctor(numel) as HostTypedArray;
  if (dtype === 'bool') (data as Uint8Array).set(Array.from(randomBytes(numel, seed), (b) => b & 1));
  else bytesOf(data).set(randomBytes(data.byteLength, seed)); // any bit pattern: NaN payloads, -0, subnormals
  return { dtype, shape, data };
}

describe('round trips are bit-exact', () => {
  const dtypes: HostDType[] = ['f32', 'f16', 'bf16', 'f64', 'i64', 'i32', 'i16', 'i8', 'u8', 'bool'];
  const tensors = new Map<string, HostTensor>();
  dtypes.forEach((d, i) => {
    tensors.set(`${d}.matrix`, randomTensor(d, [3, 5, 2], i + 1));
    tensors.set(`${d}.scalar`, randomTensor(d, [], i + 100));
    tensors.set(`${d}.empty`, randomTensor(d, [4, 0], i + 200));
  });
  tensors.set('__proto__', randomTensor('f32', [2], 7));
  tensors.set('0', randomTensor('f32', [1], 8));
  tensors.set('ünïcödé ✓ name', randomTensor('u8', [3], 9));
  const metadata = { format: 'pt', 'ключ': 'значение ✓', empty: '' };

  const check = (got: Map<string, HostTensor>) => {
    expect([...got.keys()]).toEqual([...tensors.keys()]);
    for (const [k, t] of tensors) {
      const g = got.get(k)!;
      expect(g.dtype, k).toBe(t.dtype);
      expect([...g.shape], k).toEqual(t.shape);
      expect(g.data.constructor, k).toBe(t.data.constructor);
      expect(Buffer.from(bytesOf(g.data)).equals(Buffer.from(bytesOf(t.data))), k).toBe(true);
    }
  };

  it('through a file', async () => {
    const path = join(TMP, 'rt.safetensors');
    await writeSafetensors(path, tensors, { metadata });
    const r = await SafetensorsReader.open(path);
    try {
      expect({ ...r.metadata }).toEqual(metadata);
      expect(r.info('f32.matrix')).toMatchObject({ dtype: 'f32', shape: [3, 5, 2], numel: 30, byteLength: 120 });
      check(await r.readAll());
      await expect(r.read('missing')).rejects.toThrow(/\[missing\]: no such tensor in the file/);
    } finally {
      await r.close();
    }
    // The data buffer starts 8-byte aligned (header padded with spaces).
    const len = Number(readFileSync(path).readBigUInt64LE(0));
    expect(len % 8).toBe(0);
  });

  it('in memory, and with lazy (produced on demand) tensors', async () => {
    const enc = encodeSafetensors(tensors, { metadata });
    const dec = decodeSafetensors(enc);
    check(dec.tensors);
    expect(dec.metadata).toEqual(metadata);
    const path = join(TMP, 'lazy.safetensors');
    const produced: string[] = [];
    await writeSafetensors(
      path,
      [...tensors].map(([k, t]) => [k, { dtype: t.dtype, shape: t.shape, data: async () => (produced.push(k), t.data) }] as const),
      { metadata },
    );
    expect(produced).toEqual([...tensors.keys()]);
    expect(readFileSync(path)).toEqual(Buffer.from(enc));
  });

  it('the writer checks its input before creating anything', async () => {
    const path = join(TMP, 'never.safetensors');
    await expect(writeSafetensors(path, { a: { dtype: 'f32', shape: [2], data: new Float64Array(2) } })).rejects.toThrow(/tensor "a": dtype f32 needs a Float32Array, got Float64Array/);
    await expect(writeSafetensors(path, { a: { dtype: 'f32', shape: [3], data: new Float32Array(2) } })).rejects.toThrow(/shape \[3\] has 3 elements but data has 2/);
    await expect(writeSafetensors(path, { __metadata__: { dtype: 'u8', shape: [0], data: new Uint8Array(0) } })).rejects.toThrow(/cannot be a tensor name/);
    await expect(writeSafetensors(path, [['a', { dtype: 'u8', shape: [0], data: new Uint8Array(0) }], ['a', { dtype: 'u8', shape: [0], data: new Uint8Array(0) }]])).rejects.toThrow(/duplicate tensor name "a"/);
    await expect(writeSafetensors(path, {}, { metadata: { a: 1 as unknown as string } })).rejects.toThrow(/metadata value for "a" must be a string/);
    expect(existsSync(path)).toBe(false);
    expect(readdirSync(TMP).filter((f) => f.includes('never'))).toEqual([]);
  });
});

describe('header errors name the file and the key', () => {
  const f32 = (begin: number, end: number, shape = [2]) => ({ dtype: 'F32', shape, data_offsets: [begin, end] });

  it('too short, header length past the end, absurd header length', async () => {
    await expectError(new Uint8Array(5), /file has 5 bytes, too short for a safetensors header length/);
    const b = rawFile({ a: f32(0, 8) }, 8);
    await expectError(b.subarray(0, 20), /header length \d+ is larger than the rest of the file \(12 bytes\): truncated file/);
    const huge = new Uint8Array(16);
    new DataView(huge.buffer).setBigUint64(0, 2n ** 62n, true);
    await expectError(huge, /header length 4611686018427387904 exceeds the limit of 100000000 bytes/);
  });

  it('invalid JSON, not an object, bad UTF-8', async () => {
    await expectError(rawFile(null, 0, { headerText: '{"a": {"dtype": "F32",' }), /safetensors header is not valid JSON/);
    await expectError(rawFile(null, 0, { headerText: '[1, 2]' }), /does not start with '\{'/);
    const bad = rawFile(null, 0, { headerText: '{"a":1}' });
    bad[10] = 0xff;
    await expectError(bad, /not valid UTF-8/);
    await expectError(rawFile({ a: 5 }), /tensor entry is not a JSON object/, 'a');
    await expectError(rawFile({ __metadata__: { x: 1 } }), /__metadata__ value for "x" is not a string/, '__metadata__');
  });

  it('unknown dtype, bad shape, bad offsets', async () => {
    await expectError(rawFile({ w: { dtype: 'C64', shape: [1], data_offsets: [0, 8] } }, 8), /unknown or unsupported dtype "C64"/, 'w');
    await expectError(rawFile({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4), /invalid shape \[-1\]/, 'w');
    await expectError(rawFile({ w: { dtype: 'F32', shape: [1], data_offsets: [0] } }, 4), /invalid data_offsets \[0\]/, 'w');
    await expectError(rawFile({ w: { dtype: 'F32', shape: [1], data_offsets: [-4, 0] } }, 4), /invalid data_offsets \[-4,0\]/, 'w');
    await expectError(rawFile({ w: f32(8, 4) }, 8), /end before they begin/, 'w');
  });

  it('offsets out of range, overlapping, not matching dtype*shape, gaps, trailing bytes', async () => {
    await expectError(rawFile({ w: f32(0, 2 ** 40) }, 8), /data_offsets \[0, 1099511627776\] are out of range: the data buffer has 8 bytes/, 'w');
    await expectError(rawFile({ a: f32(0, 8), b: f32(4, 12) }, 12), /\[b\]: data_offsets \[4, 12\] overlap those of "a"/, 'b');
    await expectError(rawFile({ w: f32(0, 12) }, 12), /span 12 bytes but F32 \[2\] needs 8/, 'w');
    await expectError(rawFile({ w: f32(4, 12) }, 12), /leave a gap of 4 unindexed bytes/, 'w');
    await expectError(rawFile({ w: f32(0, 8) }, 12), /the data buffer has 12 bytes but the tensors cover 8/);
    await expectError(rawFile({ w: { dtype: 'F32', shape: [2 ** 30, 2 ** 30, 2 ** 30], data_offsets: [0, 8] } }, 8), /more elements than 2\^53|span 8 bytes/, 'w');
  });

  it('every truncation of a valid file is a clear error', async () => {
    const file = readFileSync(join(FIX, 'reference.safetensors'));
    for (let len = 0; len < file.byteLength; len += 13) {
      await expectError(file.subarray(0, len), /too short|truncated|out of range|not valid JSON|does not start|cover/);
    }
    await expectError(file.subarray(0, file.byteLength - 1), /\[empty\]|\[scalar\]|out of range/);
  });
});

describe('atomic writes', () => {
  it('a failure mid-write leaves the old file intact and no temporary file', async () => {
    const dir = mkdtempSync(join(TMP, 'atomic-'));
    const path = join(dir, 'model.safetensors');
    await writeSafetensors(path, { a: { dtype: 'f32', shape: [4], data: new Float32Array([1, 2, 3, 4]) } });
    const before = readFileSync(path);
    const big = new Float32Array(1 << 20);
    await expect(
      writeSafetensors(path, [
        ['x', { dtype: 'f32', shape: [1 << 20], data: () => big }],
        ['y', { dtype: 'f32', shape: [1 << 20], data: () => { throw new Error('disk on fire'); } }],
      ]),
    ).rejects.toThrow('disk on fire');
    expect(readFileSync(path)).toEqual(before);
    expect(readdirSync(dir)).toEqual(['model.safetensors']);
    // A producer returning the wrong size fails the same way.
    await expect(writeSafetensors(path, { x: { dtype: 'f32', shape: [3], data: () => new Float32Array(2) } })).rejects.toThrow(/shape \[3\] has 3 elements but data has 2/);
    expect(readFileSync(path)).toEqual(before);
    expect(readdirSync(dir)).toEqual(['model.safetensors']);
    // A successful write replaces it.
    await writeSafetensors(path, { b: { dtype: 'u8', shape: [1], data: new Uint8Array([9]) } });
    expect((await readSafetensors(path)).tensors.get('b')!.data).toEqual(new Uint8Array([9]));
    expect(readdirSync(dir)).toEqual(['model.safetensors']);
  });

  it('writing into a missing directory fails cleanly', async () => {
    await expect(writeSafetensors(join(TMP, 'no', 'such', 'dir', 'x.safetensors'), {})).rejects.toThrow(/ENOENT/);
  });
});

describe('streaming: a large file needs memory for one tensor, not for the file', () => {
  it('writes ~320 MB tensor by tensor and reads one tensor back', async () => {
    const count = 32;
    const numel = (10 * 2 ** 20) / 4; // 10 MiB per tensor
    const fileBytes = count * numel * 4;
    const path = join(TMP, 'large.safetensors');
    const mem = () => {
      const m = process.memoryUsage();
      return m.heapUsed + m.external;
    };
    const base = mem();
    let peak = 0;
    // The producer reuses one buffer: the writer must not hold on to what it was given.
    const buf = new Float32Array(numel);
    const entries = Array.from({ length: count }, (_, i) => [
      `layer.${i}.weight`,
      {
        dtype: 'f32' as const,
        shape: [numel / 1024, 1024],
        data: () => {
          buf.fill(i + 0.5);
          buf[0] = -i;
          peak = Math.max(peak, mem() - base);
          return buf;
        },
      },
    ] as const);
    await writeSafetensors(path, entries);
    peak = Math.max(peak, mem() - base);
    expect(peak).toBeLessThan(fileBytes / 8);

    const r = await SafetensorsReader.open(path);
    try {
      expect(r.keys()).toHaveLength(count);
      const before = mem();
      const t = await r.read('layer.17.weight');
      const used = mem() - before;
      expect(t.shape).toEqual([numel / 1024, 1024]);
      const d = t.data as Float32Array;
      expect(d[0]).toBe(-17);
      expect(d[1]).toBe(17.5);
      expect(d[numel - 1]).toBe(17.5);
      // One tensor (10 MiB) plus slack, far below the 320 MiB file.
      expect(used).toBeLessThan(fileBytes / 8);
    } finally {
      await r.close();
    }
    rmSync(path);
  });
});
