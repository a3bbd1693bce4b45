// The AR trainer on the reference backend: the chunked cross-entropy equals the whole one
// (value and gradients), the LR / weight-decay schedules are the reference's, a resumed run
// continues the same loss curve bit for bit, non-finite losses are skipped then stop the run,
// and training lowers the loss.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createBackend } from '@ibq/kernels';
import { dispose, noGrad, setBackend, tensor } from '@ibq/tensor';
import { ArTrainer, type ArRecipe, GPT, lrAt, makeConfig, NonFiniteArLossError, type TokenMicroBatch, weightDecayAt } from '../src/index.js';

const backend = await createBackend('reference');
setBackend(backend);
const dir = mkdtempSync(join(tmpdir(), 'ibq-ar-trainer-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  backend.destroy();
});

const config = makeConfig({ vocab_size: 24, block_size: 16, n_layer: 2, n_head: 2, n_embd: 16, class_num: 3, multiple_of: 8, resid_dropout_p: 0.1, ffn_dropout_p: 0.1 });
const recipe: ArRecipe = { learning_rate: 3e-3, weight_decay: 0.05, wp: 1, wp0: 0.005, wpe: 0.1, twde: 0, gradient_clip_val: 1 };

/** A batch whose tokens follow a class-dependent pattern (learnable). */
function batch(k: number, B = 3): TokenMicroBatch {
  const L = config.block_size;
  const tokens = new Int32Array(B * L);
  const labels = new Int32Array(B);
  for (let b = 0; b < B; b++) {
    labels[b] = (k + b) % 3;
    for (let p = 0; p < L; p++) tokens[b * L + p] = (labels[b] * 7 + p * (labels[b] + 1)) % config.vocab_size;
  }
  return { tokens, labels, size: B };
}

const make = (o: Partial<ConstructorParameters<typeof ArTrainer>[0]> = {}) =>
  new ArTrainer({ config, recipe, backend, stepsPerEpoch: 4, totalSteps: 12, seed: 5, ...o });

async function weights(t: ArTrainer): Promise<Float32Array[]> {
  return Promise.all(t.model.parameters().map(async (p) => Float32Array.from(await p.data())));
}

describe('ArTrainer', () => {
  it("schedules: warm-up from wp0, a 5% plateau, linear decay to wpe; cosine weight decay (twde 0: constant)", () => {
    const I = 10, T = 100;
    expect(lrAt(recipe, 0, I, T)).toBeCloseTo(3e-3 * 0.005, 12);
    expect(lrAt(recipe, 5, I, T)).toBeCloseTo(3e-3 * (0.005 + 0.995 * 0.5), 12);
    expect(lrAt(recipe, 10, I, T)).toBe(3e-3);
    expect(lrAt(recipe, 14, I, T)).toBe(3e-3); // u = 4/89 < 0.05
    expect(lrAt(recipe, 99, I, T)).toBeCloseTo(3e-3 * 0.1, 12);
    expect(weightDecayAt(recipe, 50, T)).toBe(0.05);
    const xxl = { ...recipe, twde: 0.08 };
    expect(weightDecayAt(xxl, 0, T)).toBeCloseTo(0.05, 12);
    expect(weightDecayAt(xxl, 99, T)).toBeCloseTo(0.08, 12);
    expect(weightDecayAt(xxl, 49.5, T)).toBeCloseTo(0.065, 12);
  });

  it('chunked cross-entropy: the same loss as the whole logits, and the same step', async () => {
    const whole = make({ ceChunkRows: 1 << 20 });
    const chunked = make({ ceChunkRows: 5 }); // 48 rows in chunks of 5 (the last one 3)
    const b = batch(0);
    const ev = await chunked.evalLoss(b);
    // GPT.loss over the full logits of the same model
    const L = config.block_size;
    const inputs = new Int32Array(b.size * (L - 1));
    for (let i = 0; i < b.size; i++) inputs.set(b.tokens.subarray(i * L, i * L + L - 1), i * (L - 1));
    const ref = noGrad(() => {
      const x = tensor(inputs, [b.size, L - 1], { dtype: 'i32' });
      const y = tensor(b.labels, [b.size], { dtype: 'i32' });
      const t = tensor(b.tokens, [b.size, L], { dtype: 'i32' });
      const logits = chunked.model.forward(x, y, { train: false });
      const l = GPT.loss(logits, t);
      dispose([x, y, t, logits]);
      return l;
    });
    // Logits are exactly zero at init (zero head): ln V.
    expect(ev.sum / ev.count).toBeCloseTo(Math.log(config.vocab_size), 5);
    expect(ev.sum / ev.count).toBeCloseTo((await ref.data())[0], 5);
    ref.dispose();
    for (let s = 0; s < 3; s++) {
      const a = await whole.trainStep([batch(s)]);
      const c = await chunked.trainStep([batch(s)]);
      expect(c.loss).toBeCloseTo(a.loss, 10);
    }
    const wa = await weights(whole), wc = await weights(chunked);
    wa.forEach((w, i) => {
      for (let j = 0; j < w.length; j++) expect(Math.abs(w[j] - wc[i][j])).toBeLessThan(1e-6);
    });
    const after = await chunked.evalLoss(b);
    expect(after.sum / after.count).not.toBeCloseTo(Math.log(config.vocab_size), 3);
    whole.dispose();
    chunked.dispose();
  });

  it('a resumed run (2 x N steps with a checkpoint between) equals 2N steps; EMA and accumulation included', async () => {
    const N = 3;
    const o = { accumulate: 2, ema: 0.9 };
    const micro = (s: number) => [batch(2 * s), batch(2 * s + 1, 2)];
    const full = make(o);
    const losses: number[] = [];
    for (let s = 0; s < 2 * N; s++) losses.push((await full.trainStep(micro(s))).loss);
    const first = make(o);
    const resumedLosses: number[] = [];
    for (let s = 0; s < N; s++) resumedLosses.push((await first.trainStep(micro(s))).loss);
    const ckpt = join(dir, 'ar.safetensors');
    await first.save(ckpt, { loader: { epoch: 0, batch: N } });
    first.dispose();
    const second = make(o);
    const state = await second.load(ckpt);
    expect(state.loader).toEqual({ epoch: 0, batch: N });
    expect(second.step).toBe(N);
    for (let s = N; s < 2 * N; s++) resumedLosses.push((await second.trainStep(micro(s))).loss);
    expect(resumedLosses).toEqual(losses);
    const wf = await weights(full), ws = await weights(second);
    expect(ws).toEqual(wf);
    const ef = await Promise.all([...full.ema!.shadow.values()].map((t) => t.data()));
    const es = await Promise.all([...second.ema!.shadow.values()].map((t) => t.data()));
    expect(es.map((e) => Array.from(e))).toEqual(ef.map((e) => Array.from(e)));
    expect(losses[2 * N - 1]).toBeLessThan(losses[0]);
    full.dispose();
    second.dispose();
  });

  it('a non-finite loss skips the update; K in a row stop the run', async () => {
    const t = make({ maxNonFinite: 2 });
    await t.trainStep([batch(0)]);
    const before = await weights(t);
    const bad = batch(1);
    bad.tokens[3] = config.vocab_size + 5; // an out-of-range target: the cross-entropy is NaN
    const log = await t.trainStep([bad]);
    expect(log.skipped).toBe(true);
    expect(t.step).toBe(1);
    expect(await weights(t)).toEqual(before);
    await expect(t.trainStep([bad])).rejects.toThrow(NonFiniteArLossError);
    t.dispose();
  });
});
