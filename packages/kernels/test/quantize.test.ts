// The IBQ quantizer on reference, checked against an independent, unfused computation written
// here from tokenizer.md §5 (full [T,N] logits, no chunks), and its straight-through backward
// checked by finite differences of a surrogate forward (the rule is not the derivative of the
// forward: stop-gradients and the straight-through estimator make it a surrogate gradient).
import { afterEach, describe, expect, it } from 'vitest';
import { OpError, ReferenceBackend, getOp, runOp, type Attrs, type TensorInfo } from '../src/index.js';
import { caseInputs, download, drawValues, hashString, recordingContext, seededRandom, upload } from '../src/harness/index.js';

const def = getOp('ibq_quantize');
const ref = new ReferenceBackend();
afterEach(() => expect(ref.memory().buffers).toBe(0));

interface Outputs {
  indices: number[];
  zq: number[];
  losses: number[];
  lse: number[];
  lseT: number[];
  avgP: number[];
}

const names = ['indices', 'zq', 'losses', 'lse', 'lseT', 'avgP'] as const;

function logSoftmaxRows(x: number[][]): number[][] {
  return x.map((row) => {
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
    return row.map((v) => v - lse);
  });
}

function logsumexp(row: number[]): number {
  const m = Math.max(...row);
  return m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
}

/** Full logits z E^T as a [T][N] matrix. */
function fullLogits(z: number[], E: number[], T: number, D: number, N: number): number[][] {
  return Array.from({ length: T }, (_, t) =>
    Array.from({ length: N }, (_, n) => {
      let s = 0;
      for (let d = 0; d < D; d++) s += z[t * D + d] * E[n * D + d];
      return s;
    }));
}

/** compute_entropy_loss on full logits, literally: p = softmax(l/T), logp = log_softmax(l/T + eps). */
function entropyTerms(logits: number[][], tau: number): { sample: number; avg: number; avgP: number[] } {
  const T = logits.length, N = logits[0].length;
  const scaled = logits.map((row) => row.map((v) => v / tau));
  const p = logSoftmaxRows(scaled).map((row) => row.map(Math.exp));
  const logp = logSoftmaxRows(scaled.map((row) => row.map((v) => v + 1e-5)));
  let sample = 0;
  for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) sample -= (p[t][n] * logp[t][n]) / T;
  const avgP = Array.from({ length: N }, (_, n) => p.reduce((s, row) => s + row[n], 0) / T);
  const avg = -avgP.reduce((s, a) => s + a * Math.log(a + 1e-5), 0);
  return { sample, avg, avgP };
}

/** The quantizer forward as tokenizer.md §5 writes it, unfused. */
function directForward(z: number[], E: number[], T: number, D: number, N: number, attrs: Attrs): Outputs {
  const beta = (attrs.beta as number | undefined) ?? 0.25;
  const tau = (attrs.temperature as number | undefined) ?? 0.01;
  const logits = fullLogits(z, E, T, D, N);
  const indices = logits.map((row) => row.indexOf(Math.max(...row))); // first maximum
  const zq = indices.flatMap((i) => E.slice(i * D, (i + 1) * D));
  const mse = zq.reduce((s, q, k) => s + (q - z[k]) ** 2, 0) / (T * D);
  const quant = mse + mse + beta * mse;
  const { sample, avg, avgP } = entropyTerms(logits, tau);
  return {
    indices, zq, losses: [quant, sample, avg, sample - avg],
    lse: logits.map(logsumexp), lseT: logits.map((row) => logsumexp(row.map((v) => v / tau))), avgP,
  };
}

/** Runs ibq_quantize on reference in float64 storage and downloads every output. */
async function runQuantize(z: number[], E: number[], T: number, D: number, N: number, attrs: Attrs): Promise<Outputs> {
  const ins = [upload(ref, { shape: [T, D], dtype: 'f64', values: z }, 3), upload(ref, { shape: [N, D], dtype: 'f64', values: E }, 5)];
  const outs = runOp(ref, 'ibq_quantize', ins, attrs);
  const got = await Promise.all(outs.map((o) => download(ref, o)));
  for (const t of [...ins, ...outs]) ref.release(t.buffer);
  return Object.fromEntries(names.map((k, i) => [k, got[i]])) as unknown as Outputs;
}

function expectClose(got: number[], want: number[], what: string, rel = 1e-12): void {
  expect(got.length, what).toBe(want.length);
  const scale = Math.max(1e-300, ...want.map(Math.abs));
  for (let i = 0; i < want.length; i++) {
    if (Math.abs(got[i] - want[i]) > rel * Math.max(scale, 1)) {
      throw new Error(`${what}[${i}]: got ${got[i]}, expected ${want[i]}`);
    }
  }
}

function expectSameOutputs(got: Outputs, want: Outputs, label: string): void {
  expect(got.indices, `${label}: indices`).toEqual(want.indices);
  for (const k of names) if (k !== 'indices') expectClose(got[k], want[k], `${label}: ${k}`);
}

function caseData(name: string): { z: number[]; E: number[]; T: number; D: number; N: number; attrs: Attrs } {
  const c = def.cases.find((x) => x.name === name)!;
  const [z, E] = caseInputs(def, c, 'f64');
  return { z: z.values, E: E.values, T: z.shape[0], D: z.shape[1], N: E.shape[0], attrs: c.attrs ?? {} };
}

describe('ibq_quantize forward on reference', () => {
  it.each(def.cases.map((c) => c.name))('matches the unfused computation: %s', async (name) => {
    const { z, E, T, D, N, attrs } = caseData(name);
    expectSameOutputs(await runQuantize(z, E, T, D, N, attrs), directForward(z, E, T, D, N, attrs), name);
  });

  it('does not depend on chunk', async () => {
    const { z, E, T, D, N } = caseData('odd');
    const whole = await runQuantize(z, E, T, D, N, {});
    for (const chunk of [1, 3, 10, N - 1, N, 4 * N]) {
      expectSameOutputs(await runQuantize(z, E, T, D, N, { chunk }), whole, `chunk ${chunk}`);
    }
  });

  it('picks the largest inner product (not the nearest codeword), first index on ties, across chunks', async () => {
    // Row 0 is nearest to z in L2, row 1 has the largest dot product; rows 2 and 3 repeat row 1.
    const E = [0.9, 0, 3, 0, 3, 0, 3, 0];
    for (const chunk of [undefined, 1, 2, 3]) {
      const out = await runQuantize([1, 0], E, 1, 2, 4, chunk ? { chunk } : {});
      expect(out.indices, `chunk ${chunk}`).toEqual([1]);
      expect(out.zq).toEqual([3, 0]);
    }
  });

  it('rejects bad attributes and shapes by name', () => {
    const z = { shape: [2, 3], dtype: 'f32' as const }, E = { shape: [4, 3], dtype: 'f32' as const };
    expect(() => def.infer([z, E], { chunk: 0 })).toThrow(/'chunk'/);
    expect(() => def.infer([z, E], { chunk: 2.5 })).toThrow(OpError);
    expect(() => def.infer([z, E], { temperature: 0 })).toThrow(/'temperature'/);
    expect(() => def.infer([z, { shape: [4, 2], dtype: 'f32' }], {})).toThrow(/dims/);
    expect(() => def.infer([{ shape: [0, 3], dtype: 'f32' }, E], {})).toThrow(/non-empty/);
  });
});

// ---- backward -------------------------------------------------------------------------------

interface Frozen {
  ind: number[];
  soft: number[][];
  z: number[];
  E: number[];
}

/**
 * The forward with every stop-gradient evaluated at the frozen base point: at that point its
 * true derivative is the straight-through gradient (tokenizer.md §5 steps 5-8):
 * z_q = sum_n (hard - sg(soft) + soft) E_n; quant = mean((z_q - z)^2) + mean((sg(E[ind]) - z)^2) + beta mean((E[ind] - sg(z))^2).
 */
function surrogate(z: number[], E: number[], T: number, D: number, N: number, attrs: Attrs, f: Frozen): { zq: number[]; losses: number[] } {
  const beta = (attrs.beta as number | undefined) ?? 0.25;
  const tau = (attrs.temperature as number | undefined) ?? 0.01;
  const logits = fullLogits(z, E, T, D, N);
  const soft = logSoftmaxRows(logits).map((row) => row.map(Math.exp));
  const zq = new Array<number>(T * D).fill(0);
  for (let t = 0; t < T; t++) {
    for (let n = 0; n < N; n++) {
      const st = (n === f.ind[t] ? 1 : 0) - f.soft[t][n] + soft[t][n];
      for (let d = 0; d < D; d++) zq[t * D + d] += st * E[n * D + d];
    }
  }
  const M = T * D;
  let q1 = 0, q2 = 0, q3 = 0;
  for (let t = 0; t < T; t++) {
    for (let d = 0; d < D; d++) {
      const k = t * D + d, i = f.ind[t] * D + d;
      q1 += (zq[k] - z[k]) ** 2 / M;
      q2 += (f.E[i] - z[k]) ** 2 / M;
      q3 += (beta * (E[i] - f.z[k]) ** 2) / M;
    }
  }
  const { sample, avg } = entropyTerms(logits, tau);
  return { zq, losses: [q1 + q2 + q3, sample, avg, sample - avg] };
}

/** dz and dcodebook from the op's backward rule (ibq_quantize_grad), on reference in float64. */
async function ruleGradients(z: number[], E: number[], T: number, D: number, N: number, attrs: Attrs, dzq: number[], dl: number[]): Promise<number[][]> {
  const ins = [upload(ref, { shape: [T, D], dtype: 'f64', values: z }), upload(ref, { shape: [N, D], dtype: 'f64', values: E })];
  const outs = runOp(ref, 'ibq_quantize', ins, attrs);
  const dys: (TensorInfo | null)[] = [null, upload(ref, { shape: [T, D], dtype: 'f64', values: dzq }), upload(ref, { shape: [4], dtype: 'f64', values: dl }), null, null, null];
  const ctx = recordingContext(ref);
  try {
    const grads = def.vjp!(ctx, ins, outs, dys, attrs, ins.map(() => true));
    return await Promise.all(grads.map((g) => download(ref, g!)));
  } finally {
    const owned = [...ins, ...outs, ...dys.filter((t): t is TensorInfo => t !== null), ...ctx.allocated];
    for (const b of new Set(owned.map((t) => t.buffer))) ref.release(b);
  }
}

describe('ibq_quantize backward (straight-through) by finite differences of the surrogate', () => {
  it.each(def.cases.map((c) => c.name))('%s: every element of dz and dcodebook', async (name) => {
    const { z, E, T, D, N, attrs } = caseData(name);
    const rand = seededRandom(hashString(`quantize-test/${name}`));
    const dzq = drawValues(T * D, { kind: 'uniform', lo: -1, hi: 1 }, rand);
    const dl = drawValues(4, { kind: 'uniform', lo: -1, hi: 1 }, rand);
    const [dz, dE] = await ruleGradients(z, E, T, D, N, attrs, dzq, dl);

    const base = directForward(z, E, T, D, N, attrs);
    const frozen: Frozen = { ind: base.indices, soft: logSoftmaxRows(fullLogits(z, E, T, D, N)).map((r) => r.map(Math.exp)), z, E };
    const objective = (zz: number[], EE: number[]): number => {
      const s = surrogate(zz, EE, T, D, N, attrs, frozen);
      return s.zq.reduce((acc, v, k) => acc + v * dzq[k], 0) + s.losses.reduce((acc, v, k) => acc + v * dl[k], 0);
    };
    const check = (values: number[], grad: number[], which: 'z' | 'codebook'): void => {
      for (let e = 0; e < values.length; e++) {
        const h = 1e-6 * Math.max(1, Math.abs(values[e]));
        const plus = values.slice(), minus = values.slice();
        plus[e] += h;
        minus[e] -= h;
        const fd = which === 'z'
          ? (objective(plus, E) - objective(minus, E)) / (2 * h)
          : (objective(z, plus) - objective(z, minus)) / (2 * h);
        if (!(Math.abs(fd - grad[e]) <= 1e-6 + 1e-5 * Math.max(Math.abs(fd), Math.abs(grad[e])))) {
          throw new Error(`d/d${which}[${e}]: finite difference ${fd}, rule ${grad[e]}`);
        }
      }
    };
    check(z, dz, 'z');
    check(E, dE, 'codebook');
    // The soft path reaches every codeword, chosen or not.
    for (let n = 0; n < N; n++) expect(dE.slice(n * D, (n + 1) * D).some((v) => v !== 0), `dcodebook row ${n}`).toBe(true);
  });

  it('the tempered softmax is not saturated in the temperature-0.01 cases (so the entropy gradients are exercised)', () => {
    for (const c of def.cases.filter((x) => x.attrs?.temperature === undefined && x.shapes[1][0] > 1)) {
      const { z, E, T, D, N, attrs } = caseData(c.name);
      // Mean per-token entropy of p = softmax(logits/0.01): 0 would mean one-hot rows.
      expect(directForward(z, E, T, D, N, attrs).losses[1], c.name).toBeGreaterThan(0.1);
    }
  });

  it('each upstream gradient reaches the inputs on its own (losses[3] feeds both entropies)', async () => {
    const { z, E, T, D, N, attrs } = caseData('small');
    const zeroZq = new Array<number>(T * D).fill(0);
    const only = (k: number) => [0, 1, 2, 3].map((i) => (i === k ? 1 : 0));
    const [dzS] = await ruleGradients(z, E, T, D, N, attrs, zeroZq, only(1));
    const [dzA] = await ruleGradients(z, E, T, D, N, attrs, zeroZq, only(2));
    const [dzEnt] = await ruleGradients(z, E, T, D, N, attrs, zeroZq, only(3));
    expectClose(dzEnt, dzS.map((v, i) => v - dzA[i]), 'd entropy_loss / dz', 1e-12);
    expect(dzS.some((v) => v !== 0) && dzA.some((v) => v !== 0)).toBe(true);
  });
});
