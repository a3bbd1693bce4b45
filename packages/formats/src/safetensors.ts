// safetensors (https://github.com/huggingface/safetensors) read and write, streaming.
//
// Layout: u64 little-endian N, N bytes of UTF-8 JSON header, then the byte buffer. The header
// maps each tensor name to {dtype, shape, data_offsets: [begin, end]} (offsets relative to
// the byte buffer) plus an optional "__metadata__" string->string map. Validation follows the
// reference Rust implementation: the tensors must tile the byte buffer exactly (sorted by
// offset, no overlap, no gap, nothing after the last one), and each tensor's byte length must
// equal numel * dtype size.

import {
  allocHost,
  assertLittleEndianHost,
  bytesOf,
  checkHostTensor,
  hostDTypeSize,
  shapeNumel,
  type HostDType,
  type HostTensor,
  type HostTypedArray,
} from './dtype.js';
import { CheckpointError } from './errors.js';
import { RandomAccessFile } from './file.js';
import { writeFileAtomic } from './atomic.js';

/** Largest JSON header accepted (same limit as the reference implementation). */
export const SAFETENSORS_MAX_HEADER_BYTES = 100_000_000;

const ST_TO_HOST: Record<string, HostDType> = {
  F32: 'f32', F64: 'f64', F16: 'f16', BF16: 'bf16', I64: 'i64', I32: 'i32', I16: 'i16', I8: 'i8', U8: 'u8', BOOL: 'bool',
};
const HOST_TO_ST: Record<HostDType, string> = {
  f32: 'F32', f64: 'F64', f16: 'F16', bf16: 'BF16', i64: 'I64', i32: 'I32', i16: 'I16', i8: 'I8', u8: 'U8', bool: 'BOOL',
};

/** One tensor's entry in a safetensors header. Offsets are absolute file positions. */
export interface SafetensorsTensorInfo {
  readonly key: string;
  readonly dtype: HostDType;
  readonly shape: readonly number[];
  readonly numel: number;
  /** Absolute file offset of the first byte. */
  readonly start: number;
  readonly byteLength: number;
}

interface ParsedHeader {
  tensors: Map<string, SafetensorsTensorInfo>;
  metadata: Record<string, string>;
}

function isNonNegInt(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

/**
 * Validate the JSON header. `dataStart` is the absolute offset of the byte buffer,
 * `bufferLength` its length.
 */
function parseHeader(file: string, headerBytes: Uint8Array, dataStart: number, bufferLength: number): ParsedHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    throw new CheckpointError(file, 'safetensors header is not valid UTF-8');
  }
  if (!text.startsWith('{')) {
    throw new CheckpointError(file, `safetensors header does not start with '{' (is this a safetensors file?)`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(file, `safetensors header is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new CheckpointError(file, 'safetensors header is not a JSON object');
  }
  const metadata: Record<string, string> = Object.create(null);
  const list: { key: string; begin: number; end: number; dtype: HostDType; shape: number[]; numel: number }[] = [];
  for (const [key, value] of Object.entries(json as Record<string, unknown>)) {
    if (key === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        throw new CheckpointError(file, '__metadata__ is not a JSON object', key);
      }
      for (const [mk, mv] of Object.entries(value as Record<string, unknown>)) {
        if (typeof mv !== 'string') throw new CheckpointError(file, `__metadata__ value for "${mk}" is not a string`, key);
        metadata[mk] = mv;
      }
      continue;
    }
    if (typeof value !== 'object' || value === null) throw new CheckpointError(file, 'tensor entry is not a JSON object', key);
    const { dtype, shape, data_offsets } = value as Record<string, unknown>;
    if (typeof dtype !== 'string') throw new CheckpointError(file, 'tensor entry has no dtype string', key);
    const hostDType = Object.prototype.hasOwnProperty.call(ST_TO_HOST, dtype) ? ST_TO_HOST[dtype] : undefined;
    if (!hostDType) {
      throw new CheckpointError(file, `unknown or unsupported dtype "${dtype}" (supported: ${Object.keys(ST_TO_HOST).join(', ')})`, key);
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegInt)) {
      throw new CheckpointError(file, `invalid shape ${JSON.stringify(shape)}`, key);
    }
    if (!Array.isArray(data_offsets) || data_offsets.length !== 2 || !data_offsets.every(isNonNegInt)) {
      throw new CheckpointError(file, `invalid data_offsets ${JSON.stringify(data_offsets)}`, key);
    }
    const [begin, end] = data_offsets as [number, number];
    if (end < begin) throw new CheckpointError(file, `data_offsets [${begin}, ${end}] end before they begin`, key);
    if (end > bufferLength) {
      throw new CheckpointError(
        file,
        `data_offsets [${begin}, ${end}] are out of range: the data buffer has ${bufferLength} bytes (file truncated?)`,
        key,
      );
    }
    let numel: number;
    try {
      numel = shapeNumel(shape as number[]);
    } catch (e) {
      throw new CheckpointError(file, (e as Error).message, key);
    }
    const expected = numel * hostDTypeSize(hostDType);
    if (end - begin !== expected) {
      throw new CheckpointError(
        file,
        `data_offsets [${begin}, ${end}] span ${end - begin} bytes but ${dtype} [${(shape as number[]).join(', ')}] needs ${expected}`,
        key,
      );
    }
    list.push({ key, begin, end, dtype: hostDType, shape: (shape as number[]).slice(), numel });
  }
  const sorted = list.slice().sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let prev: string | undefined;
  for (const t of sorted) {
    if (t.begin < cursor) {
      throw new CheckpointError(file, `data_offsets [${t.begin}, ${t.end}] overlap those of "${prev}" (which end at ${cursor})`, t.key);
    }
    if (t.begin > cursor) {
      throw new CheckpointError(file, `data_offsets [${t.begin}, ${t.end}] leave a gap of ${t.begin - cursor} unindexed bytes before them`, t.key);
    }
    cursor = t.end;
    prev = t.key;
  }
  if (cursor !== bufferLength) {
    throw new CheckpointError(file, `the data buffer has ${bufferLength} bytes but the tensors cover ${cursor} (trailing or missing data)`);
  }
  const tensors = new Map<string, SafetensorsTensorInfo>();
  for (const t of sorted) {
    tensors.set(t.key, { key: t.key, dtype: t.dtype, shape: t.shape, numel: t.numel, start: dataStart + t.begin, byteLength: t.end - t.begin });
  }
  return { tensors, metadata };
}

function headerLength(file: string, prefix: Uint8Array, fileSize: number): number {
  if (fileSize < 8) throw new CheckpointError(file, `file has ${fileSize} bytes, too short for a safetensors header length (8)`);
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(SAFETENSORS_MAX_HEADER_BYTES)) {
    throw new CheckpointError(file, `safetensors header length ${n} exceeds the limit of ${SAFETENSORS_MAX_HEADER_BYTES} bytes (not a safetensors file?)`);
  }
  const len = Number(n);
  if (8 + len > fileSize) {
    throw new CheckpointError(file, `safetensors header length ${len} is larger than the rest of the file (${fileSize - 8} bytes): truncated file`);
  }
  return len;
}

/**
 * A safetensors file opened for reading. Only the header is read on open; `read(key)`
 * reads one tensor's bytes by file position into its own typed array.
 */
export class SafetensorsReader {
  private constructor(
    private readonly file: RandomAccessFile,
    private readonly tensors: Map<string, SafetensorsTensorInfo>,
    readonly metadata: Readonly<Record<string, string>>,
  ) {}

  get path(): string {
    return this.file.path;
  }

  static async open(path: string): Promise<SafetensorsReader> {
    assertLittleEndianHost();
    const file = await RandomAccessFile.open(path);
    try {
      const prefix = await file.read(0, Math.min(8, file.size), 'header length');
      const len = headerLength(path, prefix, file.size);
      const header = await file.read(8, len, 'header');
      const { tensors, metadata } = parseHeader(path, header, 8 + len, file.size - 8 - len);
      return new SafetensorsReader(file, tensors, metadata);
    } catch (e) {
      await file.close();
      throw e;
    }
  }

  /** Tensor names in file order (by data offset). */
  keys(): string[] {
    return [...this.tensors.keys()];
  }

  has(key: string): boolean {
    return this.tensors.has(key);
  }

  info(key: string): SafetensorsTensorInfo {
    const t = this.tensors.get(key);
    if (!t) throw new CheckpointError(this.path, 'no such tensor in the file', key);
    return t;
  }

  /** One tensor, read from disk into a new typed array. */
  async read(key: string): Promise<HostTensor> {
    const t = this.info(key);
    const data = allocHost(t.dtype, t.numel);
    await this.file.readInto(bytesOf(data), t.start, 'tensor data', key);
    return { dtype: t.dtype, shape: t.shape.slice(), data };
  }

  /** Every tensor (file order). Holds them all in memory: prefer `read` for big files. */
  async readAll(): Promise<Map<string, HostTensor>> {
    const out = new Map<string, HostTensor>();
    for (const k of this.tensors.keys()) out.set(k, await this.read(k));
    return out;
  }

  async close(): Promise<void> {
    await this.file.close();
  }
}

/** Open, read every tensor and the metadata, close. */
export async function readSafetensors(path: string): Promise<{ tensors: Map<string, HostTensor>; metadata: Record<string, string> }> {
  const r = await SafetensorsReader.open(path);
  try {
    return { tensors: await r.readAll(), metadata: { ...r.metadata } };
  } finally {
    await r.close();
  }
}

/**
 * A tensor to write whose data is produced on demand, so that a large file can be written
 * with one tensor in memory at a time. The writer does not keep the array after writing it.
 */
export interface LazyHostTensor {
  readonly dtype: HostDType;
  readonly shape: readonly number[];
  readonly data: () => HostTypedArray | Promise<HostTypedArray>;
}

export type SafetensorsInput =
  | Iterable<readonly [string, HostTensor | LazyHostTensor]>
  | Readonly<Record<string, HostTensor | LazyHostTensor>>;

export interface SafetensorsWriteOptions {
  /** The `__metadata__` string map. */
  readonly metadata?: Readonly<Record<string, string>>;
}

interface PlannedTensor {
  key: string;
  tensor: HostTensor | LazyHostTensor;
  byteLength: number;
}

function entriesOf(input: SafetensorsInput): [string, HostTensor | LazyHostTensor][] {
  if (Symbol.iterator in input) return [...(input as Iterable<readonly [string, HostTensor | LazyHostTensor]>)].map(([k, v]) => [k, v]);
  return Object.entries(input as Record<string, HostTensor | LazyHostTensor>);
}

/** The header bytes (length prefix included) and the write plan. */
function planHeader(input: SafetensorsInput, options: SafetensorsWriteOptions): { header: Uint8Array; plan: PlannedTensor[] } {
  const header: Record<string, unknown> = {};
  if (options.metadata) {
    const md: Record<string, string> = {};
    for (const [k, v] of Object.entries(options.metadata)) {
      if (typeof v !== 'string') throw new TypeError(`safetensors metadata value for "${k}" must be a string`);
      md[k] = v;
    }
    header.__metadata__ = md;
  }
  const plan: PlannedTensor[] = [];
  const seen = new Set<string>();
  let offset = 0;
  for (const [key, t] of entriesOf(input)) {
    if (key === '__metadata__') throw new TypeError('"__metadata__" cannot be a tensor name');
    if (seen.has(key)) throw new TypeError(`duplicate tensor name "${key}"`);
    seen.add(key);
    const st = HOST_TO_ST[t.dtype];
    if (!st) throw new TypeError(`tensor "${key}": unsupported dtype ${String(t.dtype)}`);
    if (typeof t.data !== 'function') checkHostTensor(t as HostTensor, `tensor "${key}"`);
    const byteLength = shapeNumel(t.shape) * hostDTypeSize(t.dtype);
    // Object.defineProperty: a key such as "__proto__" must become a plain JSON member.
    Object.defineProperty(header, key, {
      value: { dtype: st, shape: [...t.shape], data_offsets: [offset, offset + byteLength] },
      enumerable: true,
      configurable: true,
      writable: true,
    });
    plan.push({ key, tensor: t, byteLength });
    offset += byteLength;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  // Pad with spaces so that the byte buffer starts 8-byte aligned (as the Python package does).
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const out = new Uint8Array(8 + padded).fill(0x20, 8);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  return { header: out, plan };
}

async function dataOf(p: PlannedTensor): Promise<HostTypedArray> {
  const t = p.tensor;
  if (typeof t.data !== 'function') return t.data;
  const data = await (t as LazyHostTensor).data();
  checkHostTensor({ dtype: t.dtype, shape: t.shape, data }, `tensor "${p.key}"`);
  return data;
}

/**
 * Write a safetensors file atomically (temporary file, fsync, rename, fsync of the
 * directory), tensor by tensor. Tensors are stored in the order given.
 */
export async function writeSafetensors(path: string, tensors: SafetensorsInput, options: SafetensorsWriteOptions = {}): Promise<void> {
  assertLittleEndianHost();
  const { header, plan } = planHeader(tensors, options);
  await writeFileAtomic(path, async (out) => {
    await out.write(header);
    for (const p of plan) {
      const bytes = bytesOf(await dataOf(p));
      if (bytes.byteLength !== p.byteLength) throw new Error(`tensor "${p.key}": produced ${bytes.byteLength} bytes, expected ${p.byteLength}`);
      await out.write(bytes);
    }
  });
}

/** Encode in memory (for small files and environments without a file system). */
export function encodeSafetensors(
  tensors: Iterable<readonly [string, HostTensor]> | Readonly<Record<string, HostTensor>>,
  options: SafetensorsWriteOptions = {},
): Uint8Array {
  assertLittleEndianHost();
  const { header, plan } = planHeader(tensors, options);
  const total = plan.reduce((s, p) => s + p.byteLength, header.byteLength);
  const out = new Uint8Array(total);
  out.set(header, 0);
  let pos = header.byteLength;
  for (const p of plan) {
    out.set(bytesOf((p.tensor as HostTensor).data), pos);
    pos += p.byteLength;
  }
  return out;
}

/** Decode an in-memory safetensors file. Each tensor gets its own (copied) typed array. */
export function decodeSafetensors(bytes: Uint8Array, name = '<buffer>'): { tensors: Map<string, HostTensor>; metadata: Record<string, string> } {
  assertLittleEndianHost();
  const len = headerLength(name, bytes.subarray(0, 8), bytes.byteLength);
  const { tensors: infos, metadata } = parseHeader(name, bytes.subarray(8, 8 + len), 8 + len, bytes.byteLength - 8 - len);
  const tensors = new Map<string, HostTensor>();
  for (const [k, t] of infos) {
    const data = allocHost(t.dtype, t.numel);
    bytesOf(data).set(bytes.subarray(t.start, t.start + t.byteLength));
    tensors.set(k, { dtype: t.dtype, shape: t.shape.slice(), data });
  }
  return { tensors, metadata };
}
