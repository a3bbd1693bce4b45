// The AR trainer in 16-mixed on WebGPU (f16 autocast, the loss scaler): the same steps as in
// f32 on the reference backend, to f16's precision. Skipped, with the harness's reason, where
// no WebGPU device with shader-f16 exists.
import { afterAll, describe, expect, it } from 'vitest';
import { createBackend } from '@ibq/kernels';
import { testF16Backend } from '@ibq/kernels/harness';
import { ArTrainer, makeConfig, type TokenMicroBatch } from '../src/index.js';

const gpu = await testF16Backend();
afterAll(() => gpu.destroy());

const config = makeConfig({ vocab_size: 24, block_size: 16, n_layer: 2, n_head: 2, n_embd: 16, class_num: 3, multiple_of: 8 });
const recipe = { learning_rate: 3e-3, weight_decay: 0.05, wp: 0, wp0: 0.005, wpe: 1, twde: 0, gradient_clip_val: 1 };
const batch = (k: number): TokenMicroBatch => ({
  tokens: Int32Array.from({ length: 3 * 16 }, (_, i) => (i * 5 + k * 3 + Math.floor(i / 16) * 7) % 24),
  labels: Int32Array.from([k % 3, (k + 1) % 3, (k + 2) % 3]),
  size: 3,
});

describe.skipIf(!gpu.backend)('ArTrainer 16-mixed on webgpu', () => {
  it('follows the f32 losses on the reference backend; the loss scale is the scaler\'s', async () => {
    const ref = await createBackend('reference');
    const f32 = new ArTrainer({ config, recipe, backend: ref, stepsPerEpoch: 10, totalSteps: 10, seed: 1 });
    const a: number[] = [];
    for (let s = 0; s < 3; s++) a.push((await f32.trainStep([batch(s)])).loss);
    f32.dispose();
    ref.destroy();
    const mixed = new ArTrainer({ config, recipe, backend: gpu.backend!, stepsPerEpoch: 10, totalSteps: 10, seed: 1, precision: '16-mixed' });
    const b: number[] = [];
    for (let s = 0; s < 3; s++) {
      const log = await mixed.trainStep([batch(s)]);
      expect(log.loss_scale).toBe(65536);
      b.push(log.loss);
    }
    mixed.dispose();
    b.forEach((v, i) => expect(Math.abs(v - a[i])).toBeLessThan(2e-2 * a[i]));
  }, 300_000);
});
