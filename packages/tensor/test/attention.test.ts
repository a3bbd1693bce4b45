// Attention with a KV cache, and the 2-D RoPE tables of LlamaGen / IBQ's AR model.
import { afterAll, describe, expect, it } from 'vitest';
import { testBackends } from '@ibq/kernels/harness';
import { type Tensor, concat, dispose, nn, setBackend, slice, tensor } from '../src/index.js';

const { backends, destroyAll } = await testBackends();
afterAll(() => destroyAll());

const seq = (n: number, s: number) => Array.from({ length: n }, (_, i) => Math.sin(i * 0.7 + s));

describe.each(backends.map((b) => [b.name, b] as const))('attention on %s', (_n, be) => {
  it('incremental decoding with a KV cache equals one causal pass', async () => {
    setBackend(be);
    const [B, H, L, D] = [2, 3, 5, 4];
    const q = tensor(seq(B * H * L * D, 1), [B, H, L, D]);
    const k = tensor(seq(B * H * L * D, 2), [B, H, L, D]);
    const v = tensor(seq(B * H * L * D, 3), [B, H, L, D]);
    const full = nn.scaledDotProductAttention(q, k, v, { causal: true });
    const cache = new nn.KVCache();
    const steps: Tensor[] = [];
    for (let t = 0; t < L; t++) {
      const at = (x: Tensor) => slice(x, [0, 0, t, 0], [B, H, 1, D]);
      const [ck, cv] = cache.append(at(k), at(v));
      expect(cache.length).toBe(t + 1);
      steps.push(nn.scaledDotProductAttention(at(q), ck, cv, { causal: true }));
    }
    const inc = concat(steps, 2);
    const a = await full.array(), b = await inc.array();
    a.forEach((x, i) => expect(b[i]).toBeCloseTo(x, 5));
    cache.reset();
    dispose([q, k, v, full, inc, steps]);
  });
});

describe('2-D RoPE tables', () => {
  it('zero class-token row, rows then columns, LlamaGen frequencies', () => {
    const { cos, sin, rows } = nn.rope2dTables(16, 64);
    expect(rows).toBe(257);
    expect(cos.slice(0, 32).every((v) => v === 0) && sin.slice(0, 32).every((v) => v === 0)).toBe(true);
    // token p = 17 -> row 1, column 1; pair j < 16 rotates by row * f_j, j >= 16 by column * f_(j-16)
    const p = 17, r = 1, c = 1, base = (1 + p) * 32;
    for (const j of [0, 5, 15]) expect(sin[base + j]).toBeCloseTo(Math.sin(r * Math.pow(10000, -(2 * j) / 32)), 12);
    for (const j of [16, 20, 31]) expect(cos[base + j]).toBeCloseTo(Math.cos(c * Math.pow(10000, -(2 * (j - 16)) / 32)), 12);
    // token 2 (row 0, column 2): the row half does not rotate
    expect(cos[(1 + 2) * 32 + 3]).toBe(1);
  });
});
