// The sampler: the filtering rules (top-k, top-p, greedy), the draw's distribution, the CFG
// schedule, and reproducibility by design (a sample's tokens do not depend on its batch).
import { afterAll, describe, expect, it } from 'vitest';
import { testBackends } from '@ibq/kernels/harness';
import { type HostTensor, dispose, setBackend, tensor } from '@ibq/tensor';
import { GPT, type FilterOptions, cfgScaleAt, drawUniform, presets, sampleLogits, sampleTokens, type SamplerOptions } from '../src/index.js';

const { backends, destroyAll } = await testBackends();
afterAll(() => destroyAll());

const plain = { temperature: 1, topK: 0, topP: 1 };

/** sample_logits on the reference backend: the token of row `l` for each uniform. */
async function drawn(l: number[], us: number[], o: FilterOptions): Promise<number[]> {
  setBackend(backends.find((b) => b.name === 'reference')!);
  const x = tensor(Float32Array.from(us.flatMap(() => l)), [us.length, l.length]);
  const u = tensor(Float32Array.from(us), [us.length]);
  const y = sampleLogits(x, u, o);
  const out = Array.from(await y.data());
  dispose([x, u, y]);
  return out;
}
const grid = (n: number) => Array.from({ length: n }, (_, i) => (i + 0.5) / n);

describe('sample_logits (the sampler\'s filtering and draw)', () => {
  it('greedy (top-k 1) takes the maximum whatever the uniform', async () => {
    expect(await drawn([0.1, 2.5, -1, 2.4, 0], [1e-6, 0.3, 0.999999], { ...plain, topK: 1 })).toEqual([1, 1, 1]);
  });

  it('top-k keeps the k largest (ties at the threshold kept), top-p the nucleus with the first token always kept', async () => {
    const l = [Math.log(0.5), Math.log(0.3), Math.log(0.15), Math.log(0.05)];
    const set = async (o: FilterOptions) => new Set(await drawn(l, grid(400), o));
    expect(await set({ ...plain, topK: 2 })).toEqual(new Set([0, 1]));
    // masses above: 0, 0.5, 0.8, 0.95 -> top_p 0.6 keeps tokens 0, 1; 0.85 keeps 0, 1, 2; 0.1 keeps 0
    expect(await set({ ...plain, topP: 0.6 })).toEqual(new Set([0, 1]));
    expect(await set({ ...plain, topP: 0.85 })).toEqual(new Set([0, 1, 2]));
    expect(await set({ ...plain, topP: 0.1 })).toEqual(new Set([0]));
    expect(await set({ ...plain, topK: 3, topP: 0.55 })).toEqual(new Set([0, 1]));
    expect(await set(plain)).toEqual(new Set([0, 1, 2, 3]));
    expect(new Set(await drawn([1, 3, 3, 0], [0.1, 0.4, 0.6, 0.9], { ...plain, topK: 1 }))).toEqual(new Set([1, 2]));
  });

  it('draws with the softmax probabilities after temperature', async () => {
    const l = [1, 0, -0.5, 2];
    const T = 0.7;
    const p = l.map((v) => Math.exp(v / T));
    const z = p.reduce((a, b) => a + b);
    const n = 20000;
    const counts = [0, 0, 0, 0];
    for (const t of await drawn(l, Array.from({ length: n }, (_, i) => drawUniform(9, 3, i, 0)), { ...plain, temperature: T })) counts[t]++;
    counts.forEach((c, j) => expect(Math.abs(c / n - p[j] / z)).toBeLessThan(0.015));
  });

  it('the CFG schedule: constant, cfg_interval, linear', () => {
    const o: SamplerOptions = { cfgScale: 3, temperature: 1, topK: 0, topP: 1, seed: 0 };
    expect([0, 100, 255].map((n) => cfgScaleAt(o, n, 256))).toEqual([3, 3, 3]);
    expect([0, 9, 10, 255].map((n) => cfgScaleAt({ ...o, cfgInterval: 10 }, n, 256))).toEqual([3, 3, 1, 1]);
    expect([0, 128, 256].map((n) => cfgScaleAt({ ...o, cfgSchedule: 'linear' }, n, 257))).toEqual([1, 2, 3]);
    expect(cfgScaleAt({ ...o, cfgScale: 1 }, 0, 256)).toBe(1);
  });

  it('streams are keyed by (seed, class, index, token)', () => {
    const u = drawUniform(42, 3, 7, 11);
    expect(drawUniform(42, 3, 7, 11)).toBe(u);
    for (const other of [drawUniform(43, 3, 7, 11), drawUniform(42, 4, 7, 11), drawUniform(42, 3, 8, 11), drawUniform(42, 3, 7, 12)]) expect(other).not.toBe(u);
  });
});

function randomGpt(): GPT {
  const m = new GPT(presets.tiny.config, { init: 'none' });
  const state = new Map<string, HostTensor>();
  for (const [k, p] of m.stateDict()) {
    const data = Float32Array.from({ length: p.size }, (_, i) => (k.endsWith('norm.weight') ? 1 : 0) + 0.3 * Math.sin(i * 0.37 + k.length * 1.3));
    state.set(k, { dtype: 'f32', shape: [...p.shape], data });
  }
  m.loadStateDict(state);
  return m.eval();
}

/** Classes [1, 1, 1, 4, 4] with indices [0, 1, 2, 0, 1], sampled in batches of `b`. */
async function sampleIn(m: GPT, b: number, o: SamplerOptions): Promise<Int32Array> {
  const classes = [1, 1, 1, 4, 4], indices = [0, 1, 2, 0, 1];
  const L = m.config.block_size;
  const out = new Int32Array(classes.length * L);
  for (let s = 0; s < classes.length; s += b) {
    const e = Math.min(s + b, classes.length);
    out.set(await sampleTokens(m, { classes: Int32Array.from(classes.slice(s, e)), indices: Int32Array.from(indices.slice(s, e)) }, o), s * L);
  }
  return out;
}

describe.each(backends.map((b) => [b.name, b] as const))('sampleTokens on %s', (_name, be) => {
  it('gives the same tokens in batches of 2 and of 5 (CFG, multinomial)', async () => {
    // Float64 makes every row independent of its batch on reference; the f32 kernels' sum orders do not depend on the batch either.
    setBackend(be);
    const m = randomGpt();
    const o: SamplerOptions = { cfgScale: 2, temperature: 1, topK: 0, topP: 1, seed: 5 };
    const a = await sampleIn(m, 2, o), b = await sampleIn(m, 5, o);
    expect(Array.from(b)).toEqual(Array.from(a));
    // the tokens are not all alike (the test could not fail otherwise)
    expect(new Set(a).size).toBeGreaterThan(10);
    // another seed gives other tokens
    const c = await sampleIn(m, 5, { ...o, seed: 6 });
    expect(Array.from(c)).not.toEqual(Array.from(a));
    m.dispose();
  });

  it('reads back only the finished token grid', async () => {
    setBackend(be);
    const m = randomGpt();
    const read = be.read.bind(be);
    let reads = 0;
    be.read = ((...a: Parameters<typeof be.read>) => {
      reads++;
      return read(...a);
    }) as typeof be.read;
    try {
      const toks = await sampleTokens(m, { classes: Int32Array.from([2, 3]), indices: Int32Array.from([0, 0]) }, { cfgScale: 2, temperature: 1, topK: 5, topP: 0.9, seed: 1 });
      expect(toks.length).toBe(2 * m.config.block_size);
    } finally {
      be.read = read;
    }
    expect(reads).toBe(1);
    m.dispose();
  });

  it('greedy sampling is bit-reproducible across batch sizes', async () => {
    setBackend(be);
    const m = randomGpt();
    const o: SamplerOptions = { cfgScale: 1.5, temperature: 1, topK: 1, topP: 1, seed: 0 };
    const a = await sampleIn(m, 1, o), b = await sampleIn(m, 5, o);
    expect(Array.from(b)).toEqual(Array.from(a));
    m.dispose();
  });
});
