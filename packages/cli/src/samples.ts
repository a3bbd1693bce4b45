// Sample folders of `ibq sample` and their merging by `ibq merge-samples`: which items
// (class, sample index) a shard owns, the shard metadata (shard.json), the seeded row order of
// samples.npz, and the streamed merge that rebuilds the unsharded file from its shards.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NpzFile, NpzWriter, permutation } from '@ibq/data';
import { UsageError } from './command.js';

export const SHARD_FILE = 'shard.json';

/** Shard folders that do not make one run (exit 1, not a usage error). */
export class ShardError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ShardError';
  }
}
export const SHARD_FORMAT = 'ibq-sample-shard';

/** Item g of the whole run is sample g % perClass of classes[floor(g / perClass)]. */
export interface ItemPlan {
  classes: number[];
  perClass: number;
}

export const itemCount = (p: ItemPlan) => p.classes.length * p.perClass;

/** Shard k of n owns items [floor(k N / n), floor((k + 1) N / n)): even, and nothing dropped. */
export function shardRange(total: number, k: number, n: number): [number, number] {
  return [Math.floor((k * total) / n), Math.floor(((k + 1) * total) / n)];
}

/**
 * `--shard i/n`, or `auto`: Slurm job arrays (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of
 * SLURM_ARRAY_TASK_COUNT) or a Kubernetes indexed Job (JOB_COMPLETION_INDEX, with the count
 * given as `auto/n`). Absent: the whole run (0 of 1).
 */
export function parseShard(value: string | undefined, env: NodeJS.ProcessEnv): { index: number; count: number } {
  if (value === undefined) return { index: 0, count: 1 };
  const check = (index: number, count: number, from: string) => {
    if (!Number.isInteger(count) || count < 1 || !Number.isInteger(index) || index < 0 || index >= count) {
      throw new UsageError(`--shard: ${from} gives shard ${index} of ${count}; expected 0 <= i < n`);
    }
    return { index, count };
  };
  const auto = /^auto(?:\/(\d+))?$/.exec(value);
  if (auto) {
    if (env.SLURM_ARRAY_TASK_ID !== undefined && env.SLURM_ARRAY_TASK_COUNT !== undefined) {
      const id = Number(env.SLURM_ARRAY_TASK_ID) - Number(env.SLURM_ARRAY_TASK_MIN ?? 0);
      return check(id, auto[1] ? Number(auto[1]) : Number(env.SLURM_ARRAY_TASK_COUNT), 'SLURM_ARRAY_TASK_ID/COUNT');
    }
    if (env.JOB_COMPLETION_INDEX !== undefined) {
      if (!auto[1]) throw new UsageError('--shard auto: JOB_COMPLETION_INDEX is set but the shard count is not; pass --shard auto/N (N = the Job\'s completions)');
      return check(Number(env.JOB_COMPLETION_INDEX), Number(auto[1]), 'JOB_COMPLETION_INDEX');
    }
    throw new UsageError('--shard auto: none of SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT or JOB_COMPLETION_INDEX is set');
  }
  const m = /^(\d+)\/(\d+)$/.exec(value);
  if (!m) throw new UsageError(`--shard: expected i/n (e.g. 0/4) or auto, got '${value}'`);
  return check(Number(m[1]), Number(m[2]), `'${value}'`);
}

/** The row order of a shard's samples.npz: row r holds the shard's item order[r] (seeded shuffle). */
export function shardRowOrder(seed: number, start: number, count: number): Uint32Array {
  return permutation(count, seed, start, count, 0x5a4d);
}

export interface ShardMeta {
  format: typeof SHARD_FORMAT;
  version: 1;
  shard: number;
  shards: number;
  /** Items [start, end) of the whole run. */
  start: number;
  end: number;
  total: number;
  /** Everything that must agree between shards of one run. */
  settings: Record<string, unknown>;
}

export function readShardMeta(dir: string): ShardMeta {
  const file = join(dir, SHARD_FILE);
  if (!existsSync(file)) throw new ShardError(`${dir}: no ${SHARD_FILE} (not a folder written by ibq sample)`);
  let meta: ShardMeta;
  try {
    meta = JSON.parse(readFileSync(file, 'utf8')) as ShardMeta;
  } catch (e) {
    throw new ShardError(`${file}: not valid JSON: ${(e as Error).message}`);
  }
  if (meta.format !== SHARD_FORMAT) throw new ShardError(`${file}: format '${String(meta.format)}', expected '${SHARD_FORMAT}'`);
  return meta;
}

/**
 * Checks that the folders are exactly the shards 0..n-1 of one run (same settings) and returns
 * their metadata in shard order.
 */
export function checkShards(dirs: string[]): { dir: string; meta: ShardMeta }[] {
  return checkShardMetas(dirs.map((dir) => ({ dir, meta: readShardMeta(dir) })), 'sampled');
}

/**
 * Checks that the shards (a folder or file each, with its metadata) are exactly the shards
 * 0..n-1 of one run: same count, total and settings, each once, each holding the items its
 * index owns (`owns`: shardRange by default). Returns them in shard order.
 */
export function checkShardMetas<M extends Omit<ShardMeta, 'format' | 'version'>>(
  all: { dir: string; meta: M }[], verb: string, owns: (m: M) => [number, number] = (m) => shardRange(m.total, m.shard, m.shards),
): { dir: string; meta: M }[] {
  const first = all[0];
  const settings = JSON.stringify(first.meta.settings);
  for (const s of all) {
    if (s.meta.shards !== first.meta.shards || s.meta.total !== first.meta.total) {
      throw new ShardError(`${s.dir}: shard ${s.meta.shard} of ${s.meta.shards} (${s.meta.total} samples) does not belong with ${first.dir}: shard ${first.meta.shard} of ${first.meta.shards} (${first.meta.total} samples)`);
    }
    if (JSON.stringify(s.meta.settings) !== settings) {
      const diff = Object.keys({ ...first.meta.settings, ...s.meta.settings })
        .filter((k) => JSON.stringify(first.meta.settings[k]) !== JSON.stringify(s.meta.settings[k]));
      throw new ShardError(`${s.dir} was ${verb} with other settings than ${first.dir}: ${diff.map((k) => `${k} ${JSON.stringify(s.meta.settings[k])} vs ${JSON.stringify(first.meta.settings[k])}`).join(', ')}`);
    }
  }
  const byIndex = new Map<number, string>();
  for (const s of all) {
    const prev = byIndex.get(s.meta.shard);
    if (prev !== undefined) throw new ShardError(`duplicate shard ${s.meta.shard} of ${s.meta.shards}: ${prev} and ${s.dir}`);
    byIndex.set(s.meta.shard, s.dir);
    const [a, b] = owns(s.meta);
    if (s.meta.start !== a || s.meta.end !== b) throw new ShardError(`${s.dir}: holds items [${s.meta.start}, ${s.meta.end}), shard ${s.meta.shard}/${s.meta.shards} owns [${a}, ${b})`);
  }
  const missing = Array.from({ length: first.meta.shards }, (_, i) => i).filter((i) => !byIndex.has(i));
  if (missing.length) throw new ShardError(`missing shard${missing.length > 1 ? 's' : ''} ${missing.join(', ')} of ${first.meta.shards}`);
  return all.sort((x, y) => x.meta.shard - y.meta.shard);
}

/**
 * Streams the shards' samples.npz into one file whose rows are the whole run's seeded order
 * (the same file an unsharded run writes): arr_0 images, arr_1 labels. Returns the row count.
 */
export function mergeSampleShards(shards: { dir: string; meta: ShardMeta }[], out: string, seed: number): number {
  const total = shards[0].meta.total;
  const files = shards.map((s) => NpzFile.open(join(s.dir, 'samples.npz')));
  const writer = new NpzWriter(out);
  try {
    const head = files[0].header('arr_0');
    const rowShape = head.shape.slice(1);
    for (const [i, f] of files.entries()) {
      const h = f.header('arr_0');
      const n = shards[i].meta.end - shards[i].meta.start;
      if (h.dtype !== 'uint8' || h.shape[0] !== n || h.shape.slice(1).join() !== rowShape.join()) {
        throw new ShardError(`${shards[i].dir}/samples.npz: arr_0 is ${h.dtype} [${h.shape}], expected uint8 [${n}, ${rowShape}]`);
      }
    }
    // Where item g sits: shard, and row in that shard's file.
    const shardOf = new Uint32Array(total), rowOf = new Uint32Array(total);
    shards.forEach((s, i) => {
      const order = shardRowOrder(seed, s.meta.start, s.meta.end - s.meta.start);
      order.forEach((item, row) => {
        shardOf[s.meta.start + item] = i;
        rowOf[s.meta.start + item] = row;
      });
    });
    const rows = shardRowOrder(seed, 0, total);
    writer.begin('arr_0', 'uint8', [total, ...rowShape]);
    for (let r = 0; r < total; r++) writer.write(files[shardOf[rows[r]]].readRows('arr_0', rowOf[rows[r]], 1));
    writer.begin('arr_1', 'int64', [total]);
    const labels = new BigInt64Array(total);
    for (let r = 0; r < total; r++) labels[r] = (files[shardOf[rows[r]]].readRows('arr_1', rowOf[rows[r]], 1) as BigInt64Array)[0];
    writer.write(labels);
    writer.close();
  } catch (e) {
    writer.abort();
    throw e;
  } finally {
    for (const f of files) f.close();
  }
  return total;
}
