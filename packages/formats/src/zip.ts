// The project's zip archive code, read and write: CRC-32, stored and deflated entries, ZIP64
// both ways. Reading parses the end of central directory (zip64 too) and the central directory,
// then reads entry data by file position on demand, so a multi-GB archive is never read whole;
// every size and offset is checked against the file before anything is allocated (hostile
// files: zip bombs, lying sizes, truncation). Writing streams entries of declared size into
// an atomic file (or memory), ZIP64 records where a size, offset or count needs them, with a
// fixed 1980-01-01 time stamp so equal content gives equal files.

import * as zlib from 'node:zlib';
import { AtomicFile, type AtomicOptions } from './atomic.js';
import { CheckpointError } from './errors.js';
import { RandomAccessFile, type RandomAccess } from './file.js';

const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_EOCD64_LOCATOR = 0x07064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;
const U32_MAX = 0xffffffff;
const U16_MAX = 0xffff;

/** Deflate cannot expand by more than ~1032:1; a larger claimed ratio is a lie (zip bomb). */
const MAX_DEFLATE_RATIO = 1032;

// ------------------------------------------------------------------------------------ crc32

let crcTable: Uint32Array | undefined;
const nativeCrc32 = (zlib as { crc32?: (d: Uint8Array, v?: number) => number }).crc32;

/** CRC-32 (zip/PNG polynomial), continuing from `crc`. Node's zlib.crc32 where it exists. */
export function crc32(bytes: Uint8Array, crc = 0): number {
  if (typeof nativeCrc32 === 'function') return nativeCrc32(bytes, crc) >>> 0;
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = crcTable[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

// ---------------------------------------------------------------------------------- reading

export interface ZipEntry {
  readonly name: string;
  /** 0 stored, 8 deflated. */
  readonly method: number;
  readonly compressedSize: number;
  readonly uncompressedSize: number;
  readonly crc32: number;
  readonly localHeaderOffset: number;
}

function u64(dv: DataView, at: number, file: string, what: string): number {
  const v = dv.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new CheckpointError(file, `zip: ${what} ${v} is absurdly large`);
  return Number(v);
}

function viewOf(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** A zip archive opened for reading. Entry data is read on demand. */
export class ZipReader {
  private readonly dataOffsets = new Map<string, number>();

  private constructor(
    readonly file: RandomAccess,
    readonly entries: ReadonlyMap<string, ZipEntry>,
  ) {}

  get path(): string {
    return this.file.path;
  }

  /** Is the file a zip archive (starts with a local header or is an empty archive)? */
  static looksLikeZip(prefix: Uint8Array): boolean {
    if (prefix.byteLength < 4) return false;
    const sig = new DataView(prefix.buffer, prefix.byteOffset, 4).getUint32(0, true);
    return sig === SIG_LOCAL || sig === SIG_EOCD;
  }

  /** Parses the central directory of an opened file (or memory). */
  static async open(file: RandomAccess): Promise<ZipReader> {
    return ZipReader.openSync(file);
  }

  /** Opens a file by path with blocking reads; close() closes it. */
  static openPath(path: string): ZipReader {
    const file = RandomAccessFile.openSync(path);
    try {
      return ZipReader.openSync(file);
    } catch (e) {
      file.closeSync();
      throw e;
    }
  }

  /** Parses the central directory with blocking reads (it is small: 46 bytes and a name per entry). */
  static openSync(file: RandomAccess): ZipReader {
    const path = file.path;
    if (file.size < 22) throw new CheckpointError(path, `zip: file has ${file.size} bytes, too short for a zip archive (truncated?)`);
    // The EOCD record is 22 bytes plus a comment of up to 65535 bytes at the very end.
    const tailLen = Math.min(file.size, 22 + 65535);
    const tailStart = file.size - tailLen;
    const tail = file.readSync(tailStart, tailLen, 'zip end of central directory');
    const tdv = viewOf(tail);
    let eocd = -1;
    for (let i = tailLen - 22; i >= 0; i--) {
      if (tdv.getUint32(i, true) === SIG_EOCD && i + 22 + tdv.getUint16(i + 20, true) <= tailLen) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) throw new CheckpointError(path, 'zip: end of central directory not found (truncated or not a zip archive)');
    let count = tdv.getUint16(eocd + 10, true);
    let cdSize = tdv.getUint32(eocd + 12, true);
    let cdOffset = tdv.getUint32(eocd + 16, true);
    if (tdv.getUint16(eocd + 4, true) !== 0 || tdv.getUint16(eocd + 6, true) !== 0) {
      throw new CheckpointError(path, 'zip: multi-disk archives are not supported');
    }
    if (count === U16_MAX || cdSize === U32_MAX || cdOffset === U32_MAX) {
      // zip64: a locator right before the EOCD points at the zip64 EOCD record.
      const locPos = tailStart + eocd - 20;
      if (locPos < 0) throw new CheckpointError(path, 'zip: zip64 end of central directory locator missing');
      const ldv = viewOf(file.readSync(locPos, 20, 'zip64 locator'));
      if (ldv.getUint32(0, true) !== SIG_EOCD64_LOCATOR) throw new CheckpointError(path, 'zip: zip64 end of central directory locator missing');
      const rec64Pos = u64(ldv, 8, path, 'zip64 record offset');
      const rdv = viewOf(file.readSync(rec64Pos, 56, 'zip64 end of central directory'));
      if (rdv.getUint32(0, true) !== SIG_EOCD64) throw new CheckpointError(path, `zip: no zip64 end of central directory at offset ${rec64Pos}`);
      count = u64(rdv, 32, path, 'entry count');
      cdSize = u64(rdv, 40, path, 'central directory size');
      cdOffset = u64(rdv, 48, path, 'central directory offset');
    }
    if (cdOffset + cdSize > file.size) {
      throw new CheckpointError(path, `zip: central directory [${cdOffset}, ${cdOffset + cdSize}) lies beyond the end of the file (${file.size} bytes): truncated archive`);
    }
    if (count * 46 > cdSize) throw new CheckpointError(path, `zip: ${count} entries cannot fit in a ${cdSize}-byte central directory`);
    const cd = file.readSync(cdOffset, cdSize, 'zip central directory');
    const dv = viewOf(cd);
    const entries = new Map<string, ZipEntry>();
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > cdSize || dv.getUint32(p, true) !== SIG_CENTRAL) {
        throw new CheckpointError(path, `zip: central directory entry ${i} is malformed`);
      }
      const flags = dv.getUint16(p + 8, true);
      const method = dv.getUint16(p + 10, true);
      const crc = dv.getUint32(p + 16, true);
      let compressedSize = dv.getUint32(p + 20, true);
      let uncompressedSize = dv.getUint32(p + 24, true);
      const nameLen = dv.getUint16(p + 28, true);
      const extraLen = dv.getUint16(p + 30, true);
      const commentLen = dv.getUint16(p + 32, true);
      let localHeaderOffset = dv.getUint32(p + 42, true);
      if (p + 46 + nameLen + extraLen + commentLen > cdSize) throw new CheckpointError(path, `zip: central directory entry ${i} is truncated`);
      const nameBytes = cd.subarray(p + 46, p + 46 + nameLen);
      const name = flags & 0x800 ? new TextDecoder().decode(nameBytes) : Buffer.from(nameBytes).toString('latin1');
      // zip64 extended information: only the fields that are 0xffffffff in the record, in order.
      let e = p + 46 + nameLen;
      const extraEnd = e + extraLen;
      while (e + 4 <= extraEnd) {
        const id = dv.getUint16(e, true);
        const size = dv.getUint16(e + 2, true);
        if (e + 4 + size > extraEnd) break;
        if (id === 0x0001) {
          let q = e + 4;
          const need = (ok: boolean) => {
            if (!ok) return false;
            if (q + 8 > e + 4 + size) throw new CheckpointError(path, `zip: zip64 extra field of "${name}" is too short`);
            return true;
          };
          if (need(uncompressedSize === U32_MAX)) { uncompressedSize = u64(dv, q, path, `size of "${name}"`); q += 8; }
          if (need(compressedSize === U32_MAX)) { compressedSize = u64(dv, q, path, `compressed size of "${name}"`); q += 8; }
          if (need(localHeaderOffset === U32_MAX)) { localHeaderOffset = u64(dv, q, path, `offset of "${name}"`); q += 8; }
        }
        e += 4 + size;
      }
      p = extraEnd + commentLen;
      if (flags & 0x1) throw new CheckpointError(path, 'zip: encrypted entries are not supported', name);
      if (localHeaderOffset + 30 + compressedSize > file.size) {
        throw new CheckpointError(path, `zip: entry data (offset ${localHeaderOffset}, ${compressedSize} bytes) lies beyond the end of the file (${file.size} bytes): truncated archive`, name);
      }
      if (method === 0 && compressedSize !== uncompressedSize) {
        throw new CheckpointError(path, `zip: stored entry claims ${uncompressedSize} bytes but holds ${compressedSize}`, name);
      }
      if (method === 8 && uncompressedSize > compressedSize * MAX_DEFLATE_RATIO + 1024) {
        throw new CheckpointError(path, `zip: deflated entry claims ${uncompressedSize} bytes from ${compressedSize} compressed bytes, an impossible ratio (zip bomb?)`, name);
      }
      if (entries.has(name)) throw new CheckpointError(path, 'zip: duplicate entry name', name);
      entries.set(name, { name, method, compressedSize, uncompressedSize, crc32: crc, localHeaderOffset });
    }
    return new ZipReader(file, entries);
  }

  entry(name: string): ZipEntry {
    const e = this.entries.get(name);
    if (!e) throw new CheckpointError(this.path, 'zip: no such entry in the archive', name);
    return e;
  }

  /** Absolute file offset of an entry's (possibly compressed) data, from its local header. */
  dataOffsetSync(entry: ZipEntry): number {
    const cached = this.dataOffsets.get(entry.name);
    if (cached !== undefined) return cached;
    const dv = viewOf(this.file.readSync(entry.localHeaderOffset, 30, 'zip local header', entry.name));
    if (dv.getUint32(0, true) !== SIG_LOCAL) {
      throw new CheckpointError(this.path, `zip: no local header at offset ${entry.localHeaderOffset}`, entry.name);
    }
    const off = entry.localHeaderOffset + 30 + dv.getUint16(26, true) + dv.getUint16(28, true);
    this.file.checkRange(off, entry.compressedSize, 'zip entry data', entry.name);
    this.dataOffsets.set(entry.name, off);
    return off;
  }

  async dataOffset(entry: ZipEntry): Promise<number> {
    return this.dataOffsetSync(entry);
  }

  private checkLimit(entry: ZipEntry, maxBytes: number): void {
    if (entry.uncompressedSize > maxBytes) {
      throw new CheckpointError(this.path, `zip: entry claims ${entry.uncompressedSize} bytes, more than the ${maxBytes} allowed here`, entry.name);
    }
  }

  /** Decompresses and CRC-checks the raw bytes of an entry. */
  private decode(entry: ZipEntry, raw: Uint8Array): Uint8Array {
    const name = entry.name;
    let out: Uint8Array;
    if (entry.method === 0) {
      out = raw;
    } else if (entry.method === 8) {
      try {
        out = zlib.inflateRawSync(raw, { maxOutputLength: Math.max(1, entry.uncompressedSize) });
      } catch (e) {
        throw new CheckpointError(this.path, `zip: cannot inflate entry: ${(e as Error).message}`, name);
      }
      if (out.byteLength !== entry.uncompressedSize) {
        throw new CheckpointError(this.path, `zip: entry inflates to ${out.byteLength} bytes, not the ${entry.uncompressedSize} it claims`, name);
      }
    } else {
      throw new CheckpointError(this.path, `zip: compression method ${entry.method} is not supported (only stored and deflate)`, name);
    }
    if (crc32(out) !== entry.crc32) throw new CheckpointError(this.path, 'zip: CRC-32 mismatch (corrupt entry)', name);
    return out;
  }

  /** A whole entry, decompressed and CRC-checked. `maxBytes` bounds what the caller is willing to hold. */
  async readEntry(name: string, maxBytes = 2 ** 31): Promise<Uint8Array> {
    const entry = this.entry(name);
    this.checkLimit(entry, maxBytes);
    const raw = await this.file.read(this.dataOffsetSync(entry), entry.compressedSize, 'zip entry data', name);
    return this.decode(entry, raw);
  }

  /** Blocking form of readEntry. */
  readEntrySync(name: string, maxBytes = 2 ** 31): Uint8Array {
    const entry = this.entry(name);
    this.checkLimit(entry, maxBytes);
    return this.decode(entry, this.file.readSync(this.dataOffsetSync(entry), entry.compressedSize, 'zip entry data', name));
  }

  private checkSlice(entry: ZipEntry, start: number, length: number): void {
    if (!Number.isSafeInteger(start) || start < 0 || start + length > entry.uncompressedSize) {
      throw new CheckpointError(this.path, `zip: byte range [${start}, ${start + length}) is outside the entry (${entry.uncompressedSize} bytes)`, entry.name);
    }
  }

  /**
   * Bytes [start, start + target.length) of an entry's uncompressed content, into `target`.
   * Stored entries are read directly at their file position (no CRC check, since only part
   * of the entry is read); deflated entries are inflated whole first.
   */
  async readRange(name: string, start: number, target: Uint8Array): Promise<void> {
    const entry = this.entry(name);
    this.checkSlice(entry, start, target.byteLength);
    if (entry.method === 0) {
      await this.file.readInto(target, this.dataOffsetSync(entry) + start, 'zip entry data', name);
      return;
    }
    const all = await this.readEntry(name);
    target.set(all.subarray(start, start + target.byteLength));
  }

  /** Blocking form of readRange. */
  readRangeSync(name: string, start: number, target: Uint8Array): void {
    const entry = this.entry(name);
    this.checkSlice(entry, start, target.byteLength);
    if (entry.method === 0) {
      this.file.readIntoSync(target, this.dataOffsetSync(entry) + start, 'zip entry data', name);
      return;
    }
    target.set(this.readEntrySync(name).subarray(start, start + target.byteLength));
  }

  async close(): Promise<void> {
    await this.file.close();
  }

  closeSync(): void {
    this.file.closeSync();
  }
}

// ---------------------------------------------------------------------------------- writing

/** Where a ZipWriter puts bytes: an atomic file, or memory. */
export interface ZipSink {
  position: number;
  writeSync(bytes: Uint8Array): void;
  writeAtSync(bytes: Uint8Array, at: number): void;
}

/** A growable in-memory sink, for small archives built in memory. */
export class MemorySink implements ZipSink {
  position = 0;
  private buf = new Uint8Array(1 << 16);
  writeSync(bytes: Uint8Array): void {
    this.writeAtSync(bytes, this.position);
    this.position += bytes.byteLength;
  }
  writeAtSync(bytes: Uint8Array, at: number): void {
    const end = at + bytes.byteLength;
    if (end > this.buf.byteLength) {
      const grown = new Uint8Array(Math.max(end, this.buf.byteLength * 2));
      grown.set(this.buf);
      this.buf = grown;
    }
    this.buf.set(bytes, at);
  }
  /** The bytes written so far (a copy). */
  bytes(): Uint8Array {
    return this.buf.slice(0, this.position);
  }
}

export interface ZipWriterOptions extends AtomicOptions {
  /** Write ZIP64 extra fields for every entry, as numpy's savez does (default: only where needed). */
  forceZip64?: boolean;
}

export type ZipMethod = 'stored' | 'deflate';

interface WrittenEntry {
  name: Uint8Array;
  method: number;
  offset: number;
  size: number;
  compressedSize: number;
  crc: number;
  /** The local header carries a zip64 extra field. */
  zip64Local: boolean;
}

/** Deflate may grow incompressible data a little; entries this large get zip64 headers up front. */
const DEFLATE_ZIP64_FROM = 0xf0000000;
const DEFLATE_CHUNK = 1 << 20;
const DOS_DATE_1980 = (0 << 9) | (1 << 5) | 1; // 1980-01-01
const DOS_TIME_0 = 0;

class Bytes {
  private parts: number[] = [];
  u16(v: number): this {
    this.parts.push(v & 0xff, (v >>> 8) & 0xff);
    return this;
  }
  u32(v: number): this {
    const x = v >>> 0;
    this.parts.push(x & 0xff, (x >>> 8) & 0xff, (x >>> 16) & 0xff, x >>> 24);
    return this;
  }
  u64(v: number): this {
    return this.u32(v % 2 ** 32).u32(Math.floor(v / 2 ** 32));
  }
  raw(b: Uint8Array): this {
    for (const x of b) this.parts.push(x);
    return this;
  }
  done(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

/**
 * Streams a zip archive: `begin(name, size)`, `write(chunk)` until `size` bytes are in, the next
 * `begin` or `close()`. Entry sizes are declared up front (so the local header is right without
 * a data descriptor); the CRC and compressed size are patched into the local header when the
 * entry ends. Writing to a path goes through the atomic writer: nothing appears until close().
 */
export class ZipWriter {
  private readonly entries: WrittenEntry[] = [];
  private readonly names = new Set<string>();
  private current: {
    entry: WrittenEntry;
    headerAt: number;
    remaining: number;
    pending: Uint8Array[];
    pendingBytes: number;
  } | null = null;
  private closed = false;
  private readonly forceZip64: boolean;

  constructor(
    private readonly sink: ZipSink,
    options: ZipWriterOptions = {},
    /** Names the archive in error messages. */
    readonly path = '<memory>',
  ) {
    this.forceZip64 = options.forceZip64 ?? false;
  }

  /** A writer onto `path`, written atomically (temporary file, fsync, rename). */
  static create(path: string, options: ZipWriterOptions = {}): ZipWriter {
    return new ZipWriter(AtomicFile.open(path, options), options, path);
  }

  private fail(detail: string, key?: string): never {
    throw new CheckpointError(this.path, `zip: ${detail}`, key);
  }

  /** Starts entry `name` whose uncompressed content is exactly `size` bytes. */
  begin(name: string, size: number, method: ZipMethod = 'stored'): void {
    this.finishCurrent();
    if (this.closed) this.fail('archive already closed');
    if (!Number.isSafeInteger(size) || size < 0) this.fail(`bad entry size ${size}`, name);
    if (this.names.has(name)) this.fail('duplicate entry name', name);
    this.names.add(name);
    const nameBytes = new TextEncoder().encode(name);
    const utf8 = nameBytes.length !== name.length;
    const m = method === 'deflate' ? 8 : 0;
    const offset = this.sink.position;
    const zip64Local = this.forceZip64 || size >= U32_MAX || (m === 8 && size >= DEFLATE_ZIP64_FROM);
    const entry: WrittenEntry = { name: nameBytes, method: m, offset, size, compressedSize: m === 0 ? size : 0, crc: 0, zip64Local };
    const h = new Bytes()
      .u32(SIG_LOCAL).u16(zip64Local ? 45 : 20).u16(utf8 ? 0x800 : 0).u16(m).u16(DOS_TIME_0).u16(DOS_DATE_1980)
      .u32(0).u32(zip64Local ? U32_MAX : entry.compressedSize).u32(zip64Local ? U32_MAX : size)
      .u16(nameBytes.length).u16(zip64Local ? 20 : 0).raw(nameBytes);
    if (zip64Local) h.u16(1).u16(16).u64(size).u64(entry.compressedSize);
    this.sink.writeSync(h.done());
    this.current = { entry, headerAt: offset, remaining: size, pending: [], pendingBytes: 0 };
  }

  /** Appends bytes (any typed array, taken as its raw bytes) to the open entry. */
  write(chunk: ArrayBufferView): void {
    const cur = this.current;
    if (!cur) this.fail('write() before begin()');
    const bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const name = new TextDecoder().decode(cur.entry.name);
    if (bytes.length > cur.remaining) this.fail(`${bytes.length} bytes written but only ${cur.remaining} remain`, name);
    cur.entry.crc = crc32(bytes, cur.entry.crc);
    cur.remaining -= bytes.length;
    if (cur.entry.method === 0) {
      this.sink.writeSync(bytes);
      return;
    }
    cur.pending.push(bytes.slice());
    cur.pendingBytes += bytes.length;
    if (cur.pendingBytes >= DEFLATE_CHUNK) this.flushDeflate(false);
  }

  /** Deflates what is pending. Sync-flushed pieces concatenate into one valid deflate stream. */
  private flushDeflate(final: boolean): void {
    const cur = this.current!;
    const input = Buffer.concat(cur.pending);
    cur.pending = [];
    cur.pendingBytes = 0;
    const out = zlib.deflateRawSync(input, { finishFlush: final ? zlib.constants.Z_FINISH : zlib.constants.Z_SYNC_FLUSH });
    this.sink.writeSync(out);
    cur.entry.compressedSize += out.byteLength;
  }

  private finishCurrent(): void {
    const cur = this.current;
    if (!cur) return;
    const e = cur.entry;
    if (cur.remaining !== 0) this.fail(`entry is missing ${cur.remaining} of its declared ${e.size} bytes`, new TextDecoder().decode(e.name));
    if (e.method === 8) this.flushDeflate(true);
    this.current = null;
    // The CRC (and a deflated entry's size) is known only now: patch the local header.
    const at = cur.headerAt;
    this.sink.writeAtSync(new Bytes().u32(e.crc).done(), at + 14);
    if (e.zip64Local) {
      this.sink.writeAtSync(new Bytes().u64(e.compressedSize).done(), at + 30 + e.name.length + 12);
    } else {
      if (e.compressedSize >= U32_MAX) this.fail('deflated entry grew past 4 GiB without a zip64 header', new TextDecoder().decode(e.name));
      this.sink.writeAtSync(new Bytes().u32(e.compressedSize).done(), at + 18);
    }
    this.entries.push(e);
  }

  private centralHeader(e: WrittenEntry): Uint8Array {
    const bigSize = e.zip64Local || e.size >= U32_MAX || e.compressedSize >= U32_MAX;
    const bigOffset = e.offset >= U32_MAX;
    const extra = new Bytes();
    if (bigSize) extra.u64(e.size).u64(e.compressedSize);
    if (bigOffset) extra.u64(e.offset);
    const fields = extra.done();
    const extraBytes = fields.length ? new Bytes().u16(1).u16(fields.length).raw(fields).done() : fields;
    const version = bigSize || bigOffset ? 45 : 20;
    const utf8 = new TextDecoder().decode(e.name).length !== e.name.length;
    return new Bytes()
      .u32(SIG_CENTRAL).u16((3 << 8) | version).u16(version).u16(utf8 ? 0x800 : 0).u16(e.method).u16(DOS_TIME_0).u16(DOS_DATE_1980)
      .u32(e.crc).u32(bigSize ? U32_MAX : e.compressedSize).u32(bigSize ? U32_MAX : e.size)
      .u16(e.name.length).u16(extraBytes.length).u16(0).u16(0).u16(0).u32(0o644 << 16)
      .u32(bigOffset ? U32_MAX : e.offset).raw(e.name).raw(extraBytes).done();
  }

  /** Writes the central directory and end records. */
  private finishArchive(): void {
    this.finishCurrent();
    if (this.closed) this.fail('archive already closed');
    this.closed = true;
    const cdOffset = this.sink.position;
    for (const e of this.entries) this.sink.writeSync(this.centralHeader(e));
    const cdSize = this.sink.position - cdOffset;
    const n = this.entries.length;
    const end = new Bytes();
    if (n >= U16_MAX || cdOffset >= U32_MAX || cdSize >= U32_MAX || this.entries.some((e) => e.zip64Local)) {
      const z64 = this.sink.position;
      end.u32(SIG_EOCD64).u64(44).u16(45).u16(45).u32(0).u32(0).u64(n).u64(n).u64(cdSize).u64(cdOffset);
      end.u32(SIG_EOCD64_LOCATOR).u32(0).u64(z64).u32(1);
    }
    const n16 = Math.min(n, U16_MAX);
    end.u32(SIG_EOCD).u16(0).u16(0).u16(n16).u16(n16).u32(cdSize >= U32_MAX ? U32_MAX : cdSize)
      .u32(cdOffset >= U32_MAX ? U32_MAX : cdOffset).u16(0);
    this.sink.writeSync(end.done());
  }

  /** Finishes the archive; a file-backed writer is fsynced and renamed into place. */
  close(): void {
    try {
      this.finishArchive();
      if (this.sink instanceof AtomicFile) this.sink.commitSync();
    } catch (e) {
      this.abort();
      throw e;
    }
  }

  /** Drops a file-backed archive's temporary file (the target is untouched). */
  abort(): void {
    this.closed = true;
    this.current = null;
    if (this.sink instanceof AtomicFile) this.sink.abort();
  }
}

/** Builds a small archive in memory: entries in the order given. */
export function encodeZip(entries: Iterable<readonly [string, Uint8Array]>, options: ZipWriterOptions & { method?: ZipMethod } = {}): Uint8Array {
  const sink = new MemorySink();
  const w = new ZipWriter(sink, options);
  for (const [name, bytes] of entries) {
    w.begin(name, bytes.byteLength, options.method ?? 'stored');
    w.write(bytes);
  }
  w.close();
  return sink.bytes();
}
