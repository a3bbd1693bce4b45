// Token shards: `.npy` int32 grids [N, h, w], sequences [N, L], or several stored views per
// item [N, A, h, w] (an image and its mirror, LlamaGen's ten crops), with optional labels in a
// sibling `<stem>.labels.npy` ([N], any integer type; `ibq tokenize` writes int64). A folder
// written by `ibq tokenize` also has `index.json` (the tokenizer, its config hash, the grid
// and the augmentation) and one `<stem>.json` per finished shard. Rows are read on demand,
// synchronously (`get`) or with positioned asynchronous reads (`readBatch`, for the loader).

import { existsSync, readFileSync, statSync } from 'node:fs';
import { type FileHandle, open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { DataFormatError } from '../errors.js';
import { writeFileAtomic } from '../fsutil.js';
import { dtypeSize, NpyFile, typedFromBytes, writeNpy, type NpyData, type NpyDtype } from '../npy.js';
import { checkIndex } from './types.js';

export interface TokenSample {
  /** Row-major h x w token indices (one view). */
  tokens: Int32Array;
  height: number;
  width: number;
  label?: number;
}

const INT_TYPES = new Set(['uint8', 'int8', 'uint16', 'int16', 'uint32', 'int32', 'int64', 'uint64']);

function toInt32(data: NpyData, name: string): Int32Array {
  if (data instanceof Int32Array) return data;
  const out = new Int32Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const v = Number(data[i]);
    if (!Number.isSafeInteger(v) || v > 0x7fffffff || v < -0x80000000) throw new DataFormatError(name, `value ${v} does not fit int32`);
    out[i] = v;
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// The folder layout written by `ibq tokenize`

export const TOKEN_INDEX_FILE = 'index.json';
export const TOKEN_INDEX_FORMAT = 'ibq-token-shards';

/** How the stored views of an item were made. */
export interface TokenAugmentation {
  /** 'none': the image; 'flip': image, mirror; 'ten-crop': LlamaGen's TenCrop (4 corners + centre, then their mirrors). */
  kind: 'none' | 'flip' | 'ten-crop';
  /** ten-crop: the image is centre-cropped to floor(resolution x cropRange) first. */
  cropRange?: number;
  views: number;
}

/** index.json: what a shard folder holds. Written before the shards, identical on every re-run. */
export interface TokenShardIndex {
  format: typeof TOKEN_INDEX_FORMAT;
  version: 1;
  tokenizer: { config: string; configSha256: string; checkpoint: string; checkpointSha256: string; nEmbed: number; resolution: number };
  grid: [number, number];
  augmentation: TokenAugmentation;
  dataset: { source: string; split: string; items: number; classes?: readonly string[] };
  /** Items per shard (the last one may have fewer); shard k holds items [k*shardItems, ...). */
  shardItems: number;
  shards: number;
}

/** `<stem>.json`, written after a shard's arrays: the shard is finished. */
export interface TokenShardRecord {
  /** Dataset items [first, end) were read; `rows` of them are stored (the others were skipped). */
  first: number;
  end: number;
  rows: number;
  skipped: { index: number; path?: string; reason: string }[];
}

export const shardStem = (k: number): string => `shard-${String(k).padStart(5, '0')}`;

export function readTokenIndex(dir: string): TokenShardIndex | null {
  const p = join(dir, TOKEN_INDEX_FILE);
  if (!existsSync(p)) return null;
  let v: TokenShardIndex;
  try {
    v = JSON.parse(readFileSync(p, 'utf8')) as TokenShardIndex;
  } catch (e) {
    throw new DataFormatError(p, `not JSON: ${(e as Error).message}`);
  }
  if (v.format !== TOKEN_INDEX_FORMAT) throw new DataFormatError(p, `format '${String(v.format)}', expected '${TOKEN_INDEX_FORMAT}'`);
  if (!(Number.isInteger(v.shards) && v.shards >= 0 && Number.isInteger(v.shardItems) && v.shardItems > 0)) {
    throw new DataFormatError(p, 'bad shards / shardItems');
  }
  return v;
}

export async function writeTokenIndex(dir: string, index: TokenShardIndex): Promise<void> {
  await writeFileAtomic(join(dir, TOKEN_INDEX_FILE), Buffer.from(`${JSON.stringify(index, null, 2)}\n`));
}

/** The record of a finished shard, or null when the shard is not finished. */
export function readShardRecord(dir: string, k: number): TokenShardRecord | null {
  const p = join(dir, `${shardStem(k)}.json`);
  if (!existsSync(p)) return null;
  try {
    return JSON.parse(readFileSync(p, 'utf8')) as TokenShardRecord;
  } catch (e) {
    throw new DataFormatError(p, `not JSON: ${(e as Error).message}`);
  }
}

/**
 * Writes shard k of a folder: tokens [rows, views, h, w] int32, labels [rows] int64, then
 * the record that marks it finished (each file atomically, the record last).
 */
export async function writeIndexedShard(
  dir: string, k: number, tokens: Int32Array, labels: ArrayLike<number>, views: number, height: number, width: number, record: TokenShardRecord,
): Promise<void> {
  const rows = labels.length;
  if (tokens.length !== rows * views * height * width) throw new Error(`writeIndexedShard: ${tokens.length} tokens for [${rows}, ${views}, ${height}, ${width}]`);
  if (record.rows !== rows) throw new Error(`writeIndexedShard: record says ${record.rows} rows, arrays have ${rows}`);
  const stem = join(dir, shardStem(k));
  await writeNpy(`${stem}.npy`, tokens, [rows, views, height, width], 'int32');
  await writeNpy(`${stem}.labels.npy`, BigInt64Array.from(Array.from(labels, (v) => BigInt(v))), [rows], 'int64');
  await writeFileAtomic(`${stem}.json`, Buffer.from(`${JSON.stringify(record)}\n`));
}

// ---------------------------------------------------------------------------------------
// Reading

interface Shard {
  path: string;
  file: NpyFile;
  /** For asynchronous positioned reads (opened once, on first use). */
  handle: Promise<FileHandle> | null;
  dataOffset: number;
  itemSize: number;
  labels: Int32Array | null;
  start: number;
  length: number;
}

/** Labels file of a shard: `x.npy` -> `x.labels.npy`. */
export function labelsPathOf(shardPath: string): string {
  return shardPath.replace(/\.npy$/, '') + '.labels.npy';
}

export class TokenShardDataset {
  readonly height: number;
  readonly width: number;
  /** Stored views per item (1, or 2 with --flip, 10 with --ten-crop). */
  readonly views: number;
  readonly length: number;
  /** index.json of a folder written by `ibq tokenize`, when there is one. */
  readonly index: TokenShardIndex | null;

  private constructor(private readonly shards: Shard[], index: TokenShardIndex | null) {
    this.index = index;
    const s = shards[0].file.shape;
    if (s.length === 4) {
      [this.views, this.height, this.width] = [s[1], s[2], s[3]];
    } else if (s.length === 3) {
      [this.views, this.height, this.width] = [1, s[1], s[2]];
    } else if (s.length === 2) {
      const side = Math.round(Math.sqrt(s[1]));
      this.views = 1;
      [this.height, this.width] = side * side === s[1] ? [side, side] : [1, s[1]];
    } else throw new DataFormatError(shards[0].path, `token shard must be [N, h, w], [N, L] or [N, views, h, w], got [${s.join(', ')}]`);
    for (const sh of shards) {
      const sv = sh.file.shape.length === 4 ? sh.file.shape[1] : 1;
      if (sh.file.rowSize !== this.views * this.height * this.width || sv !== this.views) {
        throw new DataFormatError(sh.path, `rows of [${sh.file.shape.slice(1).join(', ')}], first shard has [${s.slice(1).join(', ')}]`);
      }
    }
    this.length = shards.reduce((a, sh) => a + sh.length, 0);
  }

  /**
   * A shard file, a list of shard files, or a folder (its *.npy files except *.labels.npy,
   * sorted). A folder with index.json must be complete: every shard it plans finished.
   */
  static async open(input: string | readonly string[]): Promise<TokenShardDataset> {
    let files: string[];
    let index: TokenShardIndex | null = null;
    if (typeof input === 'string' && !existsSync(input)) throw new Error(`token shards: '${input}' does not exist`);
    if (typeof input === 'string' && statSync(input).isDirectory()) {
      index = readTokenIndex(input);
      if (index) {
        const missing: number[] = [];
        for (let k = 0; k < index.shards; k++) if (!readShardRecord(input, k)) missing.push(k);
        if (missing.length > 0) {
          throw new DataFormatError(join(input, TOKEN_INDEX_FILE),
            `${missing.length} of ${index.shards} shards are not finished (${missing.slice(0, 5).map(shardStem).join(', ')}${missing.length > 5 ? ', ...' : ''}); run 'ibq tokenize' again to finish them`);
        }
        files = Array.from({ length: index.shards }, (_, k) => join(input, `${shardStem(k)}.npy`));
      } else {
        files = (await readdir(input))
          .filter((n) => n.endsWith('.npy') && !n.endsWith('.labels.npy'))
          .sort()
          .map((n) => join(input, n));
      }
    } else files = typeof input === 'string' ? [input] : [...input];
    if (files.length === 0) throw new Error(`token shards: no .npy files in ${String(input)}`);
    const shards: Shard[] = [];
    let start = 0;
    try {
      for (const f of files) {
        const file = new NpyFile(f);
        if (!INT_TYPES.has(file.dtype)) {
          file.close();
          throw new DataFormatError(f, `token shard of dtype ${file.dtype}; integers expected`);
        }
        const itemSize = dtypeSize(file.dtype);
        // .npy data runs to the end of the file: the header length follows from the size.
        const dataOffset = statSync(f).size - file.length * file.rowSize * itemSize;
        let labels: Int32Array | null = null;
        const lp = labelsPathOf(f);
        if (existsSync(lp)) {
          const lf = new NpyFile(lp);
          try {
            if (lf.shape.length !== 1 || lf.length !== file.length) {
              throw new DataFormatError(lp, `labels [${lf.shape.join(', ')}] for ${file.length} rows`);
            }
            labels = toInt32(lf.readRows(0, lf.length), lp);
          } finally {
            lf.close();
          }
        }
        shards.push({ path: f, file, handle: null, dataOffset, itemSize, labels, start, length: file.length });
        start += file.length;
      }
    } catch (e) {
      for (const s of shards) s.file.close();
      throw e;
    }
    return new TokenShardDataset(shards, index);
  }

  /** Tokens per view (h x w). */
  get tokensPerItem(): number {
    return this.height * this.width;
  }

  private locate(i: number): [Shard, number] {
    checkIndex(i, this.length, 'TokenShardDataset');
    let lo = 0;
    let hi = this.shards.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.shards[mid].start <= i) lo = mid;
      else hi = mid - 1;
    }
    const sh = this.shards[lo];
    return [sh, i - sh.start];
  }

  private checkView(view: number): void {
    if (!(Number.isInteger(view) && view >= 0 && view < this.views)) throw new RangeError(`TokenShardDataset: view ${view} outside 0..${this.views - 1}`);
  }

  labelOf(i: number): number | undefined {
    const [sh, r] = this.locate(i);
    return sh.labels ? sh.labels[r] : undefined;
  }

  /** Item i's view `view` (default the first: the image itself). */
  get(i: number, view = 0): TokenSample {
    this.checkView(view);
    const [sh, r] = this.locate(i);
    const n = this.tokensPerItem;
    const all = toInt32(sh.file.readRows(r, 1), sh.path);
    const tokens = this.views === 1 ? all : all.slice(view * n, (view + 1) * n);
    const out: TokenSample = { tokens, height: this.height, width: this.width };
    if (sh.labels) out.label = sh.labels[r];
    return out;
  }

  /** The rows of `indices` (one view each, default 0) as one [count, h, w] Int32Array, and their labels (-1 if none). */
  getBatch(indices: ArrayLike<number>, views?: ArrayLike<number>): { tokens: Int32Array; labels: Int32Array } {
    const n = this.tokensPerItem;
    const tokens = new Int32Array(indices.length * n);
    const labels = new Int32Array(indices.length);
    for (let k = 0; k < indices.length; k++) {
      const s = this.get(indices[k], views ? views[k] : 0);
      tokens.set(s.tokens, k * n);
      labels[k] = s.label ?? -1;
    }
    return { tokens, labels };
  }

  /**
   * getBatch with asynchronous positioned reads of just the chosen views (they run on libuv's
   * threads, so a loader can prepare batches while the model computes).
   */
  async readBatch(indices: ArrayLike<number>, views?: ArrayLike<number>): Promise<{ tokens: Int32Array; labels: Int32Array }> {
    const n = this.tokensPerItem;
    const tokens = new Int32Array(indices.length * n);
    const labels = new Int32Array(indices.length);
    await Promise.all(Array.from({ length: indices.length }, async (_, k) => {
      const view = views ? views[k] : 0;
      this.checkView(view);
      const [sh, r] = this.locate(indices[k]);
      labels[k] = sh.labels ? sh.labels[r] : -1;
      sh.handle ??= open(sh.path, 'r');
      const fh = await sh.handle;
      const bytes = Buffer.alloc(n * sh.itemSize);
      const pos = sh.dataOffset + (r * this.views + view) * n * sh.itemSize;
      let done = 0;
      while (done < bytes.length) {
        const { bytesRead } = await fh.read(bytes, done, bytes.length - done, pos + done);
        if (bytesRead === 0) throw new DataFormatError(sh.path, 'file is shorter than its header says');
        done += bytesRead;
      }
      tokens.set(toInt32(typedFromBytes(sh.file.dtype as NpyDtype, bytes), sh.path), k * n);
    }));
    return { tokens, labels };
  }

  async close(): Promise<void> {
    for (const s of this.shards) {
      s.file.close();
      const h = s.handle;
      s.handle = null;
      if (h) await (await h).close();
    }
  }
}

/** Writes a token shard ([n, h, w] int32) and, if given, its labels ([n] int32) beside it. */
export async function writeTokenShard(
  path: string, tokens: Int32Array, n: number, height: number, width: number, labels?: Int32Array,
): Promise<void> {
  if (tokens.length !== n * height * width) throw new Error(`writeTokenShard: ${tokens.length} tokens for [${n}, ${height}, ${width}]`);
  if (labels && labels.length !== n) throw new Error(`writeTokenShard: ${labels.length} labels for ${n} rows`);
  if (!path.endsWith('.npy')) throw new Error('writeTokenShard: the path must end in .npy');
  await writeNpy(path, tokens, [n, height, width], 'int32');
  if (labels) await writeNpy(labelsPathOf(path), labels, [n], 'int32');
}
