// Reference kernels for src/ops/norm.ts: two-pass statistics in float64. group_norm_silu applies
// the elementwise silu (and its backward, silu_grad) in float64 on the unrounded h.
// GroupNorm, BatchNorm and LayerNorm differ only in which elements form one normalisation set
// and which weight each element uses, so they share one forward and one backward routine.

import { registerKernel } from '../../dispatch.js';
import { normEps, normGroups } from '../../ops/norm.js';
import { sizeOf, type TensorInfo } from '../../types.js';
import { type ReferenceBackend, view } from './backend.js';
import { UNARY_FN, siluGrad } from './elementwise.js';

const R = 'reference';
type Values = Float32Array | Float64Array | Int32Array;

/** The normalisation sets of one call: `count` sets of `size` elements each. */
interface NormSets {
  count: number;
  size: number;
  /** Flat element index of the k-th element of set s. */
  index(s: number, k: number): number;
  /** Weight / bias index (channel) of the k-th element of set s. */
  channel(s: number, k: number): number;
}

/** Spatial size of [N, C, ...]: the product of the dims after C. */
const spatialOf = (x: TensorInfo) => sizeOf(x.shape.slice(2));

function groupSets(x: TensorInfo, groups: number): NormSets {
  const [N, C] = x.shape;
  const S = spatialOf(x), Cg = C / groups;
  return {
    count: N * groups,
    size: Cg * S,
    index: (s, k) => s * Cg * S + k, // a (sample, group) set is contiguous
    channel: (s, k) => (s % groups) * Cg + Math.floor(k / S),
  };
}

function batchSets(x: TensorInfo): NormSets {
  const [N, C] = x.shape;
  const S = spatialOf(x);
  return {
    count: C,
    size: N * S,
    index: (c, k) => (Math.floor(k / S) * C + c) * S + (k % S),
    channel: (c) => c,
  };
}

function rowSets(x: TensorInfo): NormSets {
  const D = x.shape[x.shape.length - 1];
  return {
    count: D === 0 ? sizeOf(x.shape.slice(0, -1)) : sizeOf(x.shape) / D,
    size: D,
    index: (r, k) => r * D + k,
    channel: (_r, k) => k,
  };
}

/** Mean and biased variance of every set (0 and 0 for an empty set). */
function moments(xv: Values, sets: NormSets): { mean: Float64Array; variance: Float64Array } {
  const mean = new Float64Array(sets.count), variance = new Float64Array(sets.count);
  if (sets.size === 0) return { mean, variance };
  for (let s = 0; s < sets.count; s++) {
    let sum = 0;
    for (let k = 0; k < sets.size; k++) sum += xv[sets.index(s, k)];
    const m = sum / sets.size;
    let sq = 0;
    for (let k = 0; k < sets.size; k++) {
      const d = xv[sets.index(s, k)] - m;
      sq += d * d;
    }
    mean[s] = m;
    variance[s] = sq / sets.size;
  }
  return { mean, variance };
}

/** y = act((x - mean)*rstd*weight + bias) over every set (act: identity, or silu for group_norm_silu). */
function normalise(
  xv: Values, wv: Values, bv: Values, yv: Values, sets: NormSets, mean: ArrayLike<number>, rstd: ArrayLike<number>, act: (h: number) => number = (h) => h,
): void {
  for (let s = 0; s < sets.count; s++) {
    for (let k = 0; k < sets.size; k++) {
      const i = sets.index(s, k), c = sets.channel(s, k);
      yv[i] = act((xv[i] - mean[s]) * rstd[s] * wv[c] + bv[c]);
    }
  }
}

/**
 * Backward of normalise with mean and rstd functions of x: with g = dy*weight,
 * dx = rstd*(g - mean(g) - xhat*mean(g*xhat)); dweight += dy*xhat, dbias += dy per channel.
 */
function normaliseBackward(
  dyv: Values, xv: Values, wv: Values, mean: ArrayLike<number>, rstd: ArrayLike<number>, sets: NormSets,
  dxv: Values, dwv: Values, dbv: Values,
): void {
  const dw = new Float64Array(dwv.length), db = new Float64Array(dbv.length);
  for (let s = 0; s < sets.count; s++) {
    let sumG = 0, sumGXhat = 0;
    for (let k = 0; k < sets.size; k++) {
      const i = sets.index(s, k), c = sets.channel(s, k);
      const xhat = (xv[i] - mean[s]) * rstd[s];
      const g = dyv[i] * wv[c];
      sumG += g;
      sumGXhat += g * xhat;
      dw[c] += dyv[i] * xhat;
      db[c] += dyv[i];
    }
    const meanG = sumG / sets.size, meanGXhat = sumGXhat / sets.size;
    for (let k = 0; k < sets.size; k++) {
      const i = sets.index(s, k), c = sets.channel(s, k);
      const xhat = (xv[i] - mean[s]) * rstd[s];
      dxv[i] = rstd[s] * (dyv[i] * wv[c] - meanG - xhat * meanGXhat);
    }
  }
  dwv.set(dw);
  dbv.set(db);
}

const rstdOf = (variance: ArrayLike<number>, eps: number) => Float64Array.from(variance, (v) => 1 / Math.sqrt(v + eps));

registerKernel<ReferenceBackend>('group_norm', R, (_b, [x, w, b], [y, meanOut, rstdOut], attrs) => {
  const sets = groupSets(x, normGroups('group_norm', attrs, x.shape[1]));
  const { mean, variance } = moments(view(x), sets);
  const rstd = rstdOf(variance, normEps('group_norm', attrs));
  normalise(view(x), view(w), view(b), view(y), sets, mean, rstd);
  view(meanOut).set(mean);
  view(rstdOut).set(rstd);
});

registerKernel<ReferenceBackend>('group_norm_grad', R, (_b, [dy, x, w, mean, rstd], [dx, dw, db], attrs) => {
  const sets = groupSets(x, normGroups('group_norm_grad', attrs, x.shape[1]));
  normaliseBackward(view(dy), view(x), view(w), view(mean), view(rstd), sets, view(dx), view(dw), view(db));
});

registerKernel<ReferenceBackend>('group_norm_silu', R, (_b, [x, w, b], [y, meanOut, rstdOut], attrs) => {
  const sets = groupSets(x, normGroups('group_norm_silu', attrs, x.shape[1]));
  const { mean, variance } = moments(view(x), sets);
  const rstd = rstdOf(variance, normEps('group_norm_silu', attrs));
  normalise(view(x), view(w), view(b), view(y), sets, mean, rstd, (v) => UNARY_FN.silu(v, attrs));
  view(meanOut).set(mean);
  view(rstdOut).set(rstd);
});

registerKernel<ReferenceBackend>('group_norm_silu_grad', R, (_b, [dy, x, w, b, mean, rstd], [dx, dw, db], attrs) => {
  // dh = silu'(h)*dy with h recomputed in float64 from the saved statistics, then GroupNorm's backward of dh.
  const sets = groupSets(x, normGroups('group_norm_silu_grad', attrs, x.shape[1]));
  const h = new Float64Array(sizeOf(x.shape));
  normalise(view(x), view(w), view(b), h, sets, view(mean), view(rstd));
  const dyv = view(dy);
  const dh = h.map((v, i) => siluGrad(v, dyv[i]));
  normaliseBackward(dh, view(x), view(w), view(mean), view(rstd), sets, view(dx), view(dw), view(db));
});

registerKernel<ReferenceBackend>('batch_norm_train', R, (_b, [x, w, b], [y, meanOut, varOut], attrs) => {
  const sets = batchSets(x);
  const { mean, variance } = moments(view(x), sets);
  normalise(view(x), view(w), view(b), view(y), sets, mean, rstdOf(variance, normEps('batch_norm_train', attrs)));
  view(meanOut).set(mean);
  view(varOut).set(variance);
});

registerKernel<ReferenceBackend>('batch_norm_train_grad', R, (_b, [dy, x, w, mean, variance], [dx, dw, db], attrs) => {
  const rstd = rstdOf(view(variance), normEps('batch_norm_train_grad', attrs));
  normaliseBackward(view(dy), view(x), view(w), view(mean), rstd, batchSets(x), view(dx), view(dw), view(db));
});

registerKernel<ReferenceBackend>('batch_norm_eval', R, (_b, [x, w, b, rm, rv], [y], attrs) => {
  const rstd = rstdOf(view(rv), normEps('batch_norm_eval', attrs));
  normalise(view(x), view(w), view(b), view(y), batchSets(x), view(rm), rstd);
});

registerKernel<ReferenceBackend>('layer_norm', R, (_b, [x, w, b], [y, meanOut, rstdOut], attrs) => {
  const sets = rowSets(x);
  const { mean, variance } = moments(view(x), sets);
  const rstd = rstdOf(variance, normEps('layer_norm', attrs));
  normalise(view(x), view(w), view(b), view(y), sets, mean, rstd);
  view(meanOut).set(mean);
  view(rstdOut).set(rstd);
});

registerKernel<ReferenceBackend>('layer_norm_grad', R, (_b, [dy, x, w, mean, rstd], [dx, dw, db]) => {
  normaliseBackward(view(dy), view(x), view(w), view(mean), view(rstd), rowSets(x), view(dx), view(dw), view(db));
});

registerKernel<ReferenceBackend>('rms_norm', R, (_b, [x, w], [y, rstdOut], attrs) => {
  const eps = normEps('rms_norm', attrs, true);
  const sets = rowSets(x);
  const xv = view(x), wv = view(w), yv = view(y), rv = view(rstdOut);
  for (let r = 0; r < sets.count; r++) {
    let sq = 0;
    for (let k = 0; k < sets.size; k++) sq += xv[sets.index(r, k)] ** 2;
    const rstd = 1 / Math.sqrt((sets.size === 0 ? 0 : sq / sets.size) + eps);
    for (let k = 0; k < sets.size; k++) {
      const i = sets.index(r, k);
      yv[i] = xv[i] * rstd * wv[k];
    }
    rv[r] = rstd;
  }
});

registerKernel<ReferenceBackend>('rms_norm_grad', R, (_b, [dy, x, w, rstdIn], [dx, dw]) => {
  // With g = dy*weight: dx = rstd*(g - x*rstd^2*mean(g*x)); dweight = sum over rows of dy*x*rstd.
  const sets = rowSets(x);
  const dyv = view(dy), xv = view(x), wv = view(w), rv = view(rstdIn), dxv = view(dx);
  const dwAcc = new Float64Array(sets.size);
  for (let r = 0; r < sets.count; r++) {
    const rstd = rv[r];
    let sumGX = 0;
    for (let k = 0; k < sets.size; k++) {
      const i = sets.index(r, k);
      sumGX += dyv[i] * wv[k] * xv[i];
      dwAcc[k] += dyv[i] * xv[i] * rstd;
    }
    const meanGX = sumGX / sets.size;
    for (let k = 0; k < sets.size; k++) {
      const i = sets.index(r, k);
      dxv[i] = rstd * (dyv[i] * wv[k] - xv[i] * rstd * rstd * meanGX);
    }
  }
  view(dw).set(dwAcc);
});
