// Partial statistics of sharded `ibq eval-tokenizer` / `ibq eval-samples` runs: one .npz per
// shard with its metadata (JSON bytes in member 'meta': which command, which shard, which items,
// the settings that must agree) beside the sums and rows that `ibq merge-stats` adds up.

import { NpzFile, type NpzInput, writeNpz } from '@ibq/data';
import { FeatureStats } from '@ibq/eval';
import { ShardError, checkShardMetas } from './samples.js';

export const EVAL_PARTIAL_FORMAT = 'ibq-eval-partial';
export type EvalPartialKind = 'eval-tokenizer' | 'eval-samples';

export interface EvalPartialMeta {
  format: typeof EVAL_PARTIAL_FORMAT;
  version: 1;
  kind: EvalPartialKind;
  shard: number;
  shards: number;
  /** Items [start, end) of the whole run's `total`. */
  start: number;
  end: number;
  total: number;
  /** Everything that must agree between shards of one run. */
  settings: Record<string, unknown>;
  /** Per-kind facts the report needs (not compared between shards). */
  extra: Record<string, unknown>;
}

/** The members of a FeatureStats under `prefix` (count, sum, cross: as savePartialStats writes them). */
export function statsMembers(prefix: string, s: FeatureStats): Record<string, NpzInput> {
  const { count, sum, crossUpper } = s.sums();
  return {
    [`${prefix}.count`]: { data: Float64Array.of(count), shape: [] },
    [`${prefix}.sum`]: sum,
    [`${prefix}.cross`]: { data: crossUpper, shape: [s.dim, s.dim] },
  };
}

/** Writes a shard's partial file (atomically, through the npz writer). */
export function writeEvalPartial(path: string, meta: EvalPartialMeta, members: Record<string, NpzInput>): void {
  writeNpz(path, { meta: new TextEncoder().encode(JSON.stringify(meta)), ...members });
}

/** An opened partial file: its metadata and lazy access to its members. */
export class EvalPartial {
  private constructor(readonly path: string, readonly meta: EvalPartialMeta, private readonly file: NpzFile) {}

  /** The metadata of an .npz, or null when it has no 'meta' member (a plain statistics file). */
  static open(path: string): EvalPartial | null {
    const file = NpzFile.open(path);
    if (!file.keys.includes('meta')) {
      file.close();
      return null;
    }
    let meta: EvalPartialMeta;
    try {
      meta = JSON.parse(new TextDecoder().decode(file.get('meta').data as Uint8Array)) as EvalPartialMeta;
    } catch (e) {
      file.close();
      throw new ShardError(`${path}: 'meta' is not valid JSON: ${(e as Error).message}`);
    }
    if (meta.format !== EVAL_PARTIAL_FORMAT) {
      file.close();
      throw new ShardError(`${path}: 'meta' format '${String(meta.format)}', expected '${EVAL_PARTIAL_FORMAT}'`);
    }
    return new EvalPartial(path, meta, file);
  }

  has(key: string): boolean {
    return this.file.keys.includes(key);
  }

  array(key: string): ArrayLike<number> {
    if (!this.has(key)) throw new ShardError(`${this.path}: no '${key}' array (a ${this.meta.kind} partial file holds ${this.file.keys.join(', ')})`);
    return this.file.get(key).data as ArrayLike<number>;
  }

  f32(key: string): Float32Array {
    const a = this.array(key);
    return a instanceof Float32Array ? a : Float32Array.from(a);
  }

  stats(prefix: string): FeatureStats {
    const sum = Float64Array.from(this.array(`${prefix}.sum`));
    return FeatureStats.fromSums(sum.length, Number(this.array(`${prefix}.count`)[0]), sum, Float64Array.from(this.array(`${prefix}.cross`)));
  }

  close(): void {
    this.file.close();
  }
}

/**
 * Checks that the partial files are the shards 0..n-1 of one run of one command (same kind and
 * settings, none missing or twice) and returns them in shard order. `owns`: the items shard k owns.
 */
export function checkEvalShards(parts: EvalPartial[], owns?: (m: EvalPartialMeta) => [number, number]): EvalPartial[] {
  const kind = parts[0].meta.kind;
  for (const p of parts) {
    if (p.meta.kind !== kind) throw new ShardError(`${p.path}: partial statistics of '${p.meta.kind}', but ${parts[0].path} has '${kind}'`);
  }
  const sorted = checkShardMetas(parts.map((p) => ({ dir: p.path, meta: p.meta })), 'computed', owns);
  return sorted.map((s) => parts.find((p) => p.path === s.dir && p.meta === s.meta)!);
}

/** Joins row blocks (row-major float32) into one array. */
export function concatRows(blocks: Float32Array[]): Float32Array {
  const out = new Float32Array(blocks.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of blocks) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
