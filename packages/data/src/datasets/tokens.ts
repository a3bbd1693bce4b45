// Token shards: `.npy` int32 grids [N, h, w] (or sequences [N, L]) with optional labels in a
// sibling `<stem>.labels.npy` ([N], integer). Rows are read on demand, not loaded whole.

import { existsSync, statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { DataFormatError } from '../errors.js';
import { NpyFile, writeNpy, type NpyData } from '@ibq/formats';
import { checkIndex } from './types.js';

export interface TokenSample {
  /** Row-major h x w token indices. */
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

interface Shard {
  tokens: NpyFile;
  labels: Int32Array | null;
  start: number;
}

/** Labels file of a shard: `x.npy` -> `x.labels.npy`. */
export function labelsPathOf(shardPath: string): string {
  return shardPath.replace(/\.npy$/, '') + '.labels.npy';
}

export class TokenShardDataset {
  readonly height: number;
  readonly width: number;
  readonly length: number;

  private constructor(private readonly shards: Shard[]) {
    const t = shards[0].tokens;
    const s = t.shape;
    if (s.length === 3) {
      this.height = s[1];
      this.width = s[2];
    } else if (s.length === 2) {
      const side = Math.round(Math.sqrt(s[1]));
      [this.height, this.width] = side * side === s[1] ? [side, side] : [1, s[1]];
    } else throw new DataFormatError(t.path, `token shard must be [N, h, w] or [N, L], got [${s.join(', ')}]`);
    for (const sh of shards) {
      if (sh.tokens.rowSize !== this.height * this.width) {
        throw new DataFormatError(sh.tokens.path, `rows of ${sh.tokens.rowSize} tokens, first shard has ${this.height * this.width}`);
      }
    }
    this.length = shards.reduce((a, sh) => a + sh.tokens.length, 0);
  }

  /** A shard file, a list of shard files, or a folder (its *.npy files except *.labels.npy, sorted). */
  static async open(input: string | readonly string[]): Promise<TokenShardDataset> {
    let files: string[];
    if (typeof input === 'string' && statSync(input).isDirectory()) {
      files = (await readdir(input))
        .filter((n) => n.endsWith('.npy') && !n.endsWith('.labels.npy'))
        .sort()
        .map((n) => join(input, n));
    } else files = typeof input === 'string' ? [input] : [...input];
    if (files.length === 0) throw new Error(`token shards: no .npy files in ${String(input)}`);
    const shards: Shard[] = [];
    let start = 0;
    try {
      for (const f of files) {
        const tokens = new NpyFile(f);
        if (!INT_TYPES.has(tokens.dtype)) throw new DataFormatError(f, `token shard of dtype ${tokens.dtype}; integers expected`);
        let labels: Int32Array | null = null;
        const lp = labelsPathOf(f);
        if (existsSync(lp)) {
          const lf = new NpyFile(lp);
          try {
            if (lf.shape.length !== 1 || lf.length !== tokens.length) {
              throw new DataFormatError(lp, `labels [${lf.shape.join(', ')}] for ${tokens.length} rows`);
            }
            labels = toInt32(lf.readRows(0, lf.length), lp);
          } finally {
            lf.close();
          }
        }
        shards.push({ tokens, labels, start });
        start += tokens.length;
      }
    } catch (e) {
      for (const s of shards) s.tokens.close();
      throw e;
    }
    return new TokenShardDataset(shards);
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

  labelOf(i: number): number | undefined {
    const [sh, r] = this.locate(i);
    return sh.labels ? sh.labels[r] : undefined;
  }

  get(i: number): TokenSample {
    const [sh, r] = this.locate(i);
    const tokens = toInt32(sh.tokens.readRows(r, 1), sh.tokens.path);
    const out: TokenSample = { tokens, height: this.height, width: this.width };
    if (sh.labels) out.label = sh.labels[r];
    return out;
  }

  /** The rows of `indices` as one [count, h, w] Int32Array (may span shards) and their labels (-1 if none). */
  getBatch(indices: ArrayLike<number>): { tokens: Int32Array; labels: Int32Array } {
    const n = this.height * this.width;
    const tokens = new Int32Array(indices.length * n);
    const labels = new Int32Array(indices.length);
    for (let k = 0; k < indices.length; k++) {
      const s = this.get(indices[k]);
      tokens.set(s.tokens, k * n);
      labels[k] = s.label ?? -1;
    }
    return { tokens, labels };
  }

  close(): void {
    for (const s of this.shards) s.tokens.close();
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
