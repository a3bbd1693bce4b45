// A small read-only zip reader: end of central directory (zip64 too), central directory,
// local headers; stored and deflated entries. Entry data is read by file position on
// demand, so a multi-GB archive is never read whole.

import { inflateRawSync } from 'node:zlib';
import { CheckpointError } from './errors.js';
import { RandomAccessFile } from './file.js';

const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_EOCD64_LOCATOR = 0x07064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;

/** Deflate cannot expand by more than ~1032:1; a larger claimed ratio is a lie (zip bomb). */
const MAX_DEFLATE_RATIO = 1032;

export interface ZipEntry {
  readonly name: string;
  /** 0 stored, 8 deflated. */
  readonly method: number;
  readonly compressedSize: number;
  readonly uncompressedSize: number;
  readonly crc32: number;
  readonly localHeaderOffset: number;
}

let crcTable: Uint32Array | undefined;
export function crc32(bytes: Uint8Array, crc = 0): number {
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

function u64(dv: DataView, at: number, file: string, what: string): number {
  const v = dv.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new CheckpointError(file, `zip: ${what} ${v} is absurdly large`);
  return Number(v);
}

export class ZipReader {
  private readonly dataOffsets = new Map<string, number>();

  private constructor(
    readonly file: RandomAccessFile,
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

  /** Parse the central directory of an opened file. */
  static async open(file: RandomAccessFile): Promise<ZipReader> {
    const path = file.path;
    // The EOCD record is 22 bytes plus a comment of up to 65535 bytes at the very end.
    const tailLen = Math.min(file.size, 22 + 65535);
    if (file.size < 22) throw new CheckpointError(path, `zip: file has ${file.size} bytes, too short for a zip archive (truncated?)`);
    const tailStart = file.size - tailLen;
    const tail = await file.read(tailStart, tailLen, 'zip end of central directory');
    const tdv = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
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
    if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      // zip64: a locator right before the EOCD points at the zip64 EOCD record.
      const locPos = tailStart + eocd - 20;
      if (locPos < 0) throw new CheckpointError(path, 'zip: zip64 end of central directory locator missing');
      const loc = await file.read(locPos, 20, 'zip64 locator');
      const ldv = new DataView(loc.buffer);
      if (ldv.getUint32(0, true) !== SIG_EOCD64_LOCATOR) throw new CheckpointError(path, 'zip: zip64 end of central directory locator missing');
      const rec64Pos = u64(ldv, 8, path, 'zip64 record offset');
      const rec = await file.read(rec64Pos, 56, 'zip64 end of central directory');
      const rdv = new DataView(rec.buffer);
      if (rdv.getUint32(0, true) !== SIG_EOCD64) throw new CheckpointError(path, `zip: no zip64 end of central directory at offset ${rec64Pos}`);
      count = u64(rdv, 32, path, 'entry count');
      cdSize = u64(rdv, 40, path, 'central directory size');
      cdOffset = u64(rdv, 48, path, 'central directory offset');
    }
    if (cdOffset + cdSize > file.size) {
      throw new CheckpointError(path, `zip: central directory [${cdOffset}, ${cdOffset + cdSize}) lies beyond the end of the file (${file.size} bytes): truncated archive`);
    }
    if (count * 46 > cdSize) throw new CheckpointError(path, `zip: ${count} entries cannot fit in a ${cdSize}-byte central directory`);
    const cd = await file.read(cdOffset, cdSize, 'zip central directory');
    const dv = new DataView(cd.buffer);
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
          if (need(uncompressedSize === 0xffffffff)) { uncompressedSize = u64(dv, q, path, `size of "${name}"`); q += 8; }
          if (need(compressedSize === 0xffffffff)) { compressedSize = u64(dv, q, path, `compressed size of "${name}"`); q += 8; }
          if (need(localHeaderOffset === 0xffffffff)) { localHeaderOffset = u64(dv, q, path, `offset of "${name}"`); q += 8; }
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

  /** Absolute file offset of an entry's (possibly compressed) data. */
  async dataOffset(entry: ZipEntry): Promise<number> {
    const cached = this.dataOffsets.get(entry.name);
    if (cached !== undefined) return cached;
    const h = await this.file.read(entry.localHeaderOffset, 30, 'zip local header', entry.name);
    const dv = new DataView(h.buffer);
    if (dv.getUint32(0, true) !== SIG_LOCAL) {
      throw new CheckpointError(this.path, `zip: no local header at offset ${entry.localHeaderOffset}`, entry.name);
    }
    const off = entry.localHeaderOffset + 30 + dv.getUint16(26, true) + dv.getUint16(28, true);
    this.file.checkRange(off, entry.compressedSize, 'zip entry data', entry.name);
    this.dataOffsets.set(entry.name, off);
    return off;
  }

  /**
   * A whole entry, decompressed and CRC-checked. `maxBytes` bounds what the caller is
   * willing to hold in memory.
   */
  async readEntry(name: string, maxBytes = 2 ** 31): Promise<Uint8Array> {
    const entry = this.entry(name);
    if (entry.uncompressedSize > maxBytes) {
      throw new CheckpointError(this.path, `zip: entry claims ${entry.uncompressedSize} bytes, more than the ${maxBytes} allowed here`, name);
    }
    const off = await this.dataOffset(entry);
    const raw = await this.file.read(off, entry.compressedSize, 'zip entry data', name);
    let out: Uint8Array;
    if (entry.method === 0) {
      out = raw;
    } else if (entry.method === 8) {
      try {
        out = inflateRawSync(raw, { maxOutputLength: Math.max(1, entry.uncompressedSize) });
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

  /**
   * Bytes [start, start + target.length) of an entry's uncompressed content, into `target`.
   * Stored entries are read directly at their file position (no CRC check, since only part
   * of the entry is read); deflated entries are inflated whole first.
   */
  async readRange(name: string, start: number, target: Uint8Array): Promise<void> {
    const entry = this.entry(name);
    if (start < 0 || start + target.byteLength > entry.uncompressedSize) {
      throw new CheckpointError(this.path, `zip: byte range [${start}, ${start + target.byteLength}) is outside the entry (${entry.uncompressedSize} bytes)`, name);
    }
    if (entry.method === 0) {
      const off = await this.dataOffset(entry);
      await this.file.readInto(target, off + start, 'zip entry data', name);
      return;
    }
    const all = await this.readEntry(name);
    target.set(all.subarray(start, start + target.byteLength));
  }

  async close(): Promise<void> {
    await this.file.close();
  }
}
