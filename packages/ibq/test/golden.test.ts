// The tokenizer against golden outputs of a PyTorch implementation of the spec
// (scripts/make_golden.py): a small random-weight model in the official layout.
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { testBackends } from '@ibq/kernels/harness';
import { abs, add, backward, mean, readSafetensors, scale, setBackend, slice, sub, tensor, tidy, type Tensor } from '@ibq/tensor';
import { IBQTokenizer, parseConfig } from '../src/index.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/golden_small.safetensors', import.meta.url));
const CONFIG = `
model:
  class_path: src.IBQ.models.ibqgan.IBQ
  init_args:
    ddconfig:
      double_z: False
      z_channels: 8
      resolution: 16
      in_channels: 3
      out_ch: 3
      ch: 32
      ch_mult: [2, 1]
      num_res_blocks: 1
      attn_resolutions: [8]
      dropout: 0.0
    n_embed: 37
    embed_dim: 8
    beta: 0.25
    use_entropy_loss: True
    entropy_temperature: 0.01
`;

const { backends, destroyAll } = await testBackends();
afterAll(() => destroyAll());
const golden = await readSafetensors(FIXTURE);
const expected = (k: string) => golden.tensors.get(`expected.${k}`)!;
const weights = new Map([...golden.tensors].filter(([k]) => !k.startsWith('expected.')));

function nmse(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < want.length; i++) {
    num += (got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  return num / Math.max(den, 1e-30);
}

describe.each(backends.map((b) => [b.name, b] as const))('IBQ tokenizer golden on %s', (_n, be) => {
  it('forward, losses and gradients match PyTorch, with every codebook row getting gradient', async () => {
    setBackend(be);
    const model = new IBQTokenizer(parseConfig(CONFIG));
    model.loadStateDict(weights); // strict: the official names, nothing missing or extra
    const xe = expected('x');
    const x = tensor(xe.data as Float32Array, xe.shape);
    const h = model.encoder.forward(x);
    const z = model.quant_conv.forward(h);
    const { zq, indices, losses } = model.quantize.forward(z);
    const xrec = model.decode(zq);
    // The generator's terms without LPIPS/GAN, as in the generator script: L1 + quant + 0.05 * entropy.
    const loss = tidy(() => add(add(mean(abs(sub(x, xrec))), slice(losses, [0], [1])), scale(slice(losses, [3], [1]), 0.05)));

    const check = async (t: Tensor, key: string, tol: number) => {
      const e = expected(key);
      expect(t.shape, key).toEqual(e.shape);
      expect(nmse(await t.data(), e.data as Float32Array), key).toBeLessThan(tol);
    };
    await check(h, 'encoder_out', 1e-9);
    await check(z, 'z', 1e-9);
    expect(Array.from(await indices.data())).toEqual(Array.from(expected('indices').data as Int32Array));
    await check(zq, 'zq', 1e-10);
    await check(losses, 'losses', 1e-9);
    await check(xrec, 'xrec', 1e-9);
    await check(loss, 'loss', 1e-10);

    backward(loss);
    const named = new Map(model.namedParameters());
    for (const key of golden.tensors.keys()) {
      if (!key.startsWith('expected.grad.') || key === 'expected.grad.z') continue;
      const name = key.slice('expected.grad.'.length);
      await check(named.get(name)!.grad!, `grad.${name}`, 1e-6);
    }
    const gE = await named.get('quantize.embedding.weight')!.grad!.data();
    const d = model.config.embed_dim;
    for (let r = 0; r < model.config.n_embed; r++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += Math.abs(gE[r * d + j]);
      expect(s, `codebook row ${r}`).toBeGreaterThan(0);
    }
    model.dispose();
  });
});
