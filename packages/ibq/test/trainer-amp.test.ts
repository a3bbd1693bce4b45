// 16-mixed training (f16 autocast + loss scaling) on webgpu when it has shader-f16, and how a
// run's precision is chosen from the config and --precision on any backend.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ReferenceBackend } from '@ibq/kernels';
import { F16_TOLERANCES, testF16Backend } from '@ibq/kernels/harness';
import { type Tensor, tensor } from '@ibq/tensor';
import { syntheticBatch } from './synthetic.js';
import { IBQTrainer, type Precision, loadConfig, resolvePrecision } from '../src/index.js';

const config = loadConfig(fileURLToPath(new URL('../configs/tiny_test.yaml', import.meta.url)));
const R = config.ddconfig.resolution;

const { backend: gpu, reason, destroy } = await testF16Backend();
afterAll(() => destroy());

const batch = (i: number) => syntheticBatch(i, 2, R);

async function params(t: IBQTrainer): Promise<number[][]> {
  return Promise.all(t.model.parameters().map(async (p: Tensor) => Array.from(await p.data())));
}

describe.skipIf(!gpu)(`16-mixed training on webgpu${reason ? `: skipped, ${reason}` : ''}`, () => {
  const mk = (precision: Precision) => new IBQTrainer({ config, backend: gpu!, seed: 3, precision });
  const steps = 8; // disc_start is 2: both optimizers step in most of them

  /** The generator's gradients as its optimizer sees them (unscaled), at the first step. */
  async function firstStepGradients(precision: Precision): Promise<{ loss: number; grads: Map<string, number[]> }> {
    const t = mk(precision);
    const grads = new Map<string, number[]>();
    const reads: Promise<void>[] = [];
    const step = t.optG.step.bind(t.optG);
    t.optG.step = () => {
      for (const [n, p] of t.model.namedParameters()) reads.push(p.grad!.data().then((d) => void grads.set(n, Array.from(d))));
      step();
    };
    const x = tensor(batch(0), [2, 3, R, R]);
    const log = await t.trainStep([x]);
    x.dispose();
    await Promise.all(reads);
    t.dispose();
    return { loss: log.total_loss, grads };
  }

  it('computes the first step loss and the float32 gradients of float32 training, within f16 rounding', async () => {
    const want = await firstStepGradients('32');
    const got = await firstStepGradients('16-mixed');
    expect(Math.abs(got.loss - want.loss)).toBeLessThan(1e-4 * want.loss);
    const nmse = (n: string) => {
      const a = got.grads.get(n)!, b = want.grads.get(n)!;
      let num = 0, den = 0;
      b.forEach((v, i) => ((num += (a[i] - v) ** 2), (den += v * v)));
      return { nmse: num / den, norm: Math.sqrt(den) };
    };
    for (const n of want.grads.keys()) {
      const { nmse: e, norm } = nmse(n);
      // Structurally zero gradients (a key bias under softmax, a bias before a one-channel
      // GroupNorm) are rounding noise in both runs: nothing to compare.
      if (norm < 1e-6) continue;
      // The entropy loss works on logits / 0.01, which turns f16's 5e-4 rounding of z into a few
      // per cent on the gradients of the codebook and of everything before it (torch's autocast
      // has the same property); the decoder's side sees only f16 rounding.
      const throughEntropy = ['encoder.', 'quant_conv.', 'quantize.'].some((p) => n.startsWith(p));
      const bound = throughEntropy ? 0.1 : F16_TOLERANCES.loose.nmse!;
      expect(e, n).toBeLessThan(bound);
    }
  }, 300_000);

  it('trains both optimizers with one scaler, updated after each optimizer step', async () => {
    const t = mk('16-mixed');
    // At the default 65536 the discriminator's first-layer bias gradient (~0.9 here) comes
    // within a hair of f16's 65504 and may overflow (that is the next test's business).
    t.scaler!.scale = 1024;
    for (let s = 0; s < steps; s++) {
      const x = tensor(batch(s), [2, 3, R, R]);
      const log = await t.trainStep([x]);
      x.dispose();
      expect(log.overflowed).toEqual([]);
      expect(log.loss_scale).toBe(1024);
      expect([log.total_loss, log.disc_loss, log.g_loss].every(Number.isFinite)).toBe(true);
      expect(log.disc_factor).toBe(s >= config.lossconfig.disc_start ? 1 : 0);
      if (s >= config.lossconfig.disc_start) expect(log.disc_loss).toBeGreaterThan(0);
    }
    // As Lightning's precision plugin: the discriminator's step (a clean no-op before disc_start) and the generator's each update it.
    expect(t.scaler!.state()).toEqual({ scale: 1024, growthTracker: 2 * steps });
    expect(t.optG.stepCount).toBe(steps);
    t.dispose();
  }, 300_000);

  it('an overflow skips the update, backs the scale off, and still counts the step', async () => {
    const t = mk('16-mixed');
    t.scaler!.scale = 2 ** 120; // any f16 gradient overflows
    const before = await params(t);
    const x = tensor(batch(0), [2, 3, R, R]);
    const log = await t.trainStep([x]);
    expect(log.overflowed).toEqual(['generator']); // disc_start 2: no discriminator step yet
    expect(log.skipped).toBe(false);
    expect(t.step).toBe(1);
    expect(t.optG.stepCount).toBe(0);
    expect(await params(t)).toEqual(before);
    expect(t.scaler!.scale).toBe(2 ** 119); // one back-off: disc_start 2, so D only counted a clean skip step
    const next = await t.trainStep([x]); // 2^119 still overflows f16: halves again
    expect(next.overflowed).toEqual(['generator']);
    expect(t.scaler!.scale).toBe(2 ** 118);
    const third = await t.trainStep([x]); // the discriminator's first step: both overflow, each backs off
    expect(third.overflowed).toEqual(['discriminator', 'generator']);
    expect(t.scaler!.scale).toBe(2 ** 116);
    expect(t.optD!.stepCount).toBe(2); // the two skip steps before disc_start; the overflowed one is not a step
    x.dispose();
    const file = join(mkdtempSync(join(tmpdir(), 'ibq-amp-')), 'ckpt.safetensors');
    await t.save(file);
    const u = mk('16-mixed');
    await u.load(file);
    expect(u.scaler!.state()).toEqual(t.scaler!.state());
    t.dispose();
    u.dispose();
  }, 300_000);

  it('resolves 16-mixed from the config where the device has f16', () => {
    expect(resolvePrecision('16-mixed', undefined, gpu!)).toMatchObject({ precision: '16-mixed' });
    expect(resolvePrecision('16-mixed', '32', gpu!)).toEqual({ precision: '32', notice: null });
  });
});

describe('choosing the precision', () => {
  const ref = new ReferenceBackend();
  it('a config asking for mixed precision on a backend without f16 trains in 32 and says so', () => {
    const r = resolvePrecision('16-mixed', undefined, ref);
    expect(r.precision).toBe('32');
    expect(r.notice).toMatch(/precision 16-mixed.*reference.*training in 32/);
    expect(resolvePrecision('bf16-mixed', undefined, ref).notice).toMatch(/bfloat16/);
    expect(resolvePrecision(null, undefined, ref)).toEqual({ precision: '32', notice: null });
    expect(resolvePrecision('32', undefined, ref)).toEqual({ precision: '32', notice: null });
  });

  it('an explicit --precision the backend cannot honour, or an unknown name, is an error naming it', () => {
    expect(() => resolvePrecision(null, '16-mixed', ref)).toThrow(/--precision 16-mixed: backend 'reference' cannot: f16 is not supported/);
    expect(() => resolvePrecision(null, 'bf16-mixed', ref)).toThrow(/--precision bf16-mixed/);
    expect(() => resolvePrecision(null, 'fp8', ref)).toThrow(/--precision: unknown precision 'fp8'/);
    expect(() => resolvePrecision('64-true', undefined, ref)).toThrow(/trainer.precision: unknown precision '64-true'/);
    expect(() => new IBQTrainer({ config, backend: ref, precision: '16-mixed' })).toThrow(/precision 16-mixed: backend 'reference'/);
  });
});
