// The ADM evaluation suite's other metrics (guided-diffusion evaluations/evaluator.py; spec
// eval.md §7): the Inception Score from the unbiased logits, and improved precision / recall
// with k = 3 nearest neighbours over pool features.
//
// - IS: softmax over the 1008 logits (pool3 x fc.weight^T, no bias) per image; consecutive
//   splits of 5,000 rows; per split exp(mean_i KL(p_i || mean p)); the suite prints the mean of
//   the splits (std given too). Computed in float64 here (the suite: float32 softmax, float32
//   numpy logs).
// - Precision / recall: squared Euclidean distances; a point's radius is the distance to its
//   k-th nearest neighbour in its own set, self included at rank 0 (the suite's partition index
//   k); precision = fraction of samples inside some reference point's radius, recall = fraction
//   of reference points inside some sample's radius. The suite computes distances in float16
//   and falls back to float32 when any is non-finite; here they are float32 GEMMs on the
//   chosen backend (|u|² - 2u·v + |v|², clamped at 0), so a point exactly on a radius may be
//   judged differently.

import type { Backend } from '@ibq/kernels';
import { type Tensor, dispose, matmul, tensor } from '@ibq/tensor';

export const IS_SPLIT_SIZE = 5000;
export const PR_NEIGHBOURHOOD = 3;

export interface InceptionScore {
  mean: number;
  std: number;
  splits: number[];
}

/** The Inception Score of logits rows [n, classes] (row-major). */
export function inceptionScore(logits: Float32Array | Float64Array, n: number, classes = 1008, splitSize = IS_SPLIT_SIZE): InceptionScore {
  if (logits.length !== n * classes) throw new Error(`inceptionScore: expected ${n} x ${classes} logits, got ${logits.length} values`);
  if (n < 1) throw new Error('inceptionScore: no rows');
  const splits: number[] = [];
  const p = new Float64Array(classes);
  for (let s = 0; s < n; s += splitSize) {
    const e = Math.min(n, s + splitSize);
    const probs = new Float64Array((e - s) * classes);
    const marginal = new Float64Array(classes);
    for (let r = s; r < e; r++) {
      let max = -Infinity;
      for (let c = 0; c < classes; c++) max = Math.max(max, logits[r * classes + c]);
      let z = 0;
      for (let c = 0; c < classes; c++) z += (p[c] = Math.exp(logits[r * classes + c] - max));
      for (let c = 0; c < classes; c++) {
        const v = p[c] / z;
        probs[(r - s) * classes + c] = v;
        marginal[c] += v;
      }
    }
    for (let c = 0; c < classes; c++) marginal[c] /= e - s;
    let kl = 0;
    for (let i = 0; i < (e - s) * classes; i++) {
      const v = probs[i];
      if (v > 0) kl += v * (Math.log(v) - Math.log(marginal[i % classes]));
    }
    splits.push(Math.exp(kl / (e - s)));
  }
  const mean = splits.reduce((a, b) => a + b, 0) / splits.length;
  const std = Math.sqrt(splits.reduce((a, b) => a + (b - mean) ** 2, 0) / splits.length);
  return { mean, std, splits };
}

/** Squared distances between rows of a [na, d] and b [nb, d], [na, nb] row-major (float32, on the backend). */
export async function pairwiseSquaredDistances(a: Float32Array, na: number, b: Float32Array, nb: number, d: number, backend?: Backend): Promise<Float32Array> {
  const norms = (x: Float32Array, n: number) => Float64Array.from({ length: n }, (_, i) => {
    let s = 0;
    for (let j = 0; j < d; j++) s += x[i * d + j] ** 2;
    return s;
  });
  const ta = tensor(a, [na, d], { backend }), tb = tensor(b, [nb, d], { backend });
  let dot: Tensor | null = null;
  try {
    dot = matmul(ta, tb, false, true);
    const out = Float32Array.from(await dot.data());
    const na2 = norms(a, na), nb2 = norms(b, nb);
    for (let i = 0; i < na; i++) for (let j = 0; j < nb; j++) out[i * nb + j] = Math.max(na2[i] - 2 * out[i * nb + j] + nb2[j], 0);
    return out;
  } finally {
    dispose(dot ? [ta, tb, dot] : [ta, tb]);
  }
}

const ROW_BLOCK = 1024;

/** Each row's squared distance to its k-th nearest row of the same set (self at rank 0). */
export async function manifoldRadii(x: Float32Array, n: number, d: number, k = PR_NEIGHBOURHOOD, backend?: Backend): Promise<Float32Array> {
  if (n <= k) throw new Error(`precision/recall: ${n} feature rows, but k = ${k} neighbours need more than ${k}`);
  const radii = new Float32Array(n);
  for (let s = 0; s < n; s += ROW_BLOCK) {
    const e = Math.min(n, s + ROW_BLOCK);
    const dist = await pairwiseSquaredDistances(x.subarray(s * d, e * d), e - s, x, n, d, backend);
    for (let r = 0; r < e - s; r++) {
      // the k+1 smallest of the row (self included), kept sorted
      const best = new Float64Array(k + 1).fill(Infinity);
      for (let j = 0; j < n; j++) {
        const v = dist[r * n + j];
        if (v >= best[k]) continue;
        let p = k;
        while (p > 0 && best[p - 1] > v) {
          best[p] = best[p - 1];
          p--;
        }
        best[p] = v;
      }
      radii[s + r] = best[k];
    }
  }
  return radii;
}

/** Improved precision and recall (k = 3) of samples against references, as the ADM suite. */
export async function precisionRecall(ref: Float32Array, nRef: number, sample: Float32Array, nSample: number, d: number, backend?: Backend): Promise<{ precision: number; recall: number }> {
  const rRef = await manifoldRadii(ref, nRef, d, PR_NEIGHBOURHOOD, backend);
  const rSample = await manifoldRadii(sample, nSample, d, PR_NEIGHBOURHOOD, backend);
  const sampleIn = new Uint8Array(nSample), refIn = new Uint8Array(nRef);
  for (let s = 0; s < nRef; s += ROW_BLOCK) {
    const e = Math.min(nRef, s + ROW_BLOCK);
    const dist = await pairwiseSquaredDistances(ref.subarray(s * d, e * d), e - s, sample, nSample, d, backend);
    for (let i = 0; i < e - s; i++) {
      for (let j = 0; j < nSample; j++) {
        const v = dist[i * nSample + j];
        if (v <= rRef[s + i]) sampleIn[j] = 1;
        if (v <= rSample[j]) refIn[s + i] = 1;
      }
    }
  }
  const frac = (a: Uint8Array) => a.reduce((x, y) => x + y, 0) / a.length;
  return { precision: frac(sampleIn), recall: frac(refIn) };
}
