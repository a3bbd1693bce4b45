// NumPy .npz files: a zip archive of `<key>.npy` members, on top of zip.ts and npy.ts.
//
// Writing streams members of any size (declared dtype and shape, then data in chunks), stored
// by default as np.savez does, or deflated as np.savez_compressed does; ZIP64 where a size,
// offset or count needs it (the ADM suite's 50,000 x 256 x 256 x 3 uint8 sample file is 9.8 GB);
// the file appears only on close (atomic writer). Reading opens the central directory only;
// one member's header, whole array, or row range is read on demand.

import { readFile } from 'node:fs/promises';
import { DataFormatError } from './errors.js';
import { MemoryFile } from './file.js';
import {
  decodeNpy, dtypeOf, dtypeSize, normaliseNpyData, npyHeader, parseNpyHeader, typedFromBytes,
  type NpyArray, type NpyData, type NpyDtype, type NpyHeader,
} from './npy.js';
import { MemorySink, ZipReader, ZipWriter, type ZipEntry, type ZipMethod, type ZipWriterOptions } from './zip.js';

export { crc32 } from './zip.js';

// --------------------------------------------------------------------------------- writing

export interface NpzWriterOptions {
  /** Write ZIP64 size fields for every member, as numpy does (default: only where needed). */
  forceZip64?: boolean;
  /** Deflate members, as np.savez_compressed does (default: stored, as np.savez). */
  compress?: boolean;
}

function zipOptions(options: NpzWriterOptions): ZipWriterOptions {
  return { forceZip64: options.forceZip64 ?? false };
}

/**
 * Streams arrays into an .npz file: `begin(key, dtype, shape)`, `write(chunk)` until the
 * declared number of bytes is in, then the next `begin` or `close()`. Members may be larger
 * than memory. The file appears at `path` only on close (temporary file, fsync, rename).
 */
export class NpzWriter {
  private readonly zip: ZipWriter;
  private readonly method: ZipMethod;
  private readonly keys = new Set<string>();

  constructor(readonly path: string, options: NpzWriterOptions = {}, zip?: ZipWriter) {
    this.zip = zip ?? ZipWriter.create(path, zipOptions(options));
    this.method = options.compress ? 'deflate' : 'stored';
  }

  /** Starts member `<key>.npy` holding an array of `dtype` and `shape`; its data follows through write(). */
  begin(key: string, dtype: NpyDtype, shape: readonly number[]): void {
    if (this.keys.has(key)) throw new Error(`npz: duplicate key '${key}'`);
    if (shape.some((d) => !Number.isSafeInteger(d) || d < 0)) throw new Error(`npz: bad shape [${shape.join(', ')}] for '${key}'`);
    this.keys.add(key);
    const head = npyHeader(dtype, shape);
    const dataBytes = shape.reduce((a, d) => a * d, 1) * dtypeSize(dtype);
    this.zip.begin(`${key}.npy`, head.length + dataBytes, this.method);
    this.zip.write(head);
  }

  /** Appends bytes (any typed array, taken as its raw little-endian bytes) to the open member. */
  write(chunk: ArrayBufferView): void {
    this.zip.write(chunk);
  }

  /** Writes a whole array as member `<key>.npy`. */
  add(key: string, data: NpyData, shape: readonly number[] = [data.length], dtype: NpyDtype = dtypeOf(data)): void {
    if (shape.reduce((a, d) => a * d, 1) !== data.length) throw new Error(`npz: ${data.length} values for shape [${shape.join(', ')}]`);
    this.begin(key, dtype, shape);
    this.write(data);
  }

  /** Finishes the archive and moves it to `path`. */
  close(): void {
    this.zip.close();
  }

  /** Drops the partial file. */
  abort(): void {
    this.zip.abort();
  }
}

/** An array for writing: a typed array, or one with its shape (and dtype, for 'bool' and 'float16'). */
export type NpzInput = NpyData | { data: NpyData; shape?: readonly number[]; dtype?: NpyDtype };

function addAll(w: NpzWriter, arrays: Record<string, NpzInput>): void {
  for (const [key, v] of Object.entries(arrays)) {
    if (ArrayBuffer.isView(v)) w.add(key, v);
    else w.add(key, v.data, v.shape ?? [v.data.length], v.dtype ?? dtypeOf(v.data));
  }
}

/** Writes arrays to an .npz file (`np.savez(path, **arrays)`; positional arrays are `arr_0`, `arr_1`...). */
export function writeNpz(path: string, arrays: Record<string, NpzInput>, options: NpzWriterOptions = {}): void {
  const w = new NpzWriter(path, options);
  try {
    addAll(w, arrays);
    w.close();
  } catch (e) {
    w.abort();
    throw e;
  }
}

/** Encodes arrays as .npz bytes in memory (small archives). */
export function encodeNpz(arrays: Record<string, NpzInput>, options: NpzWriterOptions = {}): Uint8Array {
  const sink = new MemorySink();
  const w = new NpzWriter('<memory>', options, new ZipWriter(sink, zipOptions(options)));
  addAll(w, arrays);
  w.close();
  return sink.bytes();
}

// --------------------------------------------------------------------------------- reading

/** An .npz archive opened for reading: keys, headers, whole arrays, or rows of stored arrays. */
export class NpzFile {
  private readonly members = new Map<string, ZipEntry>();
  private readonly headers = new Map<string, NpyHeader>();

  private constructor(private readonly zip: ZipReader, readonly name: string) {
    for (const m of zip.entries.values()) {
      if (m.name.endsWith('.npy')) this.members.set(m.name.slice(0, -4), m);
    }
  }

  /** Opens a file; only its central directory is read now, members on demand. */
  static open(path: string): NpzFile {
    return new NpzFile(ZipReader.openPath(path), path);
  }

  /** Reads from bytes in memory. */
  static fromBytes(bytes: Uint8Array, name = '<npz>'): NpzFile {
    return new NpzFile(ZipReader.openSync(new MemoryFile(bytes, name)), name);
  }

  /** Array names (without '.npy'), in archive order. */
  get keys(): string[] {
    return [...this.members.keys()];
  }

  private member(key: string): ZipEntry {
    const m = this.members.get(key);
    if (!m) throw new DataFormatError(this.name, `no array '${key}' (has: ${this.keys.join(', ') || 'none'})`);
    return m;
  }

  /** The .npy header of an array (dtype, shape) without reading its data (stored members). */
  header(key: string): NpyHeader {
    const cached = this.headers.get(key);
    if (cached) return cached;
    const m = this.member(key);
    const label = `${this.name}:${m.name}`;
    let h: NpyHeader;
    if (m.method !== 0) {
      h = parseNpyHeader(this.zip.readEntrySync(m.name), label);
    } else {
      // v1 headers are at most 64 KiB; v2/v3 say their length in the first 12 bytes.
      const first = new Uint8Array(Math.min(m.uncompressedSize, 4096));
      this.zip.readRangeSync(m.name, 0, first);
      try {
        h = parseNpyHeader(first, label);
      } catch (e) {
        if (m.uncompressedSize <= first.length || first.length < 12) throw e;
        const len = first[6] === 1 ? 10 + new DataView(first.buffer).getUint16(8, true) : 12 + new DataView(first.buffer).getUint32(8, true);
        const all = new Uint8Array(Math.min(m.uncompressedSize, len));
        this.zip.readRangeSync(m.name, 0, all);
        h = parseNpyHeader(all, label);
      }
    }
    if (h.dataOffset + h.dataBytes > m.uncompressedSize) {
      throw new DataFormatError(label, `truncated: ${m.uncompressedSize - h.dataOffset} data bytes for shape (${h.shape.join(', ')}) ${h.dtype}`);
    }
    this.headers.set(key, h);
    return h;
  }

  /** A whole array (CRC-checked). */
  get(key: string): NpyArray {
    const m = this.member(key);
    return decodeNpy(this.zip.readEntrySync(m.name), `${this.name}:${m.name}`);
  }

  /** Rows [start, start + count) along the first axis of a stored (uncompressed), C-ordered array. */
  readRows(key: string, start: number, count: number): NpyData {
    const m = this.member(key);
    if (m.method !== 0) throw new DataFormatError(this.name, `readRows needs a stored member; ${m.name} is compressed`);
    const h = this.header(key);
    if (h.shape.length === 0) throw new DataFormatError(this.name, `${m.name} is 0-d`);
    if (h.fortranOrder) throw new DataFormatError(this.name, `${m.name} is in Fortran order: its rows are not contiguous`);
    const rows = h.shape[0]!;
    if (!(Number.isSafeInteger(start) && Number.isSafeInteger(count) && start >= 0 && count >= 0 && start + count <= rows)) {
      throw new RangeError(`npz: rows [${start}, ${start + count}) outside 0..${rows}`);
    }
    const rowBytes = h.shape.slice(1).reduce((a, d) => a * d, 1) * dtypeSize(h.dtype);
    const bytes = new Uint8Array(count * rowBytes);
    this.zip.readRangeSync(m.name, h.dataOffset + start * rowBytes, bytes);
    return typedFromBytes(h.dtype, normaliseNpyData({ ...h, shape: [count, ...h.shape.slice(1)] }, bytes));
  }

  close(): void {
    this.zip.closeSync();
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
