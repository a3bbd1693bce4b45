import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  codebookUsage, CodebookUsageCounter, inferDataRange, meanSquaredError, modelImageToUint8, psnr, psnrUint8,
  reconstructionMetrics, ReconstructionMetricsAccumulator, referenceUint8, ssim, ssimUint8, uint8ToUnit,
} from '../src/image-metrics.js';

interface Case {
  h: number; w: number; c: number; seed: number; amp: number;
  psnr_ref: number | 'inf'; ssim_ref: number; psnr_u8: number | 'inf'; ssim_u8: number; ssim_f64: number; ssim_gauss?: number;
}
const fx = JSON.parse(readFileSync(new URL('./fixtures/skimage_metrics.json', import.meta.url), 'utf8')) as {
  skimage: string;
  cases: Case[];
  chain: { h: number; w: number; seed: number; psnr: number; ssim: number; gt_u8_sum: number; rec_u8_sum: number }[];
};

/** Same as hash_u32() in fixtures/make_skimage_fixtures.py (HWC order). */
function hashU32(h: number, w: number, c: number, s: number): Uint32Array {
  const out = new Uint32Array(h * w * c);
  const hs = Math.imul(s, 2654435761 | 0);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let k = 0; k < c; k++) out[(y * w + x) * c + k] = (Math.imul(y, 73856093) ^ Math.imul(x, 19349663) ^ Math.imul(k, 83492791) ^ hs) >>> 0;
    }
  }
  return out;
}
function smoothU8(h: number, w: number, c: number, s: number): Uint8Array {
  const hh = hashU32(h, w, c, s);
  const out = new Uint8Array(h * w * c);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let k = 0; k < c; k++) {
        const i = (y * w + x) * c + k;
        out[i] = (x * 5 + y * 3 + k * 40 + (hh[i] & 15)) % 256;
      }
    }
  }
  return out;
}
function noisy(gt: Uint8Array, h: number, w: number, c: number, s: number, amp: number): Uint8Array {
  const hh = hashU32(h, w, c, s);
  return Uint8Array.from(gt, (v, i) => Math.min(255, Math.max(0, v + (hh[i] % (2 * amp + 1)) - amp)));
}
/** HWC -> CHW. */
function toChw(hwc: ArrayLike<number>, h: number, w: number, c: number): Float32Array {
  const out = new Float32Array(h * w * c);
  for (let p = 0; p < h * w; p++) for (let k = 0; k < c; k++) out[k * h * w + p] = hwc[p * c + k];
  return out;
}
const val = (v: number | 'inf'): number => (v === 'inf' ? Infinity : v);

describe(`PSNR / SSIM against scikit-image ${fx.skimage} (fixtures/make_skimage_fixtures.py)`, () => {
  for (const k of fx.cases) {
    it(`${k.h}x${k.w}x${k.c}, noise ±${k.amp}`, () => {
      const gt = smoothU8(k.h, k.w, k.c, k.seed);
      const rec = noisy(gt, k.h, k.w, k.c, k.seed + 100, k.amp);
      // The reference's form: uint8 / 255 in float32, data range inferred (1) for PSNR, 1 for SSIM.
      const g32 = uint8ToUnit(gt);
      const r32 = uint8ToUnit(rec);
      const p = psnr(g32, r32);
      if (k.amp === 0) expect(p).toBe(Infinity);
      else expect(Math.abs(p - val(k.psnr_ref))).toBeLessThan(1e-9);
      expect(psnrUint8(gt, rec)).toBe(p);
      const s = ssim(r32, g32, k.h, k.w, k.c, { dataRange: 1 });
      expect(Math.abs(s - k.ssim_ref)).toBeLessThan(1e-9); // float32 emulated: the same float32 value
      expect(ssimUint8(rec, gt, k.h, k.w, k.c)).toBe(s);
      // uint8 inputs (float64 inside, data range 255) and float64 inputs.
      if (k.amp !== 0) expect(Math.abs(psnr(gt, rec) - val(k.psnr_u8))).toBeLessThan(1e-9);
      expect(Math.abs(ssim(rec, gt, k.h, k.w, k.c) - k.ssim_u8)).toBeLessThan(1e-12);
      expect(Math.abs(ssim(Float64Array.from(r32), Float64Array.from(g32), k.h, k.w, k.c, { dataRange: 1 }) - k.ssim_f64)).toBeLessThan(1e-12);
      if (k.ssim_gauss !== undefined) {
        const sg = ssim(r32, g32, k.h, k.w, k.c, { dataRange: 1, gaussianWeights: true, useSampleCovariance: false });
        expect(Math.abs(sg - k.ssim_gauss)).toBeLessThan(1e-6);
      }
    });
  }
});

describe('the reference chain (evaluation_image.py)', () => {
  for (const k of fx.chain) {
    it(`${k.h}x${k.w}: [-1,1] floats -> truncated uint8 -> PSNR / SSIM`, () => {
      const { h, w } = k;
      const gt = smoothU8(h, w, 3, k.seed);
      const hh = hashU32(h, w, 3, k.seed + 200);
      const x = Float32Array.from(gt, (v) => v / 127.5 - 1);
      const rec = Float32Array.from(x, (v, i) => {
        const d = Math.fround((((hh[i] & 1023) / 1023) - 0.5) * 0.25);
        return Math.min(1, Math.max(-1, Math.fround(v + d)));
      });
      const xc = toChw(x, h, w, 3);
      const rc = toChw(rec, h, w, 3);
      const gt8 = modelImageToUint8(xc, h, w);
      const rec8 = modelImageToUint8(rc, h, w);
      expect(gt8.reduce((a, v) => a + v, 0)).toBe(k.gt_u8_sum);
      expect(rec8.reduce((a, v) => a + v, 0)).toBe(k.rec_u8_sum);
      // two copies of the image as a batch of 2
      const batchX = new Float32Array(2 * xc.length);
      batchX.set(xc);
      batchX.set(xc, xc.length);
      const batchR = new Float32Array(2 * rc.length);
      batchR.set(rc);
      batchR.set(rc, rc.length);
      const m = reconstructionMetrics(batchX, batchR, 2, h, w);
      for (let i = 0; i < 2; i++) {
        expect(Math.abs(m.psnr[i] - k.psnr)).toBeLessThan(1e-9);
        expect(Math.abs(m.ssim[i] - k.ssim)).toBeLessThan(1e-9);
      }
      const acc = new ReconstructionMetricsAccumulator();
      acc.addBatch(batchX, batchR, 2, h, w);
      acc.addValues([10], [0.5]); // a partial batch counts as one batch mean
      const r = acc.result();
      expect(r.batches).toBe(2);
      expect(r.images).toBe(3);
      expect(r.psnr).toBeCloseTo((k.psnr + 10) / 2, 9);
      expect(r.perImage.psnr).toBeCloseTo((2 * k.psnr + 10) / 3, 9);
    });
  }
});

describe('hand-computed cases', () => {
  it('PSNR: one value off by 0.1 in 4 -> MSE 0.0025 -> 26.0206 dB; data range inference', () => {
    const a = Float64Array.from([0, 0.5, 1, 0.25]);
    const b = Float64Array.from([0, 0.5, 1, 0.35]);
    expect(meanSquaredError(a, b)).toBeCloseTo(0.0025, 15);
    expect(psnr(a, b)).toBeCloseTo(10 * Math.log10(1 / 0.0025), 10);
    expect(inferDataRange(a)).toBe(1);
    expect(inferDataRange(Float64Array.from([-0.5, 1]))).toBe(2);
    expect(inferDataRange(Uint8Array.from([3]))).toBe(255);
    expect(() => inferDataRange(Float64Array.from([2]))).toThrow(/outside/);
    expect(psnr(Uint8Array.from([0, 10]), Uint8Array.from([0, 20]))).toBeCloseTo(10 * Math.log10((255 * 255) / 50), 12);
    expect(psnr(a, a)).toBe(Infinity);
  });

  it('SSIM: identical images give 1; a constant offset on a flat image gives C1-only luminance term', () => {
    const h = 9;
    const w = 9;
    const flat = new Float64Array(h * w).fill(0.5);
    expect(ssim(flat, flat, h, w, 1, { dataRange: 1 })).toBe(1);
    // flat images: variances 0, so S = (2 mx my + C1) / (mx^2 + my^2 + C1) with C2/C2 = 1
    const other = new Float64Array(h * w).fill(0.6);
    const C1 = 0.01 ** 2;
    const expected = (2 * 0.5 * 0.6 + C1) / (0.25 + 0.36 + C1);
    expect(ssim(flat, other, h, w, 1, { dataRange: 1 })).toBeCloseTo(expected, 12);
    expect(() => ssim(flat, other, h, w, 1)).toThrow(/dataRange/);
    expect(() => ssim(new Float64Array(36), new Float64Array(36), 6, 6, 1, { dataRange: 1 })).toThrow(/smaller than/);
  });

  it('referenceUint8: clamp, float32 ((x+1)/2)*255, truncation', () => {
    expect([-2, -1, 0, 1, 2, Number.NaN].map(referenceUint8)).toEqual([0, 0, 127, 255, 255, 0]);
    expect(referenceUint8(Math.fround(1 / 127.5 - 1))).toBe(0); // pixel 1 comes back as 0 (float32 rounding, then truncation)
    expect(referenceUint8(Math.fround(96 / 127.5 - 1))).toBe(96);
  });
});

describe('codebook usage', () => {
  it('fraction of entries used at least once', () => {
    expect(codebookUsage([0, 3, 0, 1])).toEqual({ used: 2, total: 4, fraction: 0.5 });
    expect(codebookUsage([5, 1], 8)).toEqual({ used: 2, total: 8, fraction: 0.25 });
    const c = new CodebookUsageCounter(16);
    c.add(Int32Array.from([1, 1, 2, 15]));
    c.add([2, 3]);
    c.add(BigInt64Array.from([0n]));
    expect(c.result()).toEqual({ used: 5, total: 16, fraction: 5 / 16, tokens: 7 });
    expect(c.counts[1]).toBe(2);
    expect(() => c.add([16])).toThrow(RangeError);
    expect(() => c.add([-1])).toThrow(RangeError);
  });
});
