import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ReferenceBackend } from '@ibq/kernels';
import { type Tensor, dispose, tensor } from '@ibq/tensor';
import { syntheticBatch } from './synthetic.js';
import { IBQTrainer, NonFiniteLossError, loadConfig } from '../src/index.js';

const config = loadConfig(fileURLToPath(new URL('../configs/micro_test.yaml', import.meta.url)));
const R = config.ddconfig.resolution;

const batch = (i: number) => syntheticBatch(i, 2, R);

async function run(t: IBQTrainer, from: number, to: number): Promise<number[]> {
  const losses: number[] = [];
  for (let s = from; s < to; s++) {
    const x = tensor(batch(s), [2, 3, R, R]);
    losses.push((await t.trainStep([x])).total_loss);
    x.dispose();
  }
  return losses;
}

async function params(t: IBQTrainer): Promise<number[][]> {
  return Promise.all(t.model.parameters().map(async (p: Tensor) => Array.from(await p.data())));
}

describe('tokenizer trainer on reference', () => {
  it('2 x 50 steps with a resume equal 100 uninterrupted steps (bit-exact)', async () => {
    const steps = 100, half = 50; // disc_start 10 and the LR drop after epoch 30 both happen inside
    const mk = () => new IBQTrainer({ config, backend: new ReferenceBackend(), seed: 7, stepsPerEpoch: 2 });
    const full = mk();
    const whole = await run(full, 0, steps);
    const first = mk();
    const a = await run(first, 0, half);
    const file = join(mkdtempSync(join(tmpdir(), 'ibq-train-')), 'ckpt.safetensors');
    await first.save(file, { data: { batch: half } });
    first.dispose();
    const second = mk();
    const extra = await second.load(file);
    expect(extra.data).toEqual({ batch: half });
    expect(second.step).toBe(half);
    const b = await run(second, half, steps);
    expect([...a, ...b]).toEqual(whole);
    expect(await params(second)).toEqual(await params(full));
    expect(whole[steps - 1]).toBeLessThan(whole[0]);
    full.dispose();
    second.dispose();
  }, 300_000);

  it('before disc_start, D still sees both batches: BatchNorm statistics and LeCAM EMAs move, weights do not', async () => {
    const t = new IBQTrainer({ config, backend: new ReferenceBackend(), seed: 2 }); // disc_start 10
    const state = async () => new Map(await Promise.all([...t.disc!.stateDict()].map(async ([n, v]) => [n, Array.from(await v.data())] as const)));
    const before = await state();
    const x = tensor(batch(0), [2, 3, R, R]);
    const log = await t.trainStep([x]);
    x.dispose();
    expect(log.disc_factor).toBe(0);
    expect(log.nll_loss).toBe(log.reconstruct_loss); // no perceptual term here
    await run(t, 1, 2);
    const after = await state();
    for (const [n] of t.disc!.namedParameters()) expect(after.get(n), n).toEqual(before.get(n));
    const stats = [...after.keys()].filter((n) => n.endsWith('running_mean') || n.endsWith('running_var'));
    expect(stats.length).toBeGreaterThan(0);
    for (const n of stats) expect(after.get(n), n).not.toEqual(before.get(n));
    // Three D calls a step (real, fake, and the generator's view of the fake), as the reference.
    expect(after.get('main.3.num_batches_tracked')).toEqual([6]);
    expect(await t.lecamReal.item()).not.toBe(0);
    expect(await t.lecamFake.item()).not.toBe(0);
    expect(t.optD!.stepCount).toBe(2);
    t.dispose();
  }, 120_000);

  it('skips a step with a non-finite loss and stops after K in a row', async () => {
    const t = new IBQTrainer({ config, backend: new ReferenceBackend(), seed: 1, maxNonFinite: 2 });
    const bad = tensor(new Float32Array(2 * 3 * R * R).fill(NaN), [2, 3, R, R]);
    const before = await params(t);
    const log = await t.trainStep([bad]);
    expect(log.skipped).toBe(true);
    expect(t.step).toBe(0);
    expect(await params(t)).toEqual(before);
    await expect(t.trainStep([bad])).rejects.toThrow(NonFiniteLossError);
    dispose(bad);
    t.dispose();
  }, 120_000);
});
