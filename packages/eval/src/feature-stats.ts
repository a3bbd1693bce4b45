// Streamed float64 feature statistics for FID: the count, the sum and the sum of outer products
// of every feature row seen, so 50,000 images never sit in memory and partial statistics of
// shards merge exactly (sums add). mean() and covariance() give what numpy's mean(axis=0) and
// cov(rowvar=False) (N-1 denominator) give on all rows at once.
//
// Raw (unshifted) moments: cov = (Σxxᵀ - n·μμᵀ)/(n-1). In float64 this loses ~log10(|μ|²/σ²)
// digits; Inception's pool features (non-negative, mean and spread of the same order) keep
// ~15, far below the 1e-6 that FID comparisons need. A fixed shift would make merges of
// shards computed with different shifts inexact, so none is used.

import { readNpz, writeNpz } from '@ibq/data';

export class FeatureStats {
  readonly dim: number;
  private n = 0;
  private readonly total: Float64Array;
  /** Upper triangle (i <= j) of Σ x xᵀ, stored in a full dim x dim array. */
  private readonly cross: Float64Array;

  constructor(dim: number) {
    if (!Number.isSafeInteger(dim) || dim < 1) throw new Error(`FeatureStats: dim must be a positive integer, got ${dim}`);
    this.dim = dim;
    this.total = new Float64Array(dim);
    this.cross = new Float64Array(dim * dim);
  }

  /** Rows seen so far. */
  get count(): number {
    return this.n;
  }

  /** Adds n feature rows, row-major [n, dim]. */
  add(features: Float32Array | Float64Array, n: number): this {
    const d = this.dim;
    if (!Number.isSafeInteger(n) || n < 0 || features.length !== n * d) {
      throw new Error(`FeatureStats.add: expected ${n} rows of ${d} (${n * d} values), got ${features.length} values`);
    }
    const row = new Float64Array(d);
    for (let r = 0; r < n; r++) {
      for (let j = 0; j < d; j++) {
        const v = features[r * d + j];
        if (!Number.isFinite(v)) throw new Error(`FeatureStats.add: non-finite feature ${v} at row ${r}, column ${j}`);
        row[j] = v;
      }
      for (let i = 0; i < d; i++) {
        const xi = row[i];
        this.total[i] += xi;
        if (xi === 0) continue; // ReLU features are often exactly 0
        const base = i * d;
        for (let j = i; j < d; j++) this.cross[base + j] += xi * row[j];
      }
    }
    this.n += n;
    return this;
  }

  /** Adds another partial statistic of the same dimension (a shard): sums add exactly. */
  merge(other: FeatureStats): this {
    if (other.dim !== this.dim) throw new Error(`FeatureStats.merge: dimensions differ (${this.dim} and ${other.dim})`);
    for (let i = 0; i < this.dim; i++) this.total[i] += other.total[i];
    for (let i = 0; i < this.cross.length; i++) this.cross[i] += other.cross[i];
    this.n += other.n;
    return this;
  }

  /** The mean of every row seen (numpy's mean(axis=0)). */
  mean(): Float64Array {
    if (this.n < 1) throw new Error('FeatureStats.mean: no rows were added');
    return this.total.map((s) => s / this.n);
  }

  /** The covariance with the N-1 denominator (numpy's cov(rowvar=False)), row-major dim x dim. */
  covariance(): Float64Array {
    if (this.n < 2) throw new Error(`FeatureStats.covariance: needs at least 2 rows, got ${this.n}`);
    const d = this.dim, n = this.n;
    const mu = this.mean();
    const out = new Float64Array(d * d);
    for (let i = 0; i < d; i++) {
      for (let j = i; j < d; j++) {
        const v = (this.cross[i * d + j] - n * mu[i] * mu[j]) / (n - 1);
        out[i * d + j] = v;
        out[j * d + i] = v;
      }
    }
    return out;
  }

  /** The raw sums, for writing partial statistics (see savePartialStats). */
  sums(): { count: number; sum: Float64Array; crossUpper: Float64Array } {
    return { count: this.n, sum: Float64Array.from(this.total), crossUpper: Float64Array.from(this.cross) };
  }

  /** Rebuilds statistics from sums() (crossUpper: the upper triangle of Σxxᵀ in a full dim x dim array). */
  static fromSums(dim: number, count: number, sum: Float64Array, crossUpper: Float64Array): FeatureStats {
    const s = new FeatureStats(dim);
    if (!Number.isSafeInteger(count) || count < 0) throw new Error(`FeatureStats.fromSums: count must be a non-negative integer, got ${count}`);
    if (sum.length !== dim || crossUpper.length !== dim * dim) {
      throw new Error(`FeatureStats.fromSums: expected sum [${dim}] and cross [${dim}, ${dim}], got ${sum.length} and ${crossUpper.length} values`);
    }
    s.n = count;
    s.total.set(sum);
    s.cross.set(crossUpper);
    return s;
  }
}

/** Statistics a FID needs: the mean and the covariance (row-major), as pytorch-fid's stats .npz. */
export interface GaussianStats {
  mu: Float64Array;
  sigma: Float64Array;
}

/** Writes partial statistics (count, sum, cross) to an .npz that `ibq merge-stats` reads back. */
export function savePartialStats(path: string, stats: FeatureStats): void {
  const { count, sum, crossUpper } = stats.sums();
  const d = stats.dim;
  writeNpz(path, {
    count: { data: Float64Array.of(count), shape: [] },
    sum: { data: sum, shape: [d] },
    cross: { data: crossUpper, shape: [d, d] },
  });
}

/** Reads partial statistics written by savePartialStats; names the file and key on bad input. */
export async function loadPartialStats(path: string): Promise<FeatureStats> {
  const arrays = await readNpz(path);
  for (const k of ['count', 'sum', 'cross']) {
    if (!(k in arrays)) throw new Error(`${path}: not a partial statistics file (no '${k}' array; has ${Object.keys(arrays).join(', ') || 'nothing'})`);
  }
  const d = arrays.sum.shape[0];
  if (arrays.sum.shape.length !== 1 || arrays.cross.shape.join(',') !== `${d},${d}`) {
    throw new Error(`${path}: 'sum' [${arrays.sum.shape}] and 'cross' [${arrays.cross.shape}] do not fit together`);
  }
  const f64 = (k: string) => Float64Array.from(arrays[k].data as ArrayLike<number>);
  return FeatureStats.fromSums(d, Number(arrays.count.data[0]), f64('sum'), f64('cross'));
}
