// Streamed weights (src/streamed.ts): a GPT whose large matrices stay on the host and are copied
// into the backend per chunk gives the logits of the same GPT with resident weights, on every
// backend; checkFits' placement policy; loading a checkpoint into host matrices.
import { afterAll, describe, expect, it } from 'vitest';
import { testBackends } from '@ibq/kernels/harness';
import { type HostTensor, type Tensor, dispose, setBackend, tensor } from '@ibq/tensor';
import { ArMemoryError, GPT, type GPTConfig, checkFits, parameterCount, presets, sampleTokens, streamedParameterCount } from '../src/index.js';

const { backends, destroyAll } = await testBackends();
afterAll(() => destroyAll());

const cfg: GPTConfig = presets.tiny.config;

/** A state dict of varied values under the official names (with the AR checkpoint's prefix). */
function checkpoint(model: GPT): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const [k, p] of model.stateDict()) {
    const data = new Float32Array(p.size);
    for (let i = 0; i < p.size; i++) data[i] = (k.endsWith('norm.weight') ? 1 : 0) + 0.3 * Math.sin(i * 0.61 + k.length * 1.7);
    out.set(`transformer.${k}`, { dtype: 'f32', shape: [...p.shape], data });
  }
  return out;
}

/** Largest |a - b| over max |a| (0 when bit-identical). */
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): { rel: number; identical: boolean } {
  let worst = 0, top = 0, identical = a.length === b.length;
  for (let i = 0; i < a.length; i++) {
    worst = Math.max(worst, Math.abs(a[i] - b[i]));
    top = Math.max(top, Math.abs(a[i]));
    if (!Object.is(a[i], b[i]) && !(a[i] === 0 && b[i] === 0)) identical = false;
  }
  return { rel: worst / top, identical };
}

describe.each(backends.map((b) => [b.name, b] as const))('streamed GPT on %s', (_n, be) => {
  it('gives the resident model\'s logits, whole-sequence and KV-cached', async () => {
    setBackend(be);
    const resident = new GPT(cfg, { init: 'none' }).eval();
    const ckpt = checkpoint(resident);
    resident.loadWeights(ckpt);
    // 1000 bytes: uneven chunks of a few rows for every matrix (tok_emb and head: 3 rows of 64 each).
    const streamed = new GPT(cfg, { init: 'none', weights: 'streamed', chunkBytes: 1000 }).eval();
    expect(resident.weights).toBe('resident');
    expect(streamed.weights).toBe('streamed');
    expect([...streamed.hostWeights.values()].reduce((a, w) => a + w.rows * w.cols, 0)).toBe(streamedParameterCount(cfg));
    streamed.loadWeights(ckpt);

    const B = 3, T = 5;
    const toks = tensor(Int32Array.from({ length: B * T }, (_, i) => (i * 37 + 11) % cfg.vocab_size), [B, T]);
    const labels = tensor(Int32Array.from([0, 7, cfg.class_num]), [B]);
    const outs: Tensor[] = [];
    const run = async (m: GPT) => {
      const full = m.forward(toks, labels);
      const { state, logits } = m.prefill(labels);
      const step = m.decodeStep(state, tensor(Int32Array.from([3, cfg.vocab_size - 1, 0]), [B]));
      outs.push(full, logits, step);
      const got = [await full.data(), await logits.data(), await step.data()];
      GPT.release(state);
      return got;
    };
    const want = await run(resident), got = await run(streamed);
    for (let i = 0; i < want.length; i++) {
      const d = relDiff(want[i], got[i]);
      // Chunking splits a matmul's output columns, never a dot product: bit-identical on both.
      expect(d.identical, `output ${i}: rel ${d.rel}`).toBe(true);
    }
    dispose([outs, toks, labels]);
    resident.dispose();
    streamed.dispose();
  });

  it('samples the same tokens as the resident model', async () => {
    setBackend(be);
    const resident = new GPT(cfg, { init: 'none' }).eval();
    const ckpt = checkpoint(resident);
    resident.loadWeights(ckpt);
    const streamed = new GPT(cfg, { init: 'none', weights: 'streamed', chunkBytes: 4096 }).eval();
    streamed.loadWeights(ckpt);
    const batch = { classes: Int32Array.from([1, 4]), indices: Int32Array.from([0, 1]) };
    const o = { cfgScale: 2, temperature: 1, topK: 0, topP: 1, seed: 5, tokens: 6 };
    expect(await sampleTokens(streamed, batch, o)).toEqual(await sampleTokens(resident, batch, o));
    resident.dispose();
    streamed.dispose();
  });
});

describe('streamed weights: loading, initialisation, policy', () => {
  const be = backends[0];

  it('adopts a checkpoint\'s float32 arrays as host matrices and names every problem', async () => {
    setBackend(be);
    const m = new GPT(cfg, { init: 'none', weights: 'streamed' });
    const ckpt = checkpoint(new GPT(cfg, { init: 'none' }));
    m.loadWeights(ckpt);
    expect(m.hostWeights.get('head.weight')!.host).toBe(ckpt.get('transformer.head.weight')!.data);
    expect(m.hostWeights.get('tok_emb.weight')!.host).toBe(ckpt.get('transformer.tok_emb.weight')!.data);
    // Resident parameters were written: the final norm is the checkpoint's.
    const norm = await m.stateDict().get('head_nm.rmsnorm.weight')!.data();
    expect(Array.from(norm)).toEqual(Array.from(ckpt.get('transformer.head_nm.rmsnorm.weight')!.data as Float32Array));
    const bad = new Map(ckpt);
    bad.delete('transformer.blocks.1.feed_forward.w2.weight');
    bad.set('transformer.head.weight', { dtype: 'f32', shape: [3, 4], data: new Float32Array(12) });
    bad.delete('transformer.head_nm.rmsnorm.weight');
    expect(() => m.loadWeights(bad)).toThrow(/blocks\.1\.feed_forward\.w2\.weight[\s\S]*head_nm\.rmsnorm\.weight[\s\S]*head\.weight: checkpoint \[3,4\] vs model \[64,/);
    m.dispose();
  });

  it('initialises host matrices as the reference does (zero head, scaled adaLN rows) and refuses to train', () => {
    setBackend(be);
    const m = new GPT(cfg, { weights: 'streamed' });
    const C = cfg.n_embd, std = cfg.initializer_range;
    expect(m.hostWeights.get('head.weight')!.host.every((v) => v === 0)).toBe(true);
    const rms = (a: Float32Array) => Math.sqrt(a.reduce((s, v) => s + v * v, 0) / a.length);
    const ada = m.hostWeights.get('blocks.0.ada_lin.1.weight')!.host;
    expect(rms(ada.subarray(0, 2 * C * C))).toBeCloseTo(std * cfg.alng, 6);
    expect(rms(ada.subarray(2 * C * C)) / (0.5 * std)).toBeGreaterThan(0.9);
    expect(rms(ada.subarray(2 * C * C)) / (0.5 * std)).toBeLessThan(1.1);
    expect(rms(m.hostWeights.get('tok_emb.weight')!.host) / std).toBeGreaterThan(0.95);
    expect(rms(m.hostWeights.get('tok_emb.weight')!.host) / std).toBeLessThan(1.05);
    const toks = tensor(Int32Array.from([1, 2]), [1, 2]), labels = tensor(Int32Array.from([3]), [1]);
    expect(() => m.forward(toks, labels, { train: true })).toThrow(/streamed weights .* are for sampling/);
    dispose([toks, labels]);
    m.dispose();
  });

  const cpu = backends.find((b) => b.name === 'cpu');
  it.runIf(cpu)('cpu: B and L resident, XL and XXL streamed; the caches still bound the batch', () => {
    const be = cpu!;
    setBackend(be);
    expect(checkFits(presets.B.config, be).weights).toBe('resident');
    expect(checkFits(presets.L.config, be).weights).toBe('resident');
    for (const p of [presets.XL.config, presets.XXL.config]) {
      const plan = checkFits(p, be, 16);
      expect(plan.weights).toBe('streamed');
      expect(plan.hostBytes).toBe(streamedParameterCount(p) * 4);
      expect(plan.backendBytes).toBeLessThan(3 * 2 ** 30);
      expect(plan.hostBytes).toBeGreaterThan(parameterCount(p) * 4 * 0.98);
    }
    expect(() => checkFits(presets.XXL.config, be, 100)).toThrow(/KV caches of 100 rows .*use at most \d+ rows/);
    // Building XL streamed allocates only the small weights on the backend (host matrices are filled when loaded).
    const before = be.memory().bytes;
    const m = new GPT(presets.XL.config, { init: 'none' });
    expect(m.weights).toBe('streamed');
    expect(be.memory().bytes - before).toBeLessThan(64 * 2 ** 20);
    m.dispose();
    expect(() => new GPT(presets.XL.config, { weights: 'resident' })).toThrow(ArMemoryError);
  });
});
