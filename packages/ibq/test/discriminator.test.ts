import { describe, expect, it } from 'vitest';
import { ReferenceBackend } from '@ibq/kernels';
import { Generator, setBackend, tensor } from '@ibq/tensor';
import { NLayerDiscriminator, hingeDLoss, lecamReg, nonSaturatingGLoss } from '../src/discriminator.js';

setBackend(new ReferenceBackend());

describe('PatchGAN discriminator', () => {
  it('has the reference keys, shapes and parameter count', () => {
    const d = new NLayerDiscriminator(3, 64, 3, new Generator(0));
    const sd = d.stateDict();
    const shapes = Object.fromEntries([...sd].map(([k, t]) => [k, t.shape]));
    expect(shapes['main.0.weight']).toEqual([64, 3, 4, 4]);
    expect(shapes['main.0.bias']).toEqual([64]);
    expect(shapes['main.2.weight']).toEqual([128, 64, 4, 4]);
    expect(sd.has('main.2.bias')).toBe(false);
    expect(shapes['main.3.running_var']).toEqual([128]);
    expect(shapes['main.3.num_batches_tracked']).toEqual([]);
    expect(shapes['main.8.weight']).toEqual([512, 256, 4, 4]);
    expect(shapes['main.11.weight']).toEqual([1, 512, 4, 4]);
    expect(sd.size).toBe(22);
    const total = [...sd.values()].reduce((a, t) => a + t.size, 0);
    expect(total).toBe(2_767_428);
    d.dispose();
  });

  it('initialises conv weights N(0, 0.02) and BatchNorm weights N(1, 0.02)', async () => {
    const d = new NLayerDiscriminator(3, 16, 3, new Generator(5));
    const w = await d.stateDict().get('main.5.weight')!.array();
    const m = w.reduce((a, v) => a + v, 0) / w.length;
    const sd = Math.sqrt(w.reduce((a, v) => a + (v - m) ** 2, 0) / w.length);
    expect(Math.abs(m)).toBeLessThan(0.002);
    expect(sd).toBeGreaterThan(0.018);
    expect(sd).toBeLessThan(0.022);
    const g = await d.stateDict().get('main.3.weight')!.array();
    expect(g.every((v) => Math.abs(v - 1) < 0.1)).toBe(true);
    d.dispose();
  });

  it('gives patch logits of the reference size', () => {
    const d = new NLayerDiscriminator(3, 8, 3, new Generator(1));
    const x = tensor(new Float32Array(2 * 3 * 64 * 64).map((_, i) => Math.sin(i)), [2, 3, 64, 64]);
    // 64 -> 32 -> 16 -> 8 -> 7 -> 6, as 256 -> 30 for the ImageNet configs
    expect(d.forward(x).shape).toEqual([2, 1, 6, 6]);
    d.dispose();
  });

  it('hinge, LeCAM and non-saturating losses match their definitions', async () => {
    const real = tensor([0.5, 2, -1, 0.2], [2, 1, 1, 2]);
    const fake = tensor([-0.5, 1, -2, 0.3], [2, 1, 1, 2]);
    const hinge = 0.5 * ((0.5 + 0 + 2 + 0.8) / 4 + (0.5 + 2 + 0 + 1.3) / 4);
    expect(await hingeDLoss(real, fake).item()).toBeCloseTo(hinge, 6);
    const er = tensor([0.1], [1]), ef = tensor([-0.2], [1]);
    const relu = (v: number) => Math.max(v, 0);
    const lecam = [0.5, 2, -1, 0.2].reduce((a, r) => a + relu(r + 0.2) ** 2, 0) / 4 + [-0.5, 1, -2, 0.3].reduce((a, f) => a + relu(0.1 - f) ** 2, 0) / 4;
    expect(await lecamReg(real, fake, er, ef).item()).toBeCloseTo(lecam, 6);
    const l = [(-0.5 + 1) / 2, (-2 + 0.3) / 2];
    const g = l.reduce((a, v) => a + Math.log1p(Math.exp(-v)), 0) / 2;
    expect(await nonSaturatingGLoss(fake).item()).toBeCloseTo(g, 6);
  });
});
