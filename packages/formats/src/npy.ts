// NumPy .npy files: format versions 1.0, 2.0 and 3.0; bool, (u)int8..64, float16/32/64 in
// either byte order; C and Fortran order. Arrays come back little-endian and C-ordered (a
// Fortran-ordered or big-endian file is converted on read); we write what numpy writes by default.

import { closeSync, openSync, readSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from './atomic.js';
import { DataFormatError } from './errors.js';

export type NpyDtype =
  | 'bool' | 'uint8' | 'int8' | 'uint16' | 'int16' | 'uint32' | 'int32' | 'float16' | 'float32' | 'float64' | 'int64'
  | 'uint64';

export type NpyData =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | Float32Array | Float64Array
  | BigInt64Array | BigUint64Array;

export interface NpyArray<D extends NpyData = NpyData> {
  dtype: NpyDtype;
  shape: number[];
  data: D;
}

interface DtypeInfo {
  descr: string;
  size: number;
  make: (n: number) => NpyData;
}

const DTYPES: Record<NpyDtype, DtypeInfo> = {
  bool: { descr: '|b1', size: 1, make: (n) => new Uint8Array(n) },
  uint8: { descr: '|u1', size: 1, make: (n) => new Uint8Array(n) },
  int8: { descr: '|i1', size: 1, make: (n) => new Int8Array(n) },
  uint16: { descr: '<u2', size: 2, make: (n) => new Uint16Array(n) },
  int16: { descr: '<i2', size: 2, make: (n) => new Int16Array(n) },
  uint32: { descr: '<u4', size: 4, make: (n) => new Uint32Array(n) },
  int32: { descr: '<i4', size: 4, make: (n) => new Int32Array(n) },
  // float16 is held as its raw bits (JS has no Float16Array in Node 20).
  float16: { descr: '<f2', size: 2, make: (n) => new Uint16Array(n) },
  float32: { descr: '<f4', size: 4, make: (n) => new Float32Array(n) },
  float64: { descr: '<f8', size: 8, make: (n) => new Float64Array(n) },
  int64: { descr: '<i8', size: 8, make: (n) => new BigInt64Array(n) },
  uint64: { descr: '<u8', size: 8, make: (n) => new BigUint64Array(n) },
};

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

const DESCR_CODES: Record<string, NpyDtype> = {
  b1: 'bool', u1: 'uint8', i1: 'int8', u2: 'uint16', i2: 'int16', u4: 'uint32', i4: 'int32',
  f2: 'float16', f4: 'float32', f8: 'float64', i8: 'int64', u8: 'uint64',
};

/** dtype and byte order of a descr such as '<f4', '>i8', '|u1' (byte order '=' is the host's: little). */
function dtypeFromDescr(descr: string): { dtype: NpyDtype; bigEndian: boolean } | undefined {
  const m = /^([<>|=]?)([a-z]\d+)$/.exec(descr);
  if (!m) return undefined;
  const dtype = DESCR_CODES[m[2]!];
  if (!dtype) return undefined;
  return { dtype, bigEndian: m[1] === '>' && DTYPES[dtype].size > 1 };
}

/** Bytes per element of a dtype. */
export function dtypeSize(dtype: NpyDtype): number {
  return DTYPES[dtype].size;
}

/** The dtype of a typed array (Uint8Array -> 'uint8'; use an explicit dtype for 'bool'). */
export function dtypeOf(data: NpyData): NpyDtype {
  if (data instanceof Uint8Array) return 'uint8';
  if (data instanceof Int8Array) return 'int8';
  if (data instanceof Uint16Array) return 'uint16'; // float16 bits must be asked for
  if (data instanceof Int16Array) return 'int16';
  if (data instanceof Uint32Array) return 'uint32';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof BigInt64Array) return 'int64';
  if (data instanceof BigUint64Array) return 'uint64';
  throw new Error('npy: unsupported array type');
}

/** A parsed .npy header. */
export interface NpyHeader {
  dtype: NpyDtype;
  shape: number[];
  /** Byte offset of the data from the start of the .npy bytes. */
  dataOffset: number;
  /** Bytes of data (product of the shape times the element size). */
  dataBytes: number;
  /** The data is stored column-major (decodeNpy converts it to C order). */
  fortranOrder: boolean;
  /** The data is stored big-endian (decodeNpy swaps it). */
  bigEndian: boolean;
}

/** Parses the header of .npy bytes (at least the header must be present). */
export function parseNpyHeader(bytes: Uint8Array, name = '<npy>'): NpyHeader {
  for (let i = 0; i < MAGIC.length; i++) {
    if (bytes[i] !== MAGIC[i]) throw new DataFormatError(name, 'not a .npy file (bad magic)');
  }
  const major = bytes[6];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerLen: number;
  let start: number;
  if (major === 1) {
    headerLen = dv.getUint16(8, true);
    start = 10;
  } else if (major === 2 || major === 3) {
    headerLen = dv.getUint32(8, true);
    start = 12;
  } else throw new DataFormatError(name, `unsupported .npy version ${major}.${bytes[7]}`);
  if (bytes.length < start + headerLen) throw new DataFormatError(name, 'truncated .npy header');
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(start, start + headerLen));
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new DataFormatError(name, `unreadable .npy header ${JSON.stringify(header.trim())}`);
  }
  const parsed = dtypeFromDescr(descr);
  if (!parsed) throw new DataFormatError(name, `unsupported dtype '${descr}' (bool, int8-64, uint8-64 and float16/32/64 only)`);
  const { dtype, bigEndian } = parsed;
  const shape = shapeText.split(',').map((s) => s.trim()).filter((s) => s.length > 0).map((s) => Number(s.replace(/L$/, '')));
  if (shape.some((d) => !Number.isSafeInteger(d) || d < 0)) throw new DataFormatError(name, `bad shape (${shapeText})`);
  const count = shape.reduce((a, d) => a * d, 1);
  // With at most one axis longer than 1, Fortran and C order are the same bytes.
  const fortranOrder = fortran === 'True' && shape.filter((d) => d > 1).length > 1;
  return { dtype, shape, dataOffset: start + headerLen, dataBytes: count * DTYPES[dtype].size, fortranOrder, bigEndian };
}

/** Copies little-endian bytes into a new typed array of `dtype`. */
export function typedFromBytes(dtype: NpyDtype, bytes: Uint8Array): NpyData {
  const info = DTYPES[dtype];
  if (bytes.length % info.size !== 0) throw new Error(`npy: ${bytes.length} bytes is not a whole number of ${dtype}`);
  const out = info.make(bytes.length / info.size);
  new Uint8Array(out.buffer, out.byteOffset, out.byteLength).set(bytes);
  return out;
}

/** Reverses the bytes of each element in place (big-endian files). */
function swapBytes(bytes: Uint8Array, size: number): void {
  for (let i = 0; i < bytes.length; i += size) {
    for (let a = i, b = i + size - 1; a < b; a++, b--) {
      const t = bytes[a]!;
      bytes[a] = bytes[b]!;
      bytes[b] = t;
    }
  }
}

/** Reorders column-major elements into row-major order. */
function fortranToC(bytes: Uint8Array, shape: readonly number[], size: number): Uint8Array {
  const n = shape.reduce((a, d) => a * d, 1);
  const out = new Uint8Array(bytes.length);
  const rank = shape.length;
  const idx = new Array<number>(rank).fill(0);
  // Walk C order; the Fortran offset of (i0..ik) is i0 + d0*(i1 + d1*(...)).
  const fStride = new Array<number>(rank);
  let s = 1;
  for (let k = 0; k < rank; k++) {
    fStride[k] = s;
    s *= shape[k]!;
  }
  for (let c = 0; c < n; c++) {
    let f = 0;
    for (let k = 0; k < rank; k++) f += idx[k]! * fStride[k]!;
    out.set(bytes.subarray(f * size, f * size + size), c * size);
    for (let k = rank - 1; k >= 0; k--) {
      if (++idx[k]! < shape[k]!) break;
      idx[k] = 0;
    }
  }
  return out;
}

/** The data bytes of an array as described by its header: little-endian, C order (a copy when converted). */
export function normaliseNpyData(h: NpyHeader, data: Uint8Array): Uint8Array {
  let bytes = data;
  if (h.bigEndian) {
    bytes = bytes.slice();
    swapBytes(bytes, DTYPES[h.dtype].size);
  }
  if (h.fortranOrder) bytes = fortranToC(bytes, h.shape, DTYPES[h.dtype].size);
  return bytes;
}

/** Decodes .npy bytes into a little-endian, C-ordered array. */
export function decodeNpy(bytes: Uint8Array, name = '<npy>'): NpyArray {
  const h = parseNpyHeader(bytes, name);
  if (bytes.length < h.dataOffset + h.dataBytes) {
    throw new DataFormatError(name, `truncated: ${bytes.length - h.dataOffset} data bytes for shape (${h.shape.join(', ')}) ${h.dtype}`);
  }
  const data = normaliseNpyData(h, bytes.subarray(h.dataOffset, h.dataOffset + h.dataBytes));
  return { dtype: h.dtype, shape: h.shape, data: typedFromBytes(h.dtype, data) };
}

/**
 * The .npy header for (dtype, shape): version 1.0 when it fits (2.0 otherwise), padded with
 * spaces to a multiple of 64 bytes and ended by '\n', as numpy writes it. `fortranOrder`
 * declares column-major data (the caller then writes it in that order).
 */
export function npyHeader(dtype: NpyDtype, shape: readonly number[], fortranOrder = false): Uint8Array {
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const dict = `{'descr': '${DTYPES[dtype].descr}', 'fortran_order': ${fortranOrder ? 'True' : 'False'}, 'shape': ${shapeText}, }`;
  for (const [major, pre] of [[1, 10], [2, 12]] as const) {
    const total = Math.ceil((pre + dict.length + 1) / 64) * 64;
    const len = total - pre;
    if (major === 1 && len > 0xffff) continue;
    const out = new Uint8Array(total);
    out.set(MAGIC, 0);
    out[6] = major;
    out[7] = 0;
    const dv = new DataView(out.buffer);
    if (major === 1) dv.setUint16(8, len, true);
    else dv.setUint32(8, len, true);
    const text = dict.padEnd(len - 1, ' ') + '\n';
    for (let i = 0; i < text.length; i++) out[pre + i] = text.charCodeAt(i);
    return out;
  }
  throw new Error('npy: header too long');
}

function checkShape(data: NpyData, shape: readonly number[]): void {
  const count = shape.reduce((a, d) => a * d, 1);
  if (shape.some((d) => !Number.isSafeInteger(d) || d < 0)) throw new Error(`npy: bad shape [${shape.join(', ')}]`);
  if (count !== data.length) throw new Error(`npy: ${data.length} values for shape [${shape.join(', ')}]`);
}

/** Encodes a typed array as .npy bytes. `dtype` defaults to the array's ('bool' must be asked for). */
export function encodeNpy(data: NpyData, shape: readonly number[] = [data.length], dtype: NpyDtype = dtypeOf(data)): Uint8Array {
  checkShape(data, shape);
  if (DTYPES[dtype].size !== data.BYTES_PER_ELEMENT) throw new Error(`npy: dtype ${dtype} does not match the array`);
  const head = npyHeader(dtype, shape);
  const out = new Uint8Array(head.length + data.byteLength);
  out.set(head, 0);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), head.length);
  return out;
}

/** Reads a whole .npy file. */
export async function readNpy(path: string): Promise<NpyArray> {
  return decodeNpy(await readFile(path), path);
}

/** Writes a .npy file atomically (missing parent folders are created). */
export async function writeNpy(path: string, data: NpyData, shape?: readonly number[], dtype?: NpyDtype): Promise<void> {
  await writeFileAtomic(path, encodeNpy(data, shape, dtype), { mkdir: true });
}

/**
 * A .npy file opened for random access to its rows (the first axis), without reading it
 * whole: token shards and large sample files.
 */
export class NpyFile {
  readonly dtype: NpyDtype;
  readonly shape: number[];
  /** Elements per row (product of shape[1:]). */
  readonly rowSize: number;
  private fd: number | null;
  private readonly dataOffset: number;
  private readonly bigEndian: boolean;

  constructor(readonly path: string) {
    this.fd = openSync(path, 'r');
    try {
      const head = Buffer.alloc(4096);
      const got = readSync(this.fd, head, 0, head.length, 0);
      let bytes: Uint8Array = head.subarray(0, got);
      // A v2/v3 header may be longer than the first read.
      if (got >= 12 && bytes[6] !== 1) {
        const len = new DataView(bytes.buffer, bytes.byteOffset).getUint32(8, true);
        if (12 + len > got) {
          const big = Buffer.alloc(12 + len);
          readSync(this.fd, big, 0, big.length, 0);
          bytes = big;
        }
      }
      const h = parseNpyHeader(bytes, path);
      if (h.fortranOrder) throw new DataFormatError(path, 'a Fortran-order array has no contiguous rows; read it whole with readNpy');
      this.bigEndian = h.bigEndian;
      this.dtype = h.dtype;
      this.shape = h.shape;
      this.dataOffset = h.dataOffset;
      if (h.shape.length === 0) throw new DataFormatError(path, 'a 0-d array has no rows');
      this.rowSize = h.shape.slice(1).reduce((a, d) => a * d, 1);
    } catch (e) {
      closeSync(this.fd);
      this.fd = null;
      throw e;
    }
  }

  get length(): number {
    return this.shape[0];
  }

  /** Rows [start, start + count) as a new typed array. */
  readRows(start: number, count = 1): NpyData {
    if (this.fd === null) throw new Error(`npy: ${this.path} is closed`);
    if (!(start >= 0 && count >= 0 && start + count <= this.length)) {
      throw new RangeError(`npy: rows [${start}, ${start + count}) outside 0..${this.length} of ${this.path}`);
    }
    const size = DTYPES[this.dtype].size;
    const bytes = Buffer.alloc(count * this.rowSize * size);
    let done = 0;
    while (done < bytes.length) {
      const n = readSync(this.fd, bytes, done, bytes.length - done, this.dataOffset + start * this.rowSize * size + done);
      if (n === 0) throw new DataFormatError(this.path, 'file is shorter than its header says');
      done += n;
    }
    if (this.bigEndian) swapBytes(bytes, size);
    return typedFromBytes(this.dtype, bytes);
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
