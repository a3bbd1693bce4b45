// NumPy .npz files: a zip archive of `<key>.npy` members.
//
// Writing: stored (no compression) members, ZIP64 where a size or offset needs it (the ADM
// suite's 50,000 x 256 x 256 x 3 uint8 sample file is 9.8 GB), a fixed 1980-01-01 time stamp
// so equal arrays give equal files. `np.load` reads them; `savez` order is kept.
// Reading: stored and deflated members (np.savez and np.savez_compressed), ZIP64, CRC checked
// on whole-member reads; stored members can be read row by row without loading the file.

import { closeSync, fstatSync, fsyncSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import * as zlib from 'node:zlib';
import { DataFormatError } from './errors.js';
import {
  decodeNpy, dtypeOf, dtypeSize, npyHeader, parseNpyHeader, typedFromBytes,
  type NpyArray, type NpyData, type NpyDtype, type NpyHeader,
} from './npy.js';

// ---------------------------------------------------------------------------------- crc32

let crcTable: Uint32Array | null = null;

/** CRC-32 (zip/PNG polynomial), continuing from `crc`. Node's zlib.crc32 when present. */
export function crc32(bytes: Uint8Array, crc = 0): number {
  const native = (zlib as { crc32?: (d: Uint8Array, v?: number) => number }).crc32;
  if (typeof native === 'function') return native(bytes, crc) >>> 0;
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = (crc ^ 0xffffffff) >>> 0;
  for (let i = 0; i < bytes.length; i++) c = crcTable[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// --------------------------------------------------------------------------------- writing

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const U32_MAX = 0xffffffff;
const DOS_DATE_1980 = (0 << 9) | (1 << 5) | 1; // 1980-01-01
const DOS_TIME_0 = 0;

interface Entry {
  name: Uint8Array;
  offset: number;
  size: number;
  crc: number;
  zip64: boolean;
}

function u16(v: number): Uint8Array {
  return new Uint8Array([v & 0xff, (v >>> 8) & 0xff]);
}
function u32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  return b;
}
function u64(v: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
  return b;
}
function concat(parts: Uint8Array[]): Uint8Array {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function localHeader(e: Entry): Uint8Array {
  const extra = e.zip64 ? concat([u16(1), u16(16), u64(e.size), u64(e.size)]) : new Uint8Array(0);
  return concat([
    u32(SIG_LOCAL), u16(e.zip64 ? 45 : 20), u16(0), u16(0), u16(DOS_TIME_0), u16(DOS_DATE_1980), u32(e.crc),
    u32(e.zip64 ? U32_MAX : e.size), u32(e.zip64 ? U32_MAX : e.size), u16(e.name.length), u16(extra.length), e.name, extra,
  ]);
}

function centralHeader(e: Entry): Uint8Array {
  const bigSize = e.zip64;
  const bigOffset = e.offset >= U32_MAX;
  const fields: Uint8Array[] = [];
  if (bigSize) fields.push(u64(e.size), u64(e.size));
  if (bigOffset) fields.push(u64(e.offset));
  const extra = fields.length ? concat([u16(1), u16(fields.length * 8), ...fields]) : new Uint8Array(0);
  const version = bigSize || bigOffset ? 45 : 20;
  return concat([
    u32(SIG_CENTRAL), u16((3 << 8) | version), u16(version), u16(0), u16(0), u16(DOS_TIME_0), u16(DOS_DATE_1980), u32(e.crc),
    u32(bigSize ? U32_MAX : e.size), u32(bigSize ? U32_MAX : e.size), u16(e.name.length), u16(extra.length), u16(0),
    u16(0), u16(0), u32(0o600 << 16), u32(bigOffset ? U32_MAX : e.offset), e.name, extra,
  ]);
}

function endRecords(entries: Entry[], cdOffset: number, cdSize: number): Uint8Array {
  const zip64 = entries.length >= 0xffff || cdOffset >= U32_MAX || cdSize >= U32_MAX;
  const parts: Uint8Array[] = [];
  if (zip64) {
    const z64Offset = cdOffset + cdSize;
    parts.push(
      u32(SIG_ZIP64_EOCD), u64(44), u16(45), u16(45), u32(0), u32(0), u64(entries.length), u64(entries.length),
      u64(cdSize), u64(cdOffset),
      u32(SIG_ZIP64_LOCATOR), u32(0), u64(z64Offset), u32(1),
    );
  }
  const n = Math.min(entries.length, 0xffff);
  parts.push(
    u32(SIG_EOCD), u16(0), u16(0), u16(n), u16(n), u32(cdSize >= U32_MAX ? U32_MAX : cdSize),
    u32(cdOffset >= U32_MAX ? U32_MAX : cdOffset), u16(0),
  );
  return concat(parts);
}

export interface NpzWriterOptions {
  /** Write ZIP64 size fields for every member, as numpy does (default: only where needed). */
  forceZip64?: boolean;
}

/**
 * Streams arrays into an .npz file: `begin(key, dtype, shape)`, `write(chunk)` until the
 * declared number of bytes is in, then the next `begin` or `close()`. The file appears at
 * `path` only on close (written to a temporary file, fsynced, renamed).
 */
export class NpzWriter {
  private fd: number | null;
  private readonly tmp: string;
  private pos = 0;
  private entries: Entry[] = [];
  private current: { entry: Entry; remaining: number; headerAt: number } | null = null;
  private readonly forceZip64: boolean;

  constructor(readonly path: string, options: NpzWriterOptions = {}) {
    this.tmp = `${path}.tmp-${process.pid}-${Date.now().toString(36)}`;
    this.fd = openSync(this.tmp, 'w');
    this.forceZip64 = options.forceZip64 ?? false;
  }

  private put(bytes: Uint8Array, at?: number): void {
    if (this.fd === null) throw new Error(`npz: ${this.path} is closed`);
    let done = 0;
    while (done < bytes.length) {
      done += writeSync(this.fd, bytes, done, bytes.length - done, at === undefined ? this.pos + done : at + done);
    }
    if (at === undefined) this.pos += bytes.length;
  }

  /** Starts member `<key>.npy` holding an array of `dtype` and `shape`; its data follows through write(). */
  begin(key: string, dtype: NpyDtype, shape: readonly number[]): void {
    this.finishCurrent();
    const name = new TextEncoder().encode(`${key}.npy`);
    if (this.entries.some((e) => Buffer.compare(e.name, name) === 0)) throw new Error(`npz: duplicate key '${key}'`);
    const head = npyHeader(dtype, shape);
    const dataBytes = shape.reduce((a, d) => a * d, 1) * dtypeSize(dtype);
    const size = head.length + dataBytes;
    const entry: Entry = { name, offset: this.pos, size, crc: 0, zip64: this.forceZip64 || size >= U32_MAX };
    const headerAt = this.pos;
    this.put(localHeader(entry));
    this.current = { entry, remaining: size, headerAt };
    this.write(head);
  }

  /** Appends bytes (any typed array, taken as its raw little-endian bytes) to the open member. */
  write(chunk: ArrayBufferView): void {
    const cur = this.current;
    if (!cur) throw new Error('npz: write() before begin()');
    const bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (bytes.length > cur.remaining) {
      throw new Error(`npz: ${bytes.length} bytes written but only ${cur.remaining} remain in '${new TextDecoder().decode(cur.entry.name)}'`);
    }
    cur.entry.crc = crc32(bytes, cur.entry.crc);
    this.put(bytes);
    cur.remaining -= bytes.length;
  }

  /** Writes a whole array as member `<key>.npy`. */
  add(key: string, data: NpyData, shape: readonly number[] = [data.length], dtype: NpyDtype = dtypeOf(data)): void {
    if (shape.reduce((a, d) => a * d, 1) !== data.length) throw new Error(`npz: ${data.length} values for shape [${shape.join(', ')}]`);
    this.begin(key, dtype, shape);
    this.write(data);
  }

  private finishCurrent(): void {
    const cur = this.current;
    if (!cur) return;
    if (cur.remaining !== 0) {
      throw new Error(`npz: member '${new TextDecoder().decode(cur.entry.name)}' is missing ${cur.remaining} bytes`);
    }
    // The CRC is known only now: patch it into the local header (offset 14).
    this.put(u32(cur.entry.crc), cur.headerAt + 14);
    this.entries.push(cur.entry);
    this.current = null;
  }

  /** Finishes the archive and moves it to `path`. */
  close(): void {
    this.finishCurrent();
    const cdOffset = this.pos;
    for (const e of this.entries) this.put(centralHeader(e));
    const cdSize = this.pos - cdOffset;
    this.put(endRecords(this.entries, cdOffset, cdSize));
    const fd = this.fd!;
    fsyncSync(fd);
    closeSync(fd);
    this.fd = null;
    renameSync(this.tmp, this.path);
  }

  /** Drops the partial file. */
  abort(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
    rmSync(this.tmp, { force: true });
  }
}

/** An array for writing: a typed array, or one with its shape (and dtype, for 'bool'). */
export type NpzInput = NpyData | { data: NpyData; shape?: readonly number[]; dtype?: NpyDtype };

function normalise(v: NpzInput): { data: NpyData; shape: readonly number[]; dtype: NpyDtype } {
  if (ArrayBuffer.isView(v)) return { data: v, shape: [v.length], dtype: dtypeOf(v) };
  return { data: v.data, shape: v.shape ?? [v.data.length], dtype: v.dtype ?? dtypeOf(v.data) };
}

/** Writes arrays to an .npz file (`np.savez(path, **arrays)`; positional arrays are `arr_0`, `arr_1`...). */
export function writeNpz(path: string, arrays: Record<string, NpzInput>, options: NpzWriterOptions = {}): void {
  const w = new NpzWriter(path, options);
  try {
    for (const [key, v] of Object.entries(arrays)) {
      const { data, shape, dtype } = normalise(v);
      w.add(key, data, shape, dtype);
    }
    w.close();
  } catch (e) {
    w.abort();
    throw e;
  }
}

/** Encodes arrays as .npz bytes in memory (small archives). */
export function encodeNpz(arrays: Record<string, NpzInput>, options: NpzWriterOptions = {}): Uint8Array {
  const parts: Uint8Array[] = [];
  const entries: Entry[] = [];
  let pos = 0;
  for (const [key, v] of Object.entries(arrays)) {
    const { data, shape, dtype } = normalise(v);
    if (shape.reduce((a, d) => a * d, 1) !== data.length) throw new Error(`npz: ${data.length} values for shape [${shape.join(', ')}]`);
    const head = npyHeader(dtype, shape);
    const body = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const size = head.length + body.length;
    const entry: Entry = {
      name: new TextEncoder().encode(`${key}.npy`), offset: pos, size, crc: crc32(body, crc32(head)),
      zip64: (options.forceZip64 ?? false) || size >= U32_MAX,
    };
    const lh = localHeader(entry);
    parts.push(lh, head, body);
    pos += lh.length + size;
    entries.push(entry);
  }
  const cd = concat(entries.map(centralHeader));
  parts.push(cd, endRecords(entries, pos, cd.length));
  return concat(parts);
}

// --------------------------------------------------------------------------------- reading

interface Member {
  name: string;
  method: number;
  crc: number;
  compressedSize: number;
  size: number;
  localOffset: number;
}

/** Reads little-endian fields from a byte window. */
class Reader {
  private dv: DataView;
  constructor(readonly bytes: Uint8Array) {
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  u16(o: number): number {
    return this.dv.getUint16(o, true);
  }
  u32(o: number): number {
    return this.dv.getUint32(o, true);
  }
  u64(o: number): number {
    const v = this.dv.getBigUint64(o, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error('npz: 64-bit field beyond 2^53');
    return Number(v);
  }
}

/** Random access to the bytes of an archive (a file or a buffer). */
interface Source {
  size: number;
  read(offset: number, length: number): Uint8Array;
  close(): void;
}

function fileSource(path: string): Source {
  const fd = openSync(path, 'r');
  let open = true;
  return {
    size: fstatSync(fd).size,
    read(offset, length) {
      const buf = Buffer.alloc(length);
      let done = 0;
      while (done < length) {
        const n = readSync(fd, buf, done, length - done, offset + done);
        if (n === 0) throw new DataFormatError(path, 'unexpected end of file');
        done += n;
      }
      return buf;
    },
    close() {
      if (open) closeSync(fd);
      open = false;
    },
  };
}

function bufferSource(bytes: Uint8Array): Source {
  return {
    size: bytes.length,
    read(offset, length) {
      if (offset + length > bytes.length) throw new Error('npz: read beyond the end');
      return bytes.subarray(offset, offset + length);
    },
    close() {},
  };
}

function readDirectory(src: Source, name: string): Member[] {
  const tailLen = Math.min(src.size, 22 + 0xffff);
  if (tailLen < 22) throw new DataFormatError(name, 'not a zip archive (too short)');
  const tail = new Reader(src.read(src.size - tailLen, tailLen));
  let eocd = -1;
  for (let i = tailLen - 22; i >= 0; i--) {
    if (tail.u32(i) === SIG_EOCD) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new DataFormatError(name, 'not a zip archive (no end of central directory)');
  let count = tail.u16(eocd + 10);
  let cdSize = tail.u32(eocd + 12);
  let cdOffset = tail.u32(eocd + 16);
  if (count === 0xffff || cdSize === U32_MAX || cdOffset === U32_MAX) {
    const locAt = src.size - tailLen + eocd - 20;
    if (locAt < 0) throw new DataFormatError(name, 'ZIP64 locator missing');
    const loc = new Reader(src.read(locAt, 20));
    if (loc.u32(0) !== SIG_ZIP64_LOCATOR) throw new DataFormatError(name, 'ZIP64 locator missing');
    const z = new Reader(src.read(loc.u64(8), 56));
    if (z.u32(0) !== SIG_ZIP64_EOCD) throw new DataFormatError(name, 'bad ZIP64 end of central directory');
    count = z.u64(32);
    cdSize = z.u64(40);
    cdOffset = z.u64(48);
  }
  const cd = new Reader(src.read(cdOffset, cdSize));
  const members: Member[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (cd.u32(p) !== SIG_CENTRAL) throw new DataFormatError(name, 'bad central directory entry');
    const flags = cd.u16(p + 8);
    const method = cd.u16(p + 10);
    const crc = cd.u32(p + 16);
    let compressedSize = cd.u32(p + 20);
    let size = cd.u32(p + 24);
    const nameLen = cd.u16(p + 28);
    const extraLen = cd.u16(p + 30);
    const commentLen = cd.u16(p + 32);
    let localOffset = cd.u32(p + 42);
    const memberName = new TextDecoder(flags & 0x800 ? 'utf-8' : 'latin1').decode(cd.bytes.subarray(p + 46, p + 46 + nameLen));
    // ZIP64 extra field: the fields that are 0xFFFFFFFF above, in this order.
    let e = p + 46 + nameLen;
    const eEnd = e + extraLen;
    while (e + 4 <= eEnd) {
      const id = cd.u16(e);
      const len = cd.u16(e + 2);
      if (id === 1) {
        let q = e + 4;
        if (size === U32_MAX) {
          size = cd.u64(q);
          q += 8;
        }
        if (compressedSize === U32_MAX) {
          compressedSize = cd.u64(q);
          q += 8;
        }
        if (localOffset === U32_MAX) localOffset = cd.u64(q);
      }
      e += 4 + len;
    }
    if (flags & 1) throw new DataFormatError(name, `member ${memberName} is encrypted`);
    members.push({ name: memberName, method, crc, compressedSize, size, localOffset });
    p = eEnd + commentLen;
  }
  return members;
}

/** An .npz archive opened for reading: keys, headers, whole arrays, or rows of stored arrays. */
export class NpzFile {
  private readonly members = new Map<string, Member>();
  private readonly dataStart = new Map<string, number>();

  private constructor(private readonly src: Source, readonly name: string) {
    for (const m of readDirectory(src, name)) {
      if (!m.name.endsWith('.npy')) continue;
      this.members.set(m.name.slice(0, -4), m);
    }
  }

  /** Opens a file (its members are read on demand). */
  static open(path: string): NpzFile {
    const src = fileSource(path);
    try {
      return new NpzFile(src, path);
    } catch (e) {
      src.close();
      throw e;
    }
  }

  /** Reads from bytes in memory. */
  static fromBytes(bytes: Uint8Array, name = '<npz>'): NpzFile {
    return new NpzFile(bufferSource(bytes), name);
  }

  /** Array names (without '.npy'), in archive order. */
  get keys(): string[] {
    return [...this.members.keys()];
  }

  private member(key: string): Member {
    const m = this.members.get(key);
    if (!m) throw new DataFormatError(this.name, `no array '${key}' (has: ${this.keys.join(', ') || 'none'})`);
    return m;
  }

  private start(key: string): number {
    let s = this.dataStart.get(key);
    if (s === undefined) {
      const m = this.member(key);
      const lh = new Reader(this.src.read(m.localOffset, 30));
      if (lh.u32(0) !== SIG_LOCAL) throw new DataFormatError(this.name, `bad local header for ${m.name}`);
      s = m.localOffset + 30 + lh.u16(26) + lh.u16(28);
      this.dataStart.set(key, s);
    }
    return s;
  }

  private memberBytes(key: string): Uint8Array {
    const m = this.member(key);
    const raw = this.src.read(this.start(key), m.compressedSize);
    let bytes: Uint8Array;
    if (m.method === 0) bytes = raw;
    else if (m.method === 8) bytes = zlib.inflateRawSync(raw);
    else throw new DataFormatError(this.name, `member ${m.name} uses compression method ${m.method} (stored and deflate only)`);
    if (bytes.length !== m.size) throw new DataFormatError(this.name, `member ${m.name}: ${bytes.length} bytes, directory says ${m.size}`);
    if (crc32(bytes) !== m.crc) throw new DataFormatError(this.name, `member ${m.name}: CRC mismatch (corrupt file)`);
    return bytes;
  }

  /** The .npy header of an array (dtype, shape) without reading its data (stored members). */
  header(key: string): NpyHeader {
    const m = this.member(key);
    if (m.method !== 0) return parseNpyHeader(this.memberBytes(key), `${this.name}:${m.name}`);
    const first = this.src.read(this.start(key), Math.min(m.size, 4096));
    let h: NpyHeader;
    try {
      h = parseNpyHeader(first, `${this.name}:${m.name}`);
    } catch (e) {
      if (m.size <= 4096) throw e;
      h = parseNpyHeader(this.src.read(this.start(key), Math.min(m.size, 1 << 20)), `${this.name}:${m.name}`);
    }
    return h;
  }

  /** A whole array. */
  get(key: string): NpyArray {
    return decodeNpy(this.memberBytes(key), `${this.name}:${key}.npy`);
  }

  /** Rows [start, start + count) along the first axis of a stored (uncompressed) array. */
  readRows(key: string, start: number, count: number): NpyData {
    const m = this.member(key);
    if (m.method !== 0) throw new DataFormatError(this.name, `readRows needs a stored member; ${m.name} is compressed`);
    const h = this.header(key);
    if (h.shape.length === 0) throw new DataFormatError(this.name, `${m.name} is 0-d`);
    const rows = h.shape[0];
    if (!(start >= 0 && count >= 0 && start + count <= rows)) throw new RangeError(`npz: rows [${start}, ${start + count}) outside 0..${rows}`);
    const rowBytes = h.shape.slice(1).reduce((a, d) => a * d, 1) * dtypeSize(h.dtype);
    const bytes = this.src.read(this.start(key) + h.dataOffset + start * rowBytes, count * rowBytes);
    return typedFromBytes(h.dtype, bytes);
  }

  close(): void {
    this.src.close();
  }
}

/** Reads every array of an .npz file or bytes. */
export async function readNpz(input: string | Uint8Array): Promise<Record<string, NpyArray>> {
  const f = typeof input === 'string' ? NpzFile.fromBytes(await readFile(input), input) : NpzFile.fromBytes(input);
  const out: Record<string, NpyArray> = {};
  for (const k of f.keys) out[k] = f.get(k);
  f.close();
  return out;
}

/**
 * Streams uint8 NHWC samples into an .npz with the single array `arr_0` [n, h, w, c], the
 * layout of the reference's sample.npz and the ADM evaluation suite's input.
 */
export class SampleNpzWriter {
  private readonly w: NpzWriter;
  private written = 0;

  constructor(path: string, readonly count: number, readonly height: number, readonly width: number, readonly channels = 3) {
    this.w = new NpzWriter(path);
    this.w.begin('arr_0', 'uint8', [count, height, width, channels]);
  }

  /** Appends `k` images, HWC each, back to back. */
  append(images: Uint8Array): void {
    const per = this.height * this.width * this.channels;
    if (images.length % per !== 0) throw new Error(`npz samples: ${images.length} bytes is not a whole number of ${this.height}x${this.width}x${this.channels} images`);
    if (this.written + images.length / per > this.count) throw new Error(`npz samples: more than the declared ${this.count} images`);
    this.w.write(images);
    this.written += images.length / per;
  }

  get appended(): number {
    return this.written;
  }

  close(): void {
    if (this.written !== this.count) {
      this.w.abort();
      throw new Error(`npz samples: ${this.written} of the declared ${this.count} images were written`);
    }
    this.w.close();
  }

  abort(): void {
    this.w.abort();
  }
}
