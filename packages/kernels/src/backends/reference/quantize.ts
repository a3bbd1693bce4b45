// Reference kernels for src/ops/quantize.ts. Logits are recomputed on every pass and never
// stored beyond one chunk of one token's row, so memory is O(chunk + N + T*D), never O(T x N):
// the reference must run a 262144-row codebook. Float64 throughout.

import { registerKernel } from '../../dispatch.js';
import { AVG_ENTROPY_EPS, quantizeAttrs } from '../../ops/quantize.js';
import { type ReferenceBackend, view } from './backend.js';

const R = 'reference';
type Vec = Float32Array | Float64Array | Int32Array;

function dot(a: Vec, ao: number, b: Vec, bo: number, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += a[ao + i] * b[bo + i];
  return s;
}

registerKernel<ReferenceBackend>('ibq_quantize', R, (_b, [z, codebook], [indices, zq, losses, lse, lseT, avgP], attrs) => {
  const { beta, temperature: tau, chunk } = quantizeAttrs('ibq_quantize', attrs);
  const [T, D] = z.shape;
  const N = codebook.shape[0];
  const C = Math.min(chunk ?? N, N);
  const zv = view(z), ev = view(codebook);
  const iv = view(indices), qv = view(zq), lv = view(losses), lsev = view(lse), lseTv = view(lseT), pv = view(avgP);
  const chunkLogits = new Float64Array(C);
  const avg = new Float64Array(N);
  let sqErr = 0, entropySum = 0;
  for (let t = 0; t < T; t++) {
    const zo = t * D;
    // Pass 1: first argmax, and logsumexp of logits and logits/tau, merged chunk by chunk.
    let max = -Infinity, arg = 0, sum = 0, sumT = 0;
    for (let start = 0; start < N; start += C) {
      const end = Math.min(N, start + C);
      let cmax = -Infinity, carg = start;
      for (let n = start; n < end; n++) {
        const l = dot(zv, zo, ev, n * D, D);
        chunkLogits[n - start] = l;
        if (l > cmax) { cmax = l; carg = n; }
      }
      let csum = 0, csumT = 0;
      for (let n = start; n < end; n++) {
        const d = chunkLogits[n - start] - cmax;
        csum += Math.exp(d);
        csumT += Math.exp(d / tau);
      }
      if (cmax > max) {
        // A strictly larger maximum moves the argmax; ties keep the earlier (first) index.
        sum = sum * Math.exp(max - cmax) + csum;
        sumT = sumT * Math.exp((max - cmax) / tau) + csumT;
        max = cmax;
        arg = carg;
      } else {
        sum += csum * Math.exp(cmax - max);
        sumT += csumT * Math.exp((cmax - max) / tau);
      }
    }
    const rowLse = max + Math.log(sum);
    const rowLseT = max / tau + Math.log(sumT);
    // Pass 2: the tempered distribution p: its entropy and its contribution to avg_p.
    let H = 0;
    for (let n = 0; n < N; n++) {
      const logp = dot(zv, zo, ev, n * D, D) / tau - rowLseT;
      const p = Math.exp(logp);
      H -= p * logp;
      avg[n] += p;
    }
    entropySum += H;
    for (let d = 0; d < D; d++) {
      const e = ev[arg * D + d];
      qv[zo + d] = e;
      sqErr += (e - zv[zo + d]) ** 2;
    }
    iv[t] = arg;
    lsev[t] = rowLse;
    lseTv[t] = rowLseT;
  }
  const mse = sqErr / (T * D);
  // mean((zq - z)^2) + mean((sg(zq2) - z)^2) + beta mean((zq2 - sg(z))^2): equal values in the forward.
  const quantLoss = mse + mse + beta * mse;
  const sampleEntropy = entropySum / T;
  let avgEntropy = 0;
  for (let n = 0; n < N; n++) {
    const a = avg[n] / T;
    pv[n] = a;
    avgEntropy -= a * Math.log(a + AVG_ENTROPY_EPS);
  }
  lv[0] = quantLoss;
  lv[1] = sampleEntropy;
  lv[2] = avgEntropy;
  lv[3] = sampleEntropy - avgEntropy;
});

// The backward walks tokens for the per-token sums, then codebook rows one at a time (all tokens
// per row), so dcodebook accumulates in float64 one row at a time: extra memory is O(T*D + N),
// never a float64 copy of a 262144-row codebook. Every row is independent of `chunk`.
registerKernel<ReferenceBackend>('ibq_quantize_grad', R, (_b, [dzq, dlosses, z, codebook, indices, lse, lseT, avgP], [dz, dcodebook], attrs) => {
  const { beta, temperature: tau } = quantizeAttrs('ibq_quantize_grad', attrs);
  const [T, D] = z.shape;
  const N = codebook.shape[0];
  const gv = view(dzq), dl = view(dlosses), zv = view(z), ev = view(codebook), iv = view(indices);
  const lsev = view(lse), lseTv = view(lseT), pv = view(avgP), dEv = view(dcodebook);
  const M = T * D;
  const gQuant = dl[0];
  // losses[3] = losses[1] - losses[2]: its upstream gradient adds to both entropies.
  const gSample = dl[1] + dl[3];
  const gAvg = dl[2] - dl[3];
  const entropyScale = 1 / (T * tau);
  // d avg_entropy / d avg_p_n.
  const c = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    const a = pv[n];
    c[n] = -(Math.log(a + AVG_ENTROPY_EPS) + a / (a + AVG_ENTROPY_EPS));
  }
  const g = new Float64Array(T * D); // total gradient reaching z_q
  const r = new Float64Array(T * D); // zq - z
  const dzAcc = new Float64Array(T * D);
  const softDot = new Float64Array(T), entropy = new Float64Array(T), cDot = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    const zo = t * D, ind = iv[t];
    const hit = ind >= 0 && ind < N;
    for (let d = 0; d < D; d++) {
      r[zo + d] = (hit ? ev[ind * D + d] : 0) - zv[zo + d];
      g[zo + d] = gv[zo + d] + (2 * gQuant * r[zo + d]) / M;
      // Direct z gradients of mean((zq - z)^2) and mean((sg(zq2) - z)^2).
      dzAcc[zo + d] = (-4 * gQuant * r[zo + d]) / M;
    }
    // The per-token sums the logits gradient needs, over the whole codebook.
    for (let n = 0; n < N; n++) {
      const l = dot(zv, zo, ev, n * D, D);
      const logp = l / tau - lseTv[t];
      const p = Math.exp(logp);
      softDot[t] += Math.exp(l - lsev[t]) * dot(g, zo, ev, n * D, D);
      entropy[t] -= p * logp;
      cDot[t] += c[n] * p;
    }
  }
  const rowGrad = new Float64Array(D);
  for (let n = 0; n < N; n++) {
    const eo = n * D;
    rowGrad.fill(0);
    for (let t = 0; t < T; t++) {
      const zo = t * D;
      const l = dot(zv, zo, ev, eo, D);
      const soft = Math.exp(l - lsev[t]);
      const logp = l / tau - lseTv[t];
      const p = Math.exp(logp);
      const dLogit =
        soft * (dot(g, zo, ev, eo, D) - softDot[t]) +
        gSample * -p * (logp + entropy[t]) * entropyScale +
        gAvg * p * (c[n] - cDot[t]) * entropyScale;
      for (let d = 0; d < D; d++) {
        dzAcc[zo + d] += dLogit * ev[eo + d];
        rowGrad[d] += dLogit * zv[zo + d];
      }
      // Hard path of z_q, and beta mean((zq2 - sg(z))^2), reach the chosen codeword only.
      if (iv[t] === n) for (let d = 0; d < D; d++) rowGrad[d] += g[zo + d] + (2 * beta * gQuant * r[zo + d]) / M;
    }
    for (let d = 0; d < D; d++) dEv[eo + d] = rowGrad[d];
  }
  view(dz).set(dzAcc);
});
