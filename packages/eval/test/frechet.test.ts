// Frechet distance and streamed statistics against numpy/scipy (fixtures/frechet_golden.npz,
// made by scripts/make_frechet_golden.py).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readNpz } from '@ibq/data';
import { afterAll, describe, expect, it } from 'vitest';
import { FeatureStats, loadPartialStats, savePartialStats } from '../src/feature-stats.js';
import { FrechetError, frechetDistance, frechetDistanceDetails, symmetricEigen, symmetricSqrt } from '../src/frechet.js';

const fx = await readNpz(new URL('./fixtures/frechet_golden.npz', import.meta.url).pathname);
const f64 = (k: string) => Float64Array.from(fx[k].data as Float64Array);
const f32 = (k: string) => Float32Array.from(fx[k].data as Float32Array);
const tmp = mkdtempSync(join(tmpdir(), 'ibq-frechet-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / den;
}

describe.each(['small', 'mid'])('golden case %s', (name) => {
  const dim = fx[`${name}_mu1`].shape[0];
  it('frechetDistance equals scipy sqrtm route to 1e-6 relative', () => {
    const got = frechetDistance(f64(`${name}_mu1`), f64(`${name}_sigma1`), f64(`${name}_mu2`), f64(`${name}_sigma2`));
    const want = Number(fx[`${name}_fid`].data[0]);
    expect(Math.abs(got - want) / Math.abs(want)).toBeLessThan(1e-6);
  });
  it('FeatureStats gives numpy mean and cov(rowvar=False), in one batch or many', () => {
    const x1 = f32(`${name}_x1`);
    const n = x1.length / dim;
    const whole = new FeatureStats(dim).add(x1, n);
    expect(relErr(whole.mean(), f64(`${name}_mu1`))).toBeLessThan(1e-12);
    expect(relErr(whole.covariance(), f64(`${name}_sigma1`))).toBeLessThan(1e-10);
    // batches of 7 into two shards, merged: the same statistics
    const a = new FeatureStats(dim), b = new FeatureStats(dim);
    for (let r = 0; r < n; r += 7) {
      const m = Math.min(7, n - r);
      (r < n / 2 ? a : b).add(x1.subarray(r * dim, (r + m) * dim), m);
    }
    a.merge(b);
    expect(a.count).toBe(n);
    expect(relErr(a.covariance(), whole.covariance())).toBeLessThan(1e-12);
  });
  it('partial statistics written to .npz and read back merge to the same result', async () => {
    const x2 = f32(`${name}_x2`);
    const n = x2.length / dim;
    const half = Math.floor(n / 2);
    const p = join(tmp, `${name}.npz`);
    savePartialStats(p, new FeatureStats(dim).add(x2.subarray(0, half * dim), half));
    const back = await loadPartialStats(p);
    back.add(x2.subarray(half * dim), n - half);
    expect(relErr(back.mean(), f64(`${name}_mu2`))).toBeLessThan(1e-12);
    expect(relErr(back.covariance(), f64(`${name}_sigma2`))).toBeLessThan(1e-10);
  });
  it('the symmetric eigen-solver gives numpy eigvalsh and a square root that squares back', () => {
    const s = f64(`${name}_sigma1`);
    expect(relErr(symmetricEigen(s, dim, false).values, f64(`${name}_eig1`))).toBeLessThan(1e-10);
    expect(relErr(symmetricEigen(s, dim, true).values, f64(`${name}_eig1`))).toBeLessThan(1e-10);
    const r = symmetricSqrt(s, dim);
    const sq = new Float64Array(dim * dim);
    for (let i = 0; i < dim; i++) for (let k = 0; k < dim; k++) for (let j = 0; j < dim; j++) sq[i * dim + j] += r[i * dim + k] * r[k * dim + j];
    expect(relErr(sq, s)).toBeLessThan(1e-10);
  });
});

describe('frechetDistance edge cases', () => {
  const eye = (n: number, v = 1) => Float64Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? v : 0));
  it('is 0 for identical statistics and |mu1-mu2|² for equal covariances', () => {
    const s = f64('small_sigma1'), mu = f64('small_mu1');
    expect(Math.abs(frechetDistance(mu, s, mu, s))).toBeLessThan(1e-10);
    const mu2 = mu.map((v, i) => v + (i === 3 ? 2 : 0));
    expect(frechetDistance(mu, s, mu2, s)).toBeCloseTo(4, 9);
  });
  it('matches the closed form for diagonal covariances', () => {
    const a = Float64Array.of(1, 0, 0, 4), b = Float64Array.of(9, 0, 0, 1);
    // (1 + 4) + (9 + 1) - 2 (sqrt(9) + sqrt(4)) = 5
    expect(frechetDistance(new Float64Array(2), a, new Float64Array(2), b)).toBeCloseTo(5, 12);
  });
  it('handles a singular (rank-deficient) covariance without the offset', () => {
    const d = frechetDistanceDetails(new Float64Array(3), eye(3).map((v, i) => (i === 8 ? 0 : v)), new Float64Array(3), eye(3, 4));
    expect(d.offsetUsed).toBe(false);
    expect(d.distance).toBeCloseTo(2 + 12 - 2 * 4, 10);
  });
  it('rejects mismatched sizes and non-finite inputs, naming them', () => {
    expect(() => frechetDistance(new Float64Array(2), eye(2), new Float64Array(3), eye(3))).toThrow(/different lengths/);
    const bad = eye(2);
    bad[1] = Number.NaN;
    expect(() => frechetDistance(new Float64Array(2), eye(2), new Float64Array(2), bad)).toThrow(FrechetError);
    expect(() => frechetDistance(new Float64Array(2), eye(2), new Float64Array(2), bad)).toThrow(/sigma2 contains a non-finite value/);
  });
  it('errors on a large imaginary component (a covariance far from PSD)', () => {
    const neg = Float64Array.of(1, 0, 0, -1);
    expect(() => frechetDistance(new Float64Array(2), eye(2), new Float64Array(2), neg)).toThrow(/Imaginary component/);
  });
  it('FeatureStats rejects wrong sizes, non-finite rows, too few rows and mismatched merges', () => {
    const s = new FeatureStats(3);
    expect(() => s.add(new Float32Array(5), 2)).toThrow(/expected 2 rows of 3/);
    expect(() => s.add(Float32Array.of(1, Number.NaN, 0), 1)).toThrow(/non-finite feature NaN at row 0, column 1/);
    expect(() => new FeatureStats(3).add(new Float32Array(3), 1).covariance()).toThrow(/at least 2 rows/);
    expect(() => s.merge(new FeatureStats(4))).toThrow(/dimensions differ/);
  });
});
