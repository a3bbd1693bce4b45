// Inception Score and precision / recall against the ADM suite's formulas in numpy
// (scripts/make_adm_metrics_golden.py).
import { readNpz } from '@ibq/data';
import { testBackends } from '@ibq/kernels/harness';
import { afterAll, describe, expect, it } from 'vitest';
import { inceptionScore, manifoldRadii, precisionRecall } from '../src/adm-metrics.js';

const fx = await readNpz(new URL('./fixtures/adm_metrics_golden.npz', import.meta.url).pathname);
const { backends, destroyAll } = await testBackends(['reference', 'cpu']);
afterAll(() => destroyAll());
const f32 = (k: string) => fx[k].data as Float32Array;

describe('Inception Score', () => {
  it('equals the formula with 5,000-row splits and with small splits (a partial last split)', () => {
    const all = inceptionScore(f32('logits'), 23);
    expect(all.splits).toHaveLength(1);
    expect(all.mean).toBeCloseTo(Number(fx.is_splits_all.data[0]), 6);
    const ten = inceptionScore(f32('logits'), 23, 1008, 10);
    expect(ten.splits).toHaveLength(3);
    ten.splits.forEach((s, i) => expect(s).toBeCloseTo(Number(fx.is_splits_10.data[i]), 6));
    const m = ten.splits.reduce((a, b) => a + b) / 3;
    expect(ten.mean).toBeCloseTo(m, 12);
  });
  it('is 1 for identical predictions and rejects a wrong size', () => {
    expect(inceptionScore(new Float32Array(4 * 1008).fill(0.5), 4).mean).toBeCloseTo(1, 12);
    expect(() => inceptionScore(new Float32Array(10), 4)).toThrow(/expected 4 x 1008 logits/);
  });
});

describe.each(backends.map((b) => [b.name, b] as const))('precision / recall on %s', (_n, be) => {
  it('radii (k = 3, self included) and precision / recall equal the numpy formulas', async () => {
    const d = fx.ref.shape[1];
    const radii = await manifoldRadii(f32('ref'), fx.ref.shape[0], d, 3, be);
    const want = f32('radii_ref');
    for (let i = 0; i < want.length; i++) expect(Math.abs(radii[i] - want[i])).toBeLessThan(1e-4 * want[i]);
    const pr = await precisionRecall(f32('ref'), fx.ref.shape[0], f32('sample'), fx.sample.shape[0], d, be);
    expect(pr.precision).toBeCloseTo(Number(fx.precision.data[0]), 12);
    expect(pr.recall).toBeCloseTo(Number(fx.recall.data[0]), 12);
  });
  it('needs more than k rows', async () => {
    await expect(manifoldRadii(new Float32Array(6), 3, 2, 3, be)).rejects.toThrow(/3 feature rows, but k = 3/);
  });
});
