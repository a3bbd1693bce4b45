// LPIPS (AlexNet variant) against scripts/make_lpips_alex_golden.py (torchvision's alexnet,
// the spec's formula, synthetic weights shared with python), loaded from torchvision-layout
// and heads files written here; and the loader's errors.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readNpz } from '@ibq/data';
import { testBackends } from '@ibq/kernels/harness';
import { type HostTensor, dispose, setBackend, tensor, writeSafetensors } from '@ibq/tensor';
import { afterAll, describe, expect, it } from 'vitest';
import { ALEX_CHANNELS, alexStateShapes, loadLpipsAlex } from '../src/lpips-alex.js';
import { syntheticImage, syntheticValues } from '../src/synthetic-weights.js';

const fx = await readNpz(new URL('./fixtures/lpips_alex_golden.npz', import.meta.url).pathname);
const { backends, destroyAll } = await testBackends(['reference', 'cpu']);
const dir = mkdtempSync(join(tmpdir(), 'ibq-alex-'));
afterAll(() => {
  destroyAll();
  rmSync(dir, { recursive: true, force: true });
});

const backbone = new Map<string, HostTensor>();
for (const [k, shape] of alexStateShapes()) {
  const n = shape.reduce((a, b) => a * b, 1);
  backbone.set(k, { dtype: 'f32', shape, data: syntheticValues(k, n, k.endsWith('.weight') ? Math.sqrt(3 / (n / shape[0])) : 0.05) });
}
// torchvision's file carries the classifier too: it must be ignored.
backbone.set('classifier.1.weight', { dtype: 'f32', shape: [4, 3], data: new Float32Array(12) });
const heads = new Map<string, HostTensor>(ALEX_CHANNELS.map((c, k) => {
  const key = `lin${k}.model.1.weight`;
  return [key, { dtype: 'f32', shape: [1, c, 1, 1], data: syntheticValues(key, c, 0.2).map(Math.abs) }];
}));
const ALEX = join(dir, 'alexnet.safetensors'), HEADS = join(dir, 'alex_heads.safetensors');
await writeSafetensors(ALEX, backbone);
await writeSafetensors(HEADS, heads);

describe.each(backends.map((b) => [b.name, b] as const))('LPIPS-alex on %s', (_n, be) => {
  it('per-image and per-tap values equal the torchvision-based golden', async () => {
    setBackend(be);
    const net = await loadLpipsAlex(ALEX, HEADS, be);
    const x0 = tensor(syntheticImage('alex.x0', [2, 3, 64, 56]).map((v) => v * 2 - 1), [2, 3, 64, 56], { backend: be });
    const x1 = tensor(syntheticImage('alex.x1', [2, 3, 64, 56]).map((v) => v * 2 - 1), [2, 3, 64, 56], { backend: be });
    const { total, layers } = await net.forward(x0, x1);
    const wantT = fx.total.data as Float32Array, wantL = fx.layers.data as Float32Array;
    for (let i = 0; i < 2; i++) expect(Math.abs(total[i] - wantT[i])).toBeLessThan(1e-5 * wantT[i]);
    for (let i = 0; i < wantL.length; i++) expect(Math.abs(layers[i] - wantL[i])).toBeLessThan(1e-5 * wantL[i] + 1e-8);
    dispose([x0, x1]);
    net.dispose();
  }, 120_000);
});

describe('LPIPS-alex weights', () => {
  it('names the file and the mis-shaped or missing key', async () => {
    const bad = new Map(backbone);
    bad.set('features.3.weight', { dtype: 'f32', shape: [192, 64, 3, 3], data: new Float32Array(192 * 64 * 9) });
    const p = join(dir, 'bad.safetensors');
    await writeSafetensors(p, bad);
    await expect(loadLpipsAlex(p, HEADS)).rejects.toThrow(/bad\.safetensors: not torchvision's alexnet.*features\.3\.weight: file \[192,64,3,3\] vs expected \[192,64,5,5\]/);
    await expect(loadLpipsAlex(ALEX, join(dir, 'none.pth'))).rejects.toThrow(/none\.pth: cannot read the LPIPS v0\.1 alex heads/);
    await expect(loadLpipsAlex(HEADS, HEADS)).rejects.toThrow(/missing keys: features\.0\.weight/);
  });
});
