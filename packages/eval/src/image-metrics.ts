// Host-side image metrics of the reference's evaluation (spec eval.md §4): PSNR and SSIM with
// scikit-image semantics, the reference's uint8 step, and codebook usage.
//
// Precision follows scikit-image and NumPy exactly where the reference feeds float32 arrays:
// element-wise work in float32 (Math.fround after every operation), the uniform filter as
// scipy.ndimage (1.10) computes it (a running sum in float64 per line, divided by the window
// at each output, stored to float32 after each axis, axis 0 first), means in float64. Float64Array or plain-array inputs are computed in float64
// throughout, and Uint8Array inputs are converted to float64, as skimage's _as_floats does.

import { floatToByte, fromFloat } from '@ibq/data';

// ------------------------------------------------------------------------------ uint8 step

/**
 * The reference's uint8 step (clamp, float32 `((x + 1) / 2) * 255`, truncation) has one home,
 * @ibq/data's floatToByte / fromFloat; these names keep eval's API.
 * Note: truncation after float32 rounding maps 95 of the 256 pixel values p (1..95) of an
 * original image, fed as p/127.5 - 1, to p - 1; the reference's PSNR/SSIM include this.
 */
export const referenceUint8: (x: number) => number = floatToByte;

/** A [3, H, W] float image in [-1, 1] (at `offset` of a batch) -> uint8 HWC by the reference's uint8 step. */
export function modelImageToUint8(chw: ArrayLike<number>, height: number, width: number, offset = 0, channels = 3): Uint8Array {
  return fromFloat(chw, height, width, channels, 'chw', offset);
}

/** uint8 -> float32 u / 255, as `rgb.astype(np.float32) / 255.`. */
export function uint8ToUnit(u8: Uint8Array): Float32Array {
  const out = new Float32Array(u8.length);
  for (let i = 0; i < u8.length; i++) out[i] = u8[i] / 255;
  return out;
}

// ------------------------------------------------------------------------------------ PSNR

type Input = Uint8Array | Float32Array | Float64Array | readonly number[];

function isFloat32(a: Input): boolean {
  return a instanceof Float32Array;
}

function minMax(a: Input): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < a.length; i++) {
    const v = a[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

/**
 * skimage's inferred data range (`data_range=None`): for uint8 255; for floats 1 when
 * min(image_true) >= 0, else 2; an error if image_true leaves the dtype's range ([-1, 1] for floats).
 */
export function inferDataRange(imageTrue: Input): number {
  const [lo, hi] = minMax(imageTrue);
  if (imageTrue instanceof Uint8Array) return 255;
  if (hi > 1 || lo < -1) {
    throw new Error('psnr: image_true has values outside [-1, 1] for a float image; give dataRange explicitly');
  }
  return lo >= 0 ? 1 : 2;
}

/** Mean squared error as skimage: element-wise in float32 for two float32 inputs (else float64), mean in float64. */
export function meanSquaredError(a: Input, b: Input): number {
  if (a.length !== b.length) throw new Error(`mse: ${a.length} vs ${b.length} values`);
  if (a.length === 0) throw new Error('mse: empty images');
  const f32 = isFloat32(a) && isFloat32(b);
  let sum = 0;
  if (f32) {
    for (let i = 0; i < a.length; i++) {
      const d = Math.fround(a[i] - b[i]);
      sum += Math.fround(d * d);
    }
  } else {
    for (let i = 0; i < a.length; i++) {
      const d = a[i] - b[i];
      sum += d * d;
    }
  }
  return sum / a.length;
}

/**
 * skimage.metrics.peak_signal_noise_ratio(image_true, image_test, data_range=dataRange):
 * 10 log10(R^2 / MSE) over every value of the image (all pixels and channels). Identical
 * images give Infinity.
 */
export function psnr(imageTrue: Input, imageTest: Input, options: { dataRange?: number } = {}): number {
  const R = options.dataRange ?? inferDataRange(imageTrue);
  const err = meanSquaredError(imageTrue, imageTest);
  return 10 * Math.log10((R * R) / err);
}

/** The reference's PSNR of two uint8 images: both /255 in float32, data range 1. */
export function psnrUint8(gt: Uint8Array, rec: Uint8Array): number {
  return psnr(uint8ToUnit(gt), uint8ToUnit(rec), { dataRange: 1 });
}

// ------------------------------------------------------------------------------------ SSIM

export interface SsimOptions {
  /** skimage's data_range. Default: 255 for uint8 inputs, else required (skimage >= 0.24 requires it for floats). */
  dataRange?: number;
  /** Window side (odd). Default 7, or 11 with gaussianWeights (skimage: 2 * int(3.5 * sigma + 0.5) + 1). */
  winSize?: number;
  /** Gaussian window (sigma 1.5, truncate 3.5) instead of the uniform one. Default false (the reference's choice). */
  gaussianWeights?: boolean;
  sigma?: number;
  K1?: number;
  K2?: number;
  /** Covariances normalised by N - 1 (default true, also with gaussianWeights, as skimage; Wang et al. use false). */
  useSampleCovariance?: boolean;
}

type Round = (x: number) => number;
const identity: Round = (x) => x;

/** scipy.ndimage 'reflect' (half-sample symmetric) index for a line of n samples. */
function reflectIndex(i: number, n: number): number {
  let k = i;
  for (;;) {
    if (k < 0) k = -k - 1;
    else if (k >= n) k = 2 * n - k - 1;
    else return k;
  }
}

/** scipy.ndimage.uniform_filter1d along one axis (0: down columns, 1: along rows), mode 'reflect'. */
function uniform1d(src: ArrayLike<number>, h: number, w: number, axis: 0 | 1, size: number, round: Round): Float64Array {
  const out = new Float64Array(h * w);
  const length = axis === 0 ? h : w;
  const lines = axis === 0 ? w : h;
  const size1 = Math.floor(size / 2);
  const ext = new Float64Array(length + size - 1);
  for (let l = 0; l < lines; l++) {
    const at = (k: number): number => (axis === 0 ? k * w + l : l * w + k);
    for (let k = 0; k < ext.length; k++) ext[k] = src[at(reflectIndex(k - size1, length))];
    // scipy >= 1.10: a running sum in float64, divided by the size at each output.
    let tmp = 0;
    for (let k = 0; k < size; k++) tmp += ext[k];
    out[at(0)] = round(tmp / size);
    for (let k = 1; k < length; k++) {
      tmp += ext[k + size - 1] - ext[k - 1];
      out[at(k)] = round(tmp / size);
    }
  }
  return out;
}

/** scipy.ndimage.correlate1d with a symmetric kernel (gaussian_filter1d), mode 'reflect'. */
function gaussian1d(src: ArrayLike<number>, h: number, w: number, axis: 0 | 1, weights: Float64Array, round: Round): Float64Array {
  const out = new Float64Array(h * w);
  const length = axis === 0 ? h : w;
  const lines = axis === 0 ? w : h;
  const r = (weights.length - 1) / 2;
  for (let l = 0; l < lines; l++) {
    const at = (k: number): number => (axis === 0 ? k * w + l : l * w + k);
    const x = (k: number): number => src[at(reflectIndex(k, length))];
    for (let k = 0; k < length; k++) {
      let s = x(k) * weights[r];
      for (let j = -r; j < 0; j++) s += (x(k + j) + x(k - j)) * weights[r + j];
      out[at(k)] = round(s);
    }
  }
  return out;
}

function filter2d(src: ArrayLike<number>, h: number, w: number, opts: { size: number; weights: Float64Array | null }, round: Round): Float64Array {
  if (opts.weights) return gaussian1d(gaussian1d(src, h, w, 0, opts.weights, round), h, w, 1, opts.weights, round);
  return uniform1d(uniform1d(src, h, w, 0, opts.size, round), h, w, 1, opts.size, round);
}

/** scipy's _gaussian_kernel1d(sigma, 0, radius), normalised. */
function gaussianKernel(sigma: number, radius: number): Float64Array {
  const k = new Float64Array(2 * radius + 1);
  let sum = 0;
  for (let i = -radius; i <= radius; i++) {
    const v = Math.exp((-0.5 / (sigma * sigma)) * i * i);
    k[i + radius] = v;
    sum += v;
  }
  for (let i = 0; i < k.length; i++) k[i] /= sum;
  return k;
}

/** SSIM of one channel (2-D, row-major), skimage.metrics.structural_similarity with channel_axis=None. */
function ssimChannel(
  x: ArrayLike<number>, y: ArrayLike<number>, h: number, w: number, o: Required<Omit<SsimOptions, 'dataRange'>> & { dataRange: number },
  round: Round,
): number {
  const weights = o.gaussianWeights ? gaussianKernel(o.sigma, Math.trunc(3.5 * o.sigma + 0.5)) : null;
  const filt = { size: o.winSize, weights };
  const n = h * w;
  const xx = new Float64Array(n);
  const yy = new Float64Array(n);
  const xy = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    xx[i] = round(x[i] * x[i]);
    yy[i] = round(y[i] * y[i]);
    xy[i] = round(x[i] * y[i]);
  }
  const ux = filter2d(x, h, w, filt, round);
  const uy = filter2d(y, h, w, filt, round);
  const uxx = filter2d(xx, h, w, filt, round);
  const uyy = filter2d(yy, h, w, filt, round);
  const uxy = filter2d(xy, h, w, filt, round);
  const NP = o.winSize * o.winSize;
  const covNorm = round(o.useSampleCovariance ? NP / (NP - 1) : 1);
  // Python floats meet float32 arrays: NumPy casts the scalar to float32 first.
  const C1 = round((o.K1 * o.dataRange) ** 2);
  const C2 = round((o.K2 * o.dataRange) ** 2);
  const pad = Math.floor((o.winSize - 1) / 2);
  let sum = 0;
  let count = 0;
  for (let r = pad; r < h - pad; r++) {
    for (let c = pad; c < w - pad; c++) {
      const i = r * w + c;
      const mx = ux[i];
      const my = uy[i];
      const vx = round(covNorm * round(uxx[i] - round(mx * mx)));
      const vy = round(covNorm * round(uyy[i] - round(my * my)));
      const vxy = round(covNorm * round(uxy[i] - round(mx * my)));
      const A1 = round(round(round(2 * mx) * my) + C1);
      const A2 = round(round(2 * vxy) + C2);
      const B1 = round(round(round(mx * mx) + round(my * my)) + C1);
      const B2 = round(round(vx + vy) + C2);
      const D = round(B1 * B2);
      sum += round(round(A1 * A2) / D);
      count++;
    }
  }
  return sum / count;
}

/**
 * skimage.metrics.structural_similarity(im1, im2, data_range=..., channel_axis=-1) for HWC
 * images (channels = 1 for grey): the mean over channels of each channel's mean SSIM over the
 * interior (a (winSize-1)/2 border is left out). Defaults as skimage: uniform 7x7 window,
 * K1 0.01, K2 0.03, sample covariance. Float32 inputs are computed in float32 (and the
 * per-channel values kept as float32, as skimage's float32 array holds them).
 */
export function ssim(im1: Input, im2: Input, height: number, width: number, channels: number, options: SsimOptions = {}): number {
  if (im1.length !== im2.length || im1.length !== height * width * channels) {
    throw new Error(`ssim: ${im1.length} and ${im2.length} values for ${height}x${width}x${channels}`);
  }
  const gaussianWeights = options.gaussianWeights ?? false;
  const sigma = options.sigma ?? 1.5;
  const winSize = options.winSize ?? (gaussianWeights ? 2 * Math.trunc(3.5 * sigma + 0.5) + 1 : 7);
  if (winSize % 2 !== 1 || winSize < 3) throw new Error(`ssim: winSize must be odd and >= 3, got ${winSize}`);
  if (height < winSize || width < winSize) throw new Error(`ssim: images of ${height}x${width} are smaller than the ${winSize}x${winSize} window`);
  let dataRange = options.dataRange;
  if (dataRange === undefined) {
    if (im1 instanceof Uint8Array) dataRange = 255;
    else throw new Error('ssim: give dataRange for float images (the reference uses 1.0)');
  }
  const o = {
    winSize, gaussianWeights, sigma, dataRange, K1: options.K1 ?? 0.01, K2: options.K2 ?? 0.03,
    useSampleCovariance: options.useSampleCovariance ?? true,
  };
  const f32 = isFloat32(im1) && isFloat32(im2);
  const round = f32 ? Math.fround : identity;
  const n = height * width;
  const a = new Float64Array(n);
  const b = new Float64Array(n);
  let total = 0;
  for (let c = 0; c < channels; c++) {
    for (let p = 0; p < n; p++) {
      a[p] = im1[p * channels + c];
      b[p] = im2[p * channels + c];
    }
    const s = round(ssimChannel(a, b, height, width, o, round));
    total = round(total + s);
  }
  return round(total / channels);
}

/** The reference's SSIM of two uint8 HWC images: both /255 in float32, data_range 1, channel_axis -1. */
export function ssimUint8(rec: Uint8Array, gt: Uint8Array, height: number, width: number, channels = 3): number {
  return ssim(uint8ToUnit(rec), uint8ToUnit(gt), height, width, channels, { dataRange: 1 });
}

// ----------------------------------------------------------------------- batches (eval.md §4)

/**
 * PSNR and SSIM of each image of a batch, as evaluation_image.py computes them: originals and
 * (clamped) reconstructions, [B, 3, H, W] in [-1, 1], each through {@link referenceUint8}
 * and /255 in float32; PSNR(gt, rec) with data range 1; SSIM(rec, gt, data_range 1, per channel).
 */
export function reconstructionMetrics(
  originals: ArrayLike<number>, reconstructions: ArrayLike<number>, batch: number, height: number, width: number,
): { psnr: Float64Array; ssim: Float64Array } {
  const per = 3 * height * width;
  if (originals.length < batch * per || reconstructions.length < batch * per) {
    throw new Error(`reconstructionMetrics: need ${batch * per} values per input`);
  }
  const p = new Float64Array(batch);
  const s = new Float64Array(batch);
  for (let i = 0; i < batch; i++) {
    const gt = modelImageToUint8(originals, height, width, i * per);
    const rec = modelImageToUint8(reconstructions, height, width, i * per);
    p[i] = psnrUint8(gt, rec);
    s[i] = ssimUint8(rec, gt, height, width, 3);
  }
  return { psnr: p, ssim: s };
}

/**
 * Running PSNR / SSIM the way the reference aggregates them: per-image values averaged within
 * each batch, then the batch means averaged (equal to the per-image mean when every batch is
 * full). `perImage` gives the plain per-image mean as well.
 */
export class ReconstructionMetricsAccumulator {
  private batchPsnr = 0;
  private batchSsim = 0;
  private batches = 0;
  private imagePsnr = 0;
  private imageSsim = 0;
  private images = 0;

  /** Adds one batch of [B, 3, H, W] originals and reconstructions in [-1, 1]. */
  addBatch(originals: ArrayLike<number>, reconstructions: ArrayLike<number>, batch: number, height: number, width: number): void {
    const m = reconstructionMetrics(originals, reconstructions, batch, height, width);
    this.addValues(m.psnr, m.ssim);
  }

  /** Adds one batch of per-image values. */
  addValues(psnrs: ArrayLike<number>, ssims: ArrayLike<number>): void {
    if (psnrs.length === 0 || psnrs.length !== ssims.length) throw new Error('ReconstructionMetricsAccumulator: bad batch');
    let ps = 0;
    let ss = 0;
    for (let i = 0; i < psnrs.length; i++) {
      ps += psnrs[i];
      ss += ssims[i];
    }
    this.batchPsnr += ps / psnrs.length;
    this.batchSsim += ss / ssims.length;
    this.batches++;
    this.imagePsnr += ps;
    this.imageSsim += ss;
    this.images += psnrs.length;
  }

  /** The running sums, for a shard's partial statistics: [batch PSNR, batch SSIM, batches, image PSNR, image SSIM, images]. */
  sums(): Float64Array {
    return Float64Array.of(this.batchPsnr, this.batchSsim, this.batches, this.imagePsnr, this.imageSsim, this.images);
  }

  /** Adds the sums() of another shard (whole batches, so the batch means are those of one run). */
  mergeSums(s: ArrayLike<number>): this {
    if (s.length !== 6) throw new Error(`ReconstructionMetricsAccumulator: expected 6 sums, got ${s.length}`);
    this.batchPsnr += s[0];
    this.batchSsim += s[1];
    this.batches += s[2];
    this.imagePsnr += s[3];
    this.imageSsim += s[4];
    this.images += s[5];
    return this;
  }

  result(): { psnr: number; ssim: number; images: number; batches: number; perImage: { psnr: number; ssim: number } } {
    return {
      psnr: this.batchPsnr / this.batches,
      ssim: this.batchSsim / this.batches,
      images: this.images,
      batches: this.batches,
      perImage: { psnr: this.imagePsnr / this.images, ssim: this.imageSsim / this.images },
    };
  }
}

// ---------------------------------------------------------------------------- codebook usage

/** Usage from a histogram of code counts: entries used at least once / nEmbed. */
export function codebookUsage(counts: ArrayLike<number>, nEmbed = counts.length): { used: number; total: number; fraction: number } {
  if (!(Number.isInteger(nEmbed) && nEmbed > 0)) throw new Error(`codebookUsage: bad codebook size ${nEmbed}`);
  if (counts.length > nEmbed) throw new Error(`codebookUsage: histogram of ${counts.length} bins for ${nEmbed} codes`);
  let used = 0;
  for (let i = 0; i < counts.length; i++) if (counts[i] > 0) used++;
  return { used, total: nEmbed, fraction: used / nEmbed };
}

/** Counts code indices (e.g. all 50,000 x 256 tokens of ImageNet val) and reports usage. */
export class CodebookUsageCounter {
  readonly counts: Float64Array;
  private tokens = 0;

  constructor(readonly nEmbed: number) {
    if (!(Number.isInteger(nEmbed) && nEmbed > 0)) throw new Error(`CodebookUsageCounter: bad codebook size ${nEmbed}`);
    this.counts = new Float64Array(nEmbed);
  }

  /** Adds indices (any integer array-like); an index outside [0, nEmbed) is an error. */
  add(indices: ArrayLike<number | bigint>): void {
    for (let i = 0; i < indices.length; i++) {
      const k = Number(indices[i]);
      if (!(Number.isInteger(k) && k >= 0 && k < this.nEmbed)) throw new RangeError(`CodebookUsageCounter: index ${k} outside 0..${this.nEmbed - 1}`);
      this.counts[k]++;
    }
    this.tokens += indices.length;
  }

  get total(): number {
    return this.tokens;
  }

  /** Adds another shard's histogram (its counts and token total). */
  mergeCounts(counts: ArrayLike<number>, tokens: number): this {
    if (counts.length !== this.nEmbed) throw new Error(`CodebookUsageCounter: histogram of ${counts.length} bins for ${this.nEmbed} codes`);
    for (let i = 0; i < counts.length; i++) this.counts[i] += counts[i];
    this.tokens += tokens;
    return this;
  }

  result(): { used: number; total: number; fraction: number; tokens: number } {
    return { ...codebookUsage(this.counts, this.nEmbed), tokens: this.tokens };
  }
}
