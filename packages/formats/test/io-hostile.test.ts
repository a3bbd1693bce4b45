// Hostile and broken PyTorch checkpoints: each must fail with a CheckpointError that names
// the problem (and the file), never crash, never run anything.
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CheckpointError,
  MemorySource,
  PyOpaqueObject,
  TorchCheckpoint,
  ZipReader,
  loadTorchStateDict,
  unpickle,
} from '../src/index.js';
import { RandomAccessFile } from '../src/file.js';
import { crc32 } from '../src/zip.js';

const FIX = join(import.meta.dirname, 'fixtures');
const TMP = mkdtempSync(join(tmpdir(), 'ibq-io-hostile-'));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));
const MARKERS = ['/tmp/ibq-fixture-pwned', join(TMP, 'pwned')];

let n = 0;
function tmpFile(bytes: Uint8Array, name = `f${n++}.pt`): string {
  const p = join(TMP, name);
  writeFileSync(p, bytes);
  return p;
}

/** Open and read every tensor; resolves to the state dict or rejects. */
async function loadAll(path: string, opts?: Parameters<typeof TorchCheckpoint.open>[1]) {
  const ck = await TorchCheckpoint.open(path, opts);
  try {
    for (const t of ck.tensors) await ck.read(t);
    return ck.root;
  } finally {
    await ck.close();
  }
}

async function expectCheckpointError(p: Promise<unknown>, pattern: RegExp): Promise<CheckpointError> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err, `expected a CheckpointError matching ${pattern}`).toBeInstanceOf(CheckpointError);
  expect((err as Error).message).toMatch(pattern);
  return err as CheckpointError;
}

// ---- a tiny zip writer (stored or deflated entries, optional zip64 records) -----------------

interface ZipIn {
  name: string;
  data: Uint8Array;
  deflate?: boolean;
  /** Lie about the uncompressed size. */
  claimSize?: number;
}

function makeZip(entries: ZipIn[], { zip64 = false } = {}): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let pos = 0;
  const enc = new TextEncoder();
  for (const e of entries) {
    const name = enc.encode(e.name);
    const body = e.deflate ? deflateRawSync(e.data) : e.data;
    const crc = crc32(e.data);
    const usize = e.claimSize ?? e.data.byteLength;
    const local = new DataView(new ArrayBuffer(30));
    local.setUint32(0, 0x04034b50, true);
    local.setUint16(4, 20, true);
    local.setUint16(8, e.deflate ? 8 : 0, true);
    local.setUint32(14, crc, true);
    local.setUint32(18, body.byteLength, true);
    local.setUint32(22, usize, true);
    local.setUint16(26, name.byteLength, true);
    const cen = new DataView(new ArrayBuffer(46));
    cen.setUint32(0, 0x02014b50, true);
    cen.setUint16(4, 45, true);
    cen.setUint16(6, 20, true);
    cen.setUint16(10, e.deflate ? 8 : 0, true);
    cen.setUint32(16, crc, true);
    cen.setUint16(28, name.byteLength, true);
    let extra = new Uint8Array(0);
    if (zip64) {
      cen.setUint32(20, 0xffffffff, true);
      cen.setUint32(24, 0xffffffff, true);
      cen.setUint32(42, 0xffffffff, true);
      const x = new DataView(new ArrayBuffer(28));
      x.setUint16(0, 1, true);
      x.setUint16(2, 24, true);
      x.setBigUint64(4, BigInt(usize), true);
      x.setBigUint64(12, BigInt(body.byteLength), true);
      x.setBigUint64(20, BigInt(pos), true);
      extra = new Uint8Array(x.buffer);
    } else {
      cen.setUint32(20, body.byteLength, true);
      cen.setUint32(24, usize, true);
      cen.setUint32(42, pos, true);
    }
    cen.setUint16(30, extra.byteLength, true);
    parts.push(new Uint8Array(local.buffer), name, body);
    pos += 30 + name.byteLength + body.byteLength;
    central.push(new Uint8Array(cen.buffer), name, extra);
  }
  const cdOffset = pos;
  const cdSize = central.reduce((s, c) => s + c.byteLength, 0);
  const tail: Uint8Array[] = [];
  if (zip64) {
    const r = new DataView(new ArrayBuffer(56));
    r.setUint32(0, 0x06064b50, true);
    r.setBigUint64(4, 44n, true);
    r.setUint16(12, 45, true);
    r.setUint16(14, 45, true);
    r.setBigUint64(24, BigInt(entries.length), true);
    r.setBigUint64(32, BigInt(entries.length), true);
    r.setBigUint64(40, BigInt(cdSize), true);
    r.setBigUint64(48, BigInt(cdOffset), true);
    const loc = new DataView(new ArrayBuffer(20));
    loc.setUint32(0, 0x07064b50, true);
    loc.setBigUint64(8, BigInt(cdOffset + cdSize), true);
    loc.setUint32(16, 1, true);
    tail.push(new Uint8Array(r.buffer), new Uint8Array(loc.buffer));
  }
  const eocd = new DataView(new ArrayBuffer(22));
  eocd.setUint32(0, 0x06054b50, true);
  eocd.setUint16(8, zip64 ? 0xffff : entries.length, true);
  eocd.setUint16(10, zip64 ? 0xffff : entries.length, true);
  eocd.setUint32(12, zip64 ? 0xffffffff : cdSize, true);
  eocd.setUint32(16, zip64 ? 0xffffffff : cdOffset, true);
  tail.push(new Uint8Array(eocd.buffer));
  return Buffer.concat([...parts, ...central, ...tail]);
}

// ---- a tiny pickle builder ------------------------------------------------------------------

const ascii = (s: string) => [...Buffer.from(s, 'latin1')];
const P = {
  proto: (v: number) => [0x80, v],
  global: (m: string, n: string) => [0x63, ...ascii(`${m}\n${n}\n`)],
  str: (s: string) => {
    const b = Buffer.from(s, 'utf8');
    return [0x58, b.length & 0xff, (b.length >> 8) & 0xff, (b.length >> 16) & 0xff, b.length >>> 24, ...b];
  },
  stackGlobal: (m: string, n: string) => [...P.str(m), ...P.str(n), 0x93],
  tuple1: 0x85,
  reduce: 0x52,
  mark: 0x28,
  tuple: 0x74,
  emptyDict: 0x7d,
  setitem: 0x73,
  stop: 0x2e,
};
const pkl = (...ops: (number | number[])[]) => Uint8Array.from(ops.flat());
const dictOf = (key: string, value: number[]) => [P.emptyDict, ...P.str(key), ...value, P.setitem];
const torchZip = (dataPkl: Uint8Array, folder = 'archive', extra: ZipIn[] = []) =>
  makeZip([{ name: `${folder}/data.pkl`, data: dataPkl }, ...extra]);

// ---------------------------------------------------------------------------------------------

describe('code-running pickles are rejected by name, nothing runs', () => {
  afterAll(() => {
    for (const m of MARKERS) expect(existsSync(m), m).toBe(false);
  });

  it.each([
    ['hostile_posix_system.pt', /\[[^\]]*data\.pkl\]: pickle global 'posix\.system' is not allowed/],
    ['hostile_eval.pt', /pickle global 'builtins\.eval' is not allowed/],
    // Protocol 2 writes Python 2 names (fix_imports): subprocess.Popen is stored as commands.Popen.
    ['hostile_popen_legacy.pt', /\[object pickle\]: pickle global 'commands\.Popen' is not allowed/],
  ])('%s (made by Python pickle)', async (name, pattern) => {
    const err = await expectCheckpointError(loadAll(join(FIX, name)), pattern);
    expect(err.file).toContain(name);
  });

  const cmd = `touch ${MARKERS[1]}`;
  const cases: [string, Uint8Array, string][] = [
    ['GLOBAL os.system + REDUCE (protocol 0 style)', pkl(P.global('os', 'system'), P.mark, P.str(cmd), P.tuple, P.reduce, P.stop), 'os.system'],
    ['GLOBAL posix.system, protocol 2', pkl(P.proto(2), dictOf('w', [...P.global('posix', 'system'), ...P.str(cmd), P.tuple1, P.reduce]), P.stop), 'posix.system'],
    ['STACK_GLOBAL posix.system, protocol 4', pkl(P.proto(4), P.stackGlobal('posix', 'system'), P.str(cmd), P.tuple1, P.reduce, P.stop), 'posix.system'],
    ['__builtin__.getattr', pkl(P.proto(2), P.global('__builtin__', 'getattr'), P.stop), '__builtin__.getattr'],
    ['builtins.exec', pkl(P.proto(2), P.global('builtins', 'exec'), P.stop), 'builtins.exec'],
    ['subprocess.Popen', pkl(P.proto(2), P.global('subprocess', 'Popen'), P.stop), 'subprocess.Popen'],
    ['INST os.system', pkl(P.mark, P.str(cmd), 0x69, ascii('os\nsystem\n'), P.stop), 'os.system'],
    ['a torch name off the allow-list', pkl(P.proto(2), P.global('torch', 'load'), P.stop), 'torch.load'],
    ['a lookalike of an allowed name', pkl(P.proto(2), P.global('torch._utils', '_rebuild_tensor_v2.__globals__'), P.stop), 'torch._utils._rebuild_tensor_v2.__globals__'],
  ];
  it.each(cases)('%s', async (_label, data, global) => {
    const path = tmpFile(torchZip(data));
    const escaped = global.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    await expectCheckpointError(loadAll(path), new RegExp(`archive/data\\.pkl\\]: pickle global '${escaped}' is not allowed`));
  });

  it('in a legacy-format file too', async () => {
    const legacy = readFileSync(join(FIX, 'legacy_v2.pt'));
    // Keep the magic, version and sys_info pickles of a real file, then a hostile object pickle.
    const src = legacy;
    const headerEnd = legacyHeaderEnd(src);
    const evil = pkl(P.proto(2), P.global('posix', 'system'), P.str(cmd), P.tuple1, P.reduce, P.stop);
    const path = tmpFile(Buffer.concat([src.subarray(0, headerEnd), evil, pkl(P.proto(2), 0x5d, P.stop)]));
    await expectCheckpointError(loadAll(path), /\[object pickle\]: pickle global 'posix\.system' is not allowed/);
  });

  it("unknownGlobals: 'opaque' records the call as inert data and still runs nothing", async () => {
    const data = pkl(P.proto(2), dictOf('w', [...P.global('posix', 'system'), ...P.str(cmd), P.tuple1, P.reduce]), P.stop);
    const root = (await loadAll(tmpFile(torchZip(data)), { unknownGlobals: 'opaque' })) as Map<string, unknown>;
    const w = root.get('w') as PyOpaqueObject;
    expect(w).toBeInstanceOf(PyOpaqueObject);
    expect(w.callee).toBe('posix.system');
    expect(w.args).toEqual([cmd]);
  });
});

/** Byte offset where the object pickle of a legacy file starts (after its first three pickles). */
function legacyHeaderEnd(buf: Uint8Array): number {
  const src = new MemorySource(buf);
  const reject = (m: string, n: string): never => {
    throw new Error(`${m}.${n}`);
  };
  for (let i = 0; i < 3; i++) unpickle(src, { resolveGlobal: reject });
  return src.position;
}

describe('absurd sizes and offsets', () => {
  it.each([
    ['hostile_numel.pt', /\[archive\/data\/0\]: storage "0" claims 1000000000000 FloatStorage elements \(4000000000000 bytes\) but its archive entry has 16 bytes/],
    ['hostile_offset.pt', /\[w\]: tensor \[2\] with strides \[1\] and storage offset 1099511627776 needs \d+ bytes but its storage "0" has 16/],
    ['hostile_negative_offset.pt', /storage offset must be a non-negative integer, got number -8/],
    ['hostile_shape.pt', /\[w\]: tensor \[3, 2\] with strides \[2, 1\] and storage offset 0 needs 24 bytes but its storage "0" has 16/],
    ['hostile_missing_storage.pt', /\[archive\/data\/9\]: storage "9" has no archive entry/],
    ['hostile_zip_bomb.pt', /\[archive\/data\.pkl\]: zip: deflated entry claims 4294967280 bytes from \d+ compressed bytes, an impossible ratio/],
  ])('%s', async (name, pattern) => {
    await expectCheckpointError(loadAll(join(FIX, name)), pattern);
  });

  it('a deflated entry that inflates past its (plausible) size claim', async () => {
    const big = new Uint8Array(1 << 22); // 4 MiB of zeros deflates to ~4 KiB
    const path = tmpFile(torchZip(pkl(P.proto(2), P.emptyDict, P.stop), 'archive', [{ name: 'archive/data/0', data: big, deflate: true, claimSize: 100_000 }]));
    const ck = await TorchCheckpoint.open(path); // data/0 is not used by any tensor
    await ck.close();
    const zip = await ZipReader.open(await RandomAccessFile.open(path));
    try {
      await expectCheckpointError(zip.readEntry('archive/data/0'), /\[archive\/data\/0\]: zip: cannot inflate entry/);
    } finally {
      await zip.close();
    }
  });

  it('pickle length fields larger than the data', async () => {
    const huge = pkl(P.proto(4), [0x8d, 0, 0, 0, 0, 0, 0, 0, 0x10], P.stop); // BINUNICODE8 of 2^60 bytes
    await expectCheckpointError(loadAll(tmpFile(torchZip(huge))), /data\.pkl\]: pickle: length 1152921504606846976 exceeds the \d+ bytes left/);
    const long4 = pkl(P.proto(2), [0x8b, 0xff, 0xff, 0xff, 0x7f], P.stop); // LONG4 of 2 GiB
    await expectCheckpointError(loadAll(tmpFile(torchZip(long4))), /pickle: length 2147483647 exceeds/);
  });

  it('malformed pickles', async () => {
    const cases: [Uint8Array, RegExp][] = [
      [pkl(P.proto(2), P.emptyDict), /pickle data truncated.*truncated file\?/],
      [pkl(P.proto(2), 0xff, P.stop), /unknown opcode 0xff/],
      [pkl(P.proto(2), 0x68, 5, P.stop), /memo key 5 not found/],
      [pkl(P.proto(2), P.reduce, P.stop), /stack underflow/],
      [pkl(P.proto(2), [0x82, 1], P.stop), /extension codes are not supported/],
      [pkl(P.proto(6), P.stop), /unsupported pickle protocol 6/],
      [pkl(P.proto(5), 0x97, P.stop), /out-of-band buffers/],
      [pkl(P.proto(2), [0x4b, 1], [0x4b, 2], P.tuple1, P.reduce, P.stop), /cannot call number 1/],
      [pkl(P.proto(2), P.mark, [0x4b, 1], [0x51], P.stop), /persistent id|stack underflow|unsupported persistent/],
      [pkl(P.proto(2), P.mark, P.str('storage'), P.global('torch', 'FloatStorage'), P.str('0'), P.str('cpu'), [0x4a, 0xff, 0xff, 0xff, 0xff], P.tuple, 0x51, P.stop), /element count must be a non-negative integer/],
      [pkl(P.proto(2), P.global('torch._utils', '_rebuild_tensor_v2'), P.mark, P.str('x'), P.tuple, P.reduce, P.stop), /_rebuild_tensor_v2: expected 6 or 7 arguments, got 1/],
      [pkl(P.proto(2), P.global('collections', 'OrderedDict'), P.str('abc'), P.tuple1, P.reduce, P.stop), /collections\.OrderedDict: cannot build from string/],
    ];
    for (const [data, pattern] of cases) await expectCheckpointError(loadAll(tmpFile(torchZip(data))), pattern);
  });

  it('a tensor whose storage is not a storage, and unsupported persistent ids', async () => {
    const fake = pkl(P.proto(2), P.global('torch._utils', '_rebuild_tensor_v2'), P.mark, P.str('s'), [0x4b, 0], P.mark, P.tuple, P.mark, P.tuple, 0x89, P.emptyDict, P.tuple, P.reduce, P.stop);
    await expectCheckpointError(loadAll(tmpFile(torchZip(fake))), /_rebuild_tensor_v2: expected a storage, got string s/);
    const modulePid = pkl(P.proto(2), P.mark, P.str('module'), P.str('x'), P.tuple, 0x51, P.stop);
    await expectCheckpointError(loadAll(tmpFile(torchZip(modulePid))), /unsupported persistent id a tuple of 2 \(only 'storage' ids\)/);
  });
});

describe('truncated and corrupt files', () => {
  it('every truncation of a zip checkpoint is a clear error', async () => {
    const full = readFileSync(join(FIX, 'zip_v2.pt'));
    const path = join(TMP, 'trunc.pt');
    const messages = new Set<string>();
    for (let len = 0; len < full.byteLength; len += len < 64 ? 7 : 97) {
      writeFileSync(path, full.subarray(0, len));
      const err = await expectCheckpointError(loadAll(path), /./);
      expect(err.message.startsWith(path)).toBe(true);
      messages.add(err.detail.replace(/\d+/g, 'N'));
    }
    expect([...messages].some((m) => /end of central directory not found \(truncated or not a zip archive\)|empty file/.test(m))).toBe(true);
  });

  it('every truncation of a legacy checkpoint is a clear error', async () => {
    const full = readFileSync(join(FIX, 'legacy_v2.pt'));
    const path = join(TMP, 'trunc-legacy.pt');
    for (let len = 1; len < full.byteLength; len += 41) {
      writeFileSync(path, full.subarray(0, len));
      await expectCheckpointError(loadAll(path), /truncated|runs past the end of the file|not a PyTorch checkpoint|outside the file/);
    }
    writeFileSync(path, full.subarray(0, full.byteLength - 3));
    await expectCheckpointError(loadAll(path), /\[storage \d+\]: storage of \d+ elements \(\d+ bytes at offset \d+\) runs past the end of the file .*truncated file/);
  });

  it('a central directory pointing past the end of the file', async () => {
    const full = new Uint8Array(readFileSync(join(FIX, 'zip_v2.pt')));
    const dv = new DataView(full.buffer);
    dv.setUint32(full.byteLength - 22 + 16, 0x7fffffff, true);
    await expectCheckpointError(loadAll(tmpFile(full)), /zip: central directory \[2147483647, \d+\) lies beyond the end of the file/);
  });

  it('corrupt data.pkl bytes fail the CRC check', async () => {
    const zip = await ZipReader.open(await RandomAccessFile.open(join(FIX, 'zip_v2.pt')));
    const e = zip.entry('zip_v2/data.pkl');
    const off = await zip.dataOffset(e);
    await zip.close();
    const bytes = new Uint8Array(readFileSync(join(FIX, 'zip_v2.pt')));
    bytes[off + 10]! ^= 0x55;
    await expectCheckpointError(loadAll(tmpFile(bytes)), /\[zip_v2\/data\.pkl\]: zip: CRC-32 mismatch/);
  });

  it('random byte flips in a legacy file give data or a CheckpointError, nothing else', async () => {
    const full = readFileSync(join(FIX, 'legacy_v2.pt'));
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const path = join(TMP, 'flip.pt');
    let failures = 0;
    for (let i = 0; i < 150; i++) {
      const b = new Uint8Array(full);
      for (let k = 0; k < 3; k++) b[Math.floor(rand() * b.byteLength)] = Math.floor(rand() * 256);
      writeFileSync(path, b);
      try {
        await loadAll(path);
      } catch (e) {
        expect(e, String(e)).toBeInstanceOf(CheckpointError);
        failures++;
      }
    }
    expect(failures).toBeGreaterThan(0);
  });

  it('not a checkpoint at all', async () => {
    await expectCheckpointError(loadAll(tmpFile(new TextEncoder().encode('hello world'))), /not a PyTorch checkpoint: neither a zip archive nor a pickle/);
    await expectCheckpointError(loadAll(tmpFile(new Uint8Array(0))), /empty file/);
    await expectCheckpointError(loadAll(tmpFile(pkl(P.proto(2), [0x4b, 7], P.stop))), /a pickle of number 7 instead of torch's magic number/);
    await expectCheckpointError(loadAll(tmpFile(makeZip([{ name: 'a/b.txt', data: new Uint8Array(3) }]))), /zip archive has no data\.pkl/);
  });
});

describe('zip variants read like the original', () => {
  it('re-zipped with deflate, zip64 records and another folder name', async () => {
    const orig = await loadTorchStateDict(join(FIX, 'zip_v2.pt'));
    const zip = await ZipReader.open(await RandomAccessFile.open(join(FIX, 'zip_v2.pt')));
    const entries: ZipIn[] = [];
    for (const name of zip.entries.keys()) {
      entries.push({ name: name.replace(/^zip_v2\//, 'some model/'), data: await zip.readEntry(name), deflate: true });
    }
    await zip.close();
    for (const zip64 of [false, true]) {
      const sd = await loadTorchStateDict(tmpFile(makeZip(entries, { zip64 })));
      expect([...sd.keys()]).toEqual([...orig.keys()]);
      for (const [k, t] of sd) expect(t, k).toEqual(orig.get(k));
    }
  });
});

// ---- multi-GB archives are read lazily ------------------------------------------------------

/**
 * Write a zip64 archive to `path` where each entry is `size` bytes of which only `chunks`
 * are written: the rest is a hole, so a 5 GiB storage costs no disk and no time.
 */
function writeSparseZip64(path: string, entries: { name: string; size: number; chunks: [number, Uint8Array][]; crc?: number }[]): void {
  const fd = openSync(path, 'w');
  try {
    const central: Buffer[] = [];
    let pos = 0;
    for (const e of entries) {
      const name = Buffer.from(e.name);
      const local = Buffer.alloc(30 + name.length + 20);
      local.writeUInt32LE(0x04034b50, 0);
      local.writeUInt16LE(45, 4);
      local.writeUInt32LE(e.crc ?? 0, 14);
      local.writeUInt32LE(0xffffffff, 18);
      local.writeUInt32LE(0xffffffff, 22);
      local.writeUInt16LE(name.length, 26);
      local.writeUInt16LE(20, 28);
      name.copy(local, 30);
      local.writeUInt16LE(1, 30 + name.length);
      local.writeUInt16LE(16, 32 + name.length);
      local.writeBigUInt64LE(BigInt(e.size), 34 + name.length);
      local.writeBigUInt64LE(BigInt(e.size), 42 + name.length);
      writeSync(fd, local, 0, local.length, pos);
      const dataStart = pos + local.length;
      for (const [off, bytes] of e.chunks) writeSync(fd, bytes, 0, bytes.length, dataStart + off);
      const cen = Buffer.alloc(46 + name.length + 28);
      cen.writeUInt32LE(0x02014b50, 0);
      cen.writeUInt16LE(45, 4);
      cen.writeUInt16LE(45, 6);
      cen.writeUInt32LE(e.crc ?? 0, 16);
      cen.writeUInt32LE(0xffffffff, 20);
      cen.writeUInt32LE(0xffffffff, 24);
      cen.writeUInt16LE(name.length, 28);
      cen.writeUInt16LE(28, 30);
      cen.writeUInt32LE(0xffffffff, 42);
      name.copy(cen, 46);
      cen.writeUInt16LE(1, 46 + name.length);
      cen.writeUInt16LE(24, 48 + name.length);
      cen.writeBigUInt64LE(BigInt(e.size), 50 + name.length);
      cen.writeBigUInt64LE(BigInt(e.size), 58 + name.length);
      cen.writeBigUInt64LE(BigInt(pos), 66 + name.length);
      central.push(cen);
      pos = dataStart + e.size;
    }
    const cd = Buffer.concat(central);
    const rec = Buffer.alloc(56 + 20 + 22);
    rec.writeUInt32LE(0x06064b50, 0);
    rec.writeBigUInt64LE(44n, 4);
    rec.writeBigUInt64LE(BigInt(entries.length), 24);
    rec.writeBigUInt64LE(BigInt(entries.length), 32);
    rec.writeBigUInt64LE(BigInt(cd.length), 40);
    rec.writeBigUInt64LE(BigInt(pos), 48);
    rec.writeUInt32LE(0x07064b50, 56);
    rec.writeBigUInt64LE(BigInt(pos + cd.length), 64);
    rec.writeUInt32LE(1, 72);
    rec.writeUInt32LE(0x06054b50, 76);
    rec.writeUInt16LE(0xffff, 84);
    rec.writeUInt16LE(0xffff, 86);
    rec.writeUInt32LE(0xffffffff, 88);
    rec.writeUInt32LE(0xffffffff, 92);
    writeSync(fd, Buffer.concat([cd, rec]), 0, cd.length + rec.length, pos);
  } finally {
    closeSync(fd);
  }
}

/** A torch data.pkl: {name: _rebuild_tensor_v2(storage '0' (f32, numel), offset, (size,), (1,), False, OrderedDict())}. */
function tensorDictPickle(numel: number, tensors: [string, number, number][]): Uint8Array {
  const int = (v: number) => [0x4a, ...Buffer.from(Int32Array.of(v).buffer)];
  const ops: number[] = [...P.proto(2), P.emptyDict];
  for (const [name, offset, size] of tensors) {
    ops.push(...P.str(name), ...P.global('torch._utils', '_rebuild_tensor_v2'), P.mark);
    ops.push(P.mark, ...P.str('storage'), ...P.global('torch', 'FloatStorage'), ...P.str('0'), ...P.str('cpu'), ...int(numel), P.tuple, 0x51);
    ops.push(...int(offset), ...int(size), P.tuple1, ...int(1), P.tuple1, 0x89);
    ops.push(...P.global('collections', 'OrderedDict'), 0x29, P.reduce, P.tuple, P.reduce, P.setitem);
  }
  ops.push(P.stop);
  return Uint8Array.from(ops);
}

describe('a 5 GiB zip64 checkpoint is read lazily by offset', () => {
  it('opens and reads two small views of a 5 GiB storage with a few MB of memory', async () => {
    const numel = 5 * 2 ** 28; // 5 GiB of f32
    const head = new Float32Array([1, 2, 3, 4]);
    const tail = new Float32Array([9, 8, 7, 6, 5, 4, 3, 2]);
    const pklBytes = tensorDictPickle(numel, [['head', 0, 4], ['tail', numel - 8, 8]]);
    const path = join(TMP, 'huge.pt');
    writeSparseZip64(path, [
      { name: 'huge/data/0', size: numel * 4, chunks: [[0, new Uint8Array(head.buffer)], [numel * 4 - 32, new Uint8Array(tail.buffer)]] },
      { name: 'huge/data.pkl', size: pklBytes.length, chunks: [[0, pklBytes]], crc: crc32(pklBytes) },
    ]);
    const mem = () => process.memoryUsage().heapUsed + process.memoryUsage().external;
    const before = mem();
    const ck = await TorchCheckpoint.open(path);
    try {
      const sd = ck.stateDict();
      expect(sd.get('tail')!.storage.byteLength).toBe(5 * 2 ** 30);
      expect((await ck.read(sd.get('head')!)).data).toEqual(head);
      expect((await ck.read(sd.get('tail')!)).data).toEqual(tail);
      expect(mem() - before).toBeLessThan(32 * 2 ** 20);
    } finally {
      await ck.close();
      rmSync(path);
    }
  });
});

describe('deep nesting', () => {
  it('200,000 nested lists do not overflow the stack (nothing recurses)', async () => {
    const depth = 200_000;
    const ops = new Uint8Array(2 + depth * 2 + 1 + depth + 1);
    let i = 0;
    ops[i++] = 0x80;
    ops[i++] = 2;
    for (let d = 0; d < depth; d++) (ops[i++] = 0x5d), (ops[i++] = 0x28); // EMPTY_LIST MARK ...
    ops[i++] = 0x5d;
    for (let d = 0; d < depth; d++) ops[i++] = 0x65; // ... APPENDS
    ops[i++] = P.stop;
    const root = await loadAll(tmpFile(torchZip(ops)));
    let x = root as unknown[];
    let n = 0;
    while (x.length) (x = x[0] as unknown[]), n++;
    expect(n).toBe(depth);
  });
});
