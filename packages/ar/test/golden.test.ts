// The GPT against the reference's own llama.py (scripts/make_golden.py ran it on a small
// random-weight model): logits, loss and every parameter's gradient of the training forward,
// and the logits of the reference's KV-cached decode, on every backend.
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { testBackends } from '@ibq/kernels/harness';
import { type Tensor, backward, dispose, readSafetensors, setBackend, tensor } from '@ibq/tensor';
import { GPT, type GPTConfig, makeConfig } from '../src/index.js';

const golden = await readSafetensors(fileURLToPath(new URL('./fixtures/golden_gpt.safetensors', import.meta.url)));
const expected = (k: string) => golden.tensors.get(`expected.${k}`)!;
const weights = new Map([...golden.tensors].filter(([k]) => !k.startsWith('expected.')));
const config: GPTConfig = makeConfig(JSON.parse(golden.metadata.config));

const { backends, destroyAll } = await testBackends();
afterAll(() => destroyAll());

function nmse(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < want.length; i++) {
    num += (got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  return num / Math.max(den, 1e-30);
}

const ints = (k: string) => {
  const e = expected(k);
  return tensor(Int32Array.from(e.data as Int32Array), e.shape, { dtype: 'i32' });
};

describe.each(backends.map((b) => [b.name, b] as const))('GPT golden on %s', (_n, be) => {
  it('logits, loss and all parameter gradients match the reference', async () => {
    setBackend(be);
    const model = new GPT(config, { init: 'none' });
    model.loadWeights(weights); // strict: the official names, nothing missing or extra
    model.eval();
    const tokens = ints('tokens'), targets = ints('targets'), labels = ints('labels');
    const check = async (t: Tensor, key: string, tol: number) => {
      const e = expected(key);
      expect(t.shape, key).toEqual(e.shape);
      expect(nmse(await t.data(), e.data as Float32Array), key).toBeLessThan(tol);
    };
    const logits = model.forward(tokens, labels);
    await check(logits, 'logits', 1e-10);
    const loss = GPT.loss(logits, targets);
    expect(Math.abs((await loss.item()) - (expected('loss').data as Float32Array)[0])).toBeLessThan(1e-5);
    backward(loss);
    let n = 0;
    for (const [name, p] of model.namedParameters()) {
      await check(p.grad!, `grad.${name}`, 1e-8);
      n++;
    }
    expect(n).toBe(9 * config.n_layer + 6);
    dispose([logits, loss, tokens, targets, labels]);
    model.dispose();
  });

  it('the KV-cached decode matches the reference decode_tokens position by position', async () => {
    setBackend(be);
    const model = new GPT(config, { init: 'none' });
    model.loadWeights(weights);
    model.eval();
    const tok = expected('tokens'), want = expected('decode_logits');
    const [B, T] = tok.shape, V = config.vocab_size;
    const labels = ints('labels');
    const { state, logits } = model.prefill(labels);
    const steps = [logits];
    for (let p = 0; p < T; p++) {
      const col = Int32Array.from({ length: B }, (_, b) => (tok.data as Int32Array)[b * T + p]);
      steps.push(model.decodeStep(state, tensor(col, [B], { dtype: 'i32' })));
    }
    const wd = want.data as Float32Array;
    for (let p = 0; p <= T; p++) {
      const got = await steps[p].data();
      const ref = new Float32Array(B * V);
      for (let b = 0; b < B; b++) ref.set(wd.subarray((b * (T + 1) + p) * V, (b * (T + 1) + p + 1) * V), b * V);
      expect(nmse(got, ref), `position ${p}`).toBeLessThan(1e-10);
    }
    GPT.release(state);
    dispose([steps, labels]);
    model.dispose();
  });
});
