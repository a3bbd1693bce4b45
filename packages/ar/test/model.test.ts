// The GPT's layout (official names, shapes and counts), its initialisation, the YAML reader,
// and the KV-cached decode against one causal pass, on every backend.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { testBackends } from '@ibq/kernels/harness';
import { Generator, type HostTensor, type Tensor, dispose, setBackend, tensor } from '@ibq/tensor';
import { ArMemoryError, GPT, type GPTConfig, checkFits, loadArConfig, parameterCount, presets, residentBytes } from '../src/index.js';

const { backends, destroyAll } = await testBackends();
afterAll(() => destroyAll());

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

describe('configs', () => {
  it('presets B/L/XL/XXL have the spec parameter counts and published sampling settings', () => {
    expect(parameterCount(presets.B.config)).toBe(342_994_944);
    expect(parameterCount(presets.L.config)).toBe(649_640_960);
    expect(parameterCount(presets.XL.config)).toBe(1_076_103_168);
    expect(parameterCount(presets.XXL.config)).toBe(2_063_331_840);
    expect(presets.B.sampling).toEqual({ temperature: 1.1, cfg_scale: 2.25, top_k: 0, top_p: 1 });
    expect(presets.XXL.sampling).toEqual({ temperature: 1.2, cfg_scale: 2.85, top_k: 0, top_p: 1 });
  });

  it('reads the official AR YAML unchanged', () => {
    const cfg = loadArConfig(readFileSync(fixture('imagenet_conditional_llama_B.yaml'), 'utf8'), 'B.yaml');
    expect(cfg.gpt).toEqual(presets.B.config);
    expect(cfg.sampling).toEqual(presets.B.sampling);
    expect(cfg.train).toMatchObject({ learning_rate: 3e-4, weight_decay: 0.05, wp: 6, wp0: 0.005, wpe: 0.1, twde: 0, max_epochs: 300, batch_size: 24, precision: '16-mixed', gradient_clip_val: 1 });
    expect((cfg.firstStage as { n_embed: number }).n_embed).toBe(16384);
    const xxl = loadArConfig(readFileSync(fixture('imagenet_conditional_llama_XXL.yaml'), 'utf8'), 'XXL.yaml');
    expect(xxl.gpt).toEqual(presets.XXL.config);
    expect(xxl.train.twde).toBe(0.08);
  });

  it('names the file and key of a bad config', () => {
    expect(() => loadArConfig('model:\n  init_args:\n    transformer_config:\n      params:\n        vocab_size: 16\n        block_size: 15\n', 'x.yaml'))
      .toThrow(/x.yaml: block_size 15 is not a square grid/);
    expect(() => loadArConfig('model: {}', 'y.yaml')).toThrow(/y.yaml: missing 'model.init_args'/);
  });
});

/** Random values for every parameter, so that no branch is trivially zero. */
function randomWeights(model: GPT, seed: number): void {
  const state = new Map<string, HostTensor>();
  for (const [k, p] of model.stateDict()) {
    const n = p.size;
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = (k.endsWith('norm.weight') ? 1 : 0) + 0.3 * Math.sin(seed * 7.3 + i * 0.61 + k.length);
    state.set(k, { dtype: 'f32', shape: [...p.shape], data });
  }
  model.loadStateDict(state);
}

describe.each(backends.map((b) => [b.name, b] as const))('GPT on %s', (_n, be) => {
  const cfg: GPTConfig = presets.tiny.config;

  it('has the official parameter names and shapes', () => {
    setBackend(be);
    const m = new GPT(cfg);
    const sd = m.stateDict();
    expect(sd.size).toBe(9 * cfg.n_layer + 6);
    const C = cfg.n_embd;
    expect([...sd.keys()].slice(0, 13)).toEqual([
      'tok_emb.weight', 'class_emb.embedding_table.weight',
      'blocks.0.attention.wqkv.weight', 'blocks.0.attention.wo.weight',
      'blocks.0.feed_forward.w1.weight', 'blocks.0.feed_forward.w3.weight', 'blocks.0.feed_forward.w2.weight',
      'blocks.0.attention_norm.weight', 'blocks.0.ffn_norm.weight', 'blocks.0.ada_lin.1.weight', 'blocks.0.ada_lin.1.bias',
      'blocks.1.attention.wqkv.weight', 'blocks.1.attention.wo.weight',
    ]);
    expect(sd.get('class_emb.embedding_table.weight')!.shape).toEqual([cfg.class_num + 1, C]);
    expect(sd.get('blocks.1.ada_lin.1.weight')!.shape).toEqual([6 * C, C]);
    expect(sd.get('head_nm.ada_lin.1.weight')!.shape).toEqual([2 * C, C]);
    expect(sd.get('blocks.0.feed_forward.w2.weight')!.shape).toEqual([C, 192]);
    expect([...sd.values()].reduce((a, t) => a + t.size, 0)).toBe(parameterCount(cfg));
    m.dispose();
  });

  it('initialises as the reference: zero head, scaled adaLN rows, logits exactly 0', async () => {
    setBackend(be);
    const m = new GPT(cfg, { generator: new Generator(3) });
    const C = cfg.n_embd;
    const ada = await m.blocks.at(0).ada_lin.lin.weight.data();
    const rms = (a: ArrayLike<number>, from: number, to: number) => Math.sqrt(Array.from(a).slice(from * C, to * C).reduce((s, v) => s + v * v, 0) / ((to - from) * C));
    expect(rms(ada, 0, 2 * C)).toBeCloseTo(0.02 * cfg.alng, 6);
    expect(rms(ada, 2 * C, 6 * C)).toBeGreaterThan(0.008);
    expect(rms(ada, 2 * C, 6 * C)).toBeLessThan(0.012);
    expect(Math.max(...(await m.head.weight.data()).map(Math.abs))).toBe(0);
    const logits = m.forward(tensor(Int32Array.from([1, 2, 3]), [1, 3]), tensor(Int32Array.from([4]), [1]), { train: false });
    expect(Math.max(...(await logits.data()).map(Math.abs))).toBe(0);
    dispose([logits]);
    m.dispose();
  });

  it('KV-cached decode gives the logits of one causal pass, position by position', async () => {
    setBackend(be);
    const m = new GPT(cfg, { init: 'none' });
    randomWeights(m, 5);
    m.eval();
    const B = 3, T = cfg.block_size - 1, V = cfg.vocab_size;
    const toks = Int32Array.from({ length: B * T }, (_, i) => (i * 37 + 11) % V);
    const labels = tensor(Int32Array.from([0, 7, cfg.class_num]), [B]);
    const full = m.forward(tensor(toks, [B, T]), labels);
    const want = await full.data();
    const { state, logits } = m.prefill(labels);
    const steps: Tensor[] = [logits];
    for (let p = 0; p < T; p++) {
      const col = Int32Array.from({ length: B }, (_, b) => toks[b * T + p]);
      steps.push(m.decodeStep(state, tensor(col, [B])));
    }
    let worst = 0, scaleMax = 0;
    for (let p = 0; p <= T; p++) {
      const got = await steps[p].data();
      for (let b = 0; b < B; b++) {
        for (let v = 0; v < V; v++) {
          const w = want[(b * (T + 1) + p) * V + v];
          worst = Math.max(worst, Math.abs(got[b * V + v] - w));
          scaleMax = Math.max(scaleMax, Math.abs(w));
        }
      }
    }
    expect(scaleMax).toBeGreaterThan(0.1);
    expect(worst / scaleMax).toBeLessThan(be.name === 'reference' ? 1e-12 : 2e-5);
    GPT.release(state);
    dispose([full, steps, labels]);
    m.dispose();
  });

  it('refuses, before allocating, what the backend cannot hold', () => {
    setBackend(be);
    if (be.name === 'cpu') {
      // Resident float32 XL/XXL cannot fit (by default they are streamed: streamed.test.ts).
      expect(() => new GPT(presets.XL.config, { weights: 'resident' })).toThrow(ArMemoryError);
      expect(() => new GPT(presets.XXL.config, { weights: 'resident' })).toThrow(/2,063,331,840/);
      expect(() => checkFits(presets.XXL.config, be, 0, 'resident')).toThrow(/wasm memory.*4\.00 GiB.*stream its weights.*--device webgpu/);
      expect(() => checkFits(presets.B.config, be, 100)).toThrow(/KV caches of 100 rows/);
      expect(() => checkFits(presets.B.config, be, 16)).not.toThrow();
      expect(be.memory().bytes).toBeLessThan(2 ** 30);
    }
    if (be.name === 'webgpu') {
      const bind = (be.describe!() as { limits: { maxStorageBufferBindingSize: number } }).limits.maxStorageBufferBindingSize;
      const rows = Math.ceil((bind + 1) / (residentBytes(presets.XXL.config, 1).kvTensor));
      expect(() => checkFits(presets.XXL.config, be, rows)).toThrow(/maxStorageBufferBindingSize/);
      expect(() => checkFits(presets.XXL.config, be, rows - 1)).not.toThrow();
    }
  });

  it('a checkpoint with the wrong shape names the key and both shapes', () => {
    setBackend(be);
    const m = new GPT(cfg, { init: 'none' });
    const sd = new Map<string, HostTensor>();
    for (const [k, t] of m.stateDict()) sd.set(`transformer.${k}`, { dtype: 'f32', shape: [...t.shape], data: new Float32Array(t.size) });
    sd.set('first_stage_model.decoder.conv_in.weight', { dtype: 'f32', shape: [1], data: new Float32Array(1) });
    m.loadWeights(sd);
    sd.set('transformer.head.weight', { dtype: 'f32', shape: [65, 64], data: new Float32Array(65 * 64) });
    expect(() => m.loadWeights(sd)).toThrow(/head\.weight: checkpoint \[65,64\] vs model \[64,64\]/);
    m.dispose();
  });
});
