// LPIPS (VGG, v0.1 heads) against golden values made with PyTorch
// (scripts/make_lpips_golden.py: a width-reduced VGG16 of the same structure and indices,
// random weights, a 2x3x36x28 batch whose second image is piecewise flat), plus loading from
// the three kinds of weight files and the errors when they do not fit.
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { testBackends } from '@ibq/kernels/harness';
import { type HostTensor, type Tensor, backward, mean, nn, noGrad, readSafetensors, setBackend, sum, tensor, tidy } from '@ibq/tensor';
import {
  LPIPS,
  LpipsWeightsError,
  VGG16_WIDTHS,
  loadLpips,
  loadLpipsState,
  lpipsPerImage,
  lpipsStateShapes,
  lpipsWeightsAvailable,
  maxPool2x2,
  vgg16Layers,
} from '../src/lpips.js';

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const GOLDEN = fixture('lpips_golden.safetensors');
const VGG_PTH = fixture('lpips_vgg16_small.pth');
const HEADS_PTH = fixture('lpips_heads_small.pth');
const CKPT = fixture('lpips_tokenizer_small.ckpt');

const { backends, destroyAll } = await testBackends();
afterAll(() => destroyAll());
const golden = await readSafetensors(GOLDEN);
const WIDTHS = JSON.parse(golden.metadata.widths) as number[];
const get = (k: string) => {
  const t = golden.tensors.get(k);
  if (!t) throw new Error(`fixture has no ${k}`);
  return t;
};
const weights = new Map([...golden.tensors].filter(([k]) => !k.startsWith('expected.') && !k.startsWith('input.')));
const f32 = (t: HostTensor) => t.data as Float32Array;

function nmse(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < want.length; i++) {
    if (Number.isNaN(got[i])) return Infinity;
    num += (got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  return num / Math.max(den, 1e-30);
}

async function expectClose(t: Tensor, key: string, tol: number): Promise<void> {
  const e = get(key);
  expect(t.shape, key).toEqual(e.shape);
  expect(nmse(await t.data(), f32(e)), key).toBeLessThan(tol);
}

describe('LPIPS module layout', () => {
  it('VGG16 features: torchvision indices, slices and LPIPS keys of the real network', () => {
    const layers = vgg16Layers();
    expect(layers).toHaveLength(30);
    expect(layers.filter((l) => l.kind === 'pool').map((l) => l.index)).toEqual([4, 9, 16, 23]);
    expect(layers.filter((l) => l.kind === 'conv').map((l) => l.index)).toEqual([0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]);
    const shapes = lpipsStateShapes();
    expect(shapes.size).toBe(2 + 26 + 5);
    expect(shapes.get('scaling_layer.shift')).toEqual([1, 3, 1, 1]);
    expect(shapes.get('net.slice1.0.weight')).toEqual([64, 3, 3, 3]);
    expect(shapes.get('net.slice2.5.weight')).toEqual([128, 64, 3, 3]);
    expect(shapes.get('net.slice3.14.bias')).toEqual([256]);
    expect(shapes.get('net.slice4.17.weight')).toEqual([512, 256, 3, 3]);
    expect(shapes.get('net.slice5.28.weight')).toEqual([512, 512, 3, 3]);
    expect(VGG16_WIDTHS.map((c, k) => shapes.get(`lin${k}.model.1.weight`))).toEqual(VGG16_WIDTHS.map((c) => [1, c, 1, 1]));
  });
});

describe.each(backends.map((b) => [b.name, b] as const))('LPIPS on %s', (_name, be) => {
  it('the module has the reference names, frozen parameters, and loads the golden weights strictly', () => {
    setBackend(be);
    let net!: LPIPS;
    tidy(() => {
      net = new LPIPS({ widths: WIDTHS }); // built inside a scope: its tensors must survive it
    });
    try {
      expect(net.stateDict().get('scaling_layer.shift')!.isDisposed).toBe(false);
      const sd = net.stateDict();
      expect(new Map([...sd].map(([k, t]) => [k, [...t.shape]]))).toEqual(lpipsStateShapes(WIDTHS));
      expect([...sd.keys()]).toEqual([...weights.keys()]); // the same order as PyTorch's state_dict
      expect(net.parameters().every((p) => !p.requiresGrad)).toBe(true);
      loadLpipsState(net, weights);
    } finally {
      net.dispose();
    }
  });

  it('forward (taps, per-layer, total) and the gradient w.r.t. the second input match PyTorch', async () => {
    setBackend(be);
    const base = be.memory();
    const net = new LPIPS({ widths: WIDTHS });
    loadLpipsState(net, weights, GOLDEN);
    const x0 = tensor(f32(get('input.x0')), get('input.x0').shape);
    const x1 = tensor(f32(get('input.x1')), get('input.x1').shape, { requiresGrad: true });

    const { total, layers, taps } = tidy(() => ({ ...net.forwardLayers(x0, x1), taps: noGrad(() => net.features(x1)) }));
    for (let k = 0; k < 5; k++) await expectClose(taps[k], `expected.tap${k}`, 1e-9);
    for (let k = 0; k < 5; k++) await expectClose(layers[k], `expected.layer${k}`, 1e-8);
    await expectClose(total, 'expected.lpips', 1e-8);

    const loss = tidy(() => sum(total)); // as the golden: d sum(LPIPS) / d x1
    backward(loss);
    // Includes the flat image: pooled ties at positive values, whose gradient must go to
    // the first maximal element of each window as in PyTorch.
    await expectClose(x1.grad!, 'expected.grad_x1', 1e-7);
    expect(x0.grad).toBeNull();

    for (const t of [total, ...layers, ...taps, loss, x0, x1]) t.dispose();
    net.dispose();
    expect(be.memory()).toMatchObject({ buffers: base.buffers, bytes: base.bytes });
  });

  it('LPIPS(x, x) is exactly 0; evaluation values match forward; no tape without gradients', async () => {
    setBackend(be);
    const net = new LPIPS({ widths: WIDTHS });
    loadLpipsState(net, weights);
    const x0 = tensor(f32(get('input.x0')), get('input.x0').shape);
    const x1 = tensor(f32(get('input.x1')), get('input.x1').shape);
    expect(Array.from(await lpipsPerImage(net, x1, x1))).toEqual([0, 0]);
    expect(Array.from(await lpipsPerImage(net, x0, x0))).toEqual([0, 0]);
    const per = await lpipsPerImage(net, x0, x1);
    expect(nmse(per, f32(get('expected.lpips')))).toBeLessThan(1e-8);
    const d = noGrad(() => net.forward(x0, x1));
    expect(d.requiresGrad).toBe(false);
    expect(d.shape).toEqual([2, 1, 1, 1]);
    d.dispose();
    x0.dispose();
    x1.dispose();
    net.dispose();
  });

  it('max pool: floor mode, first-maximum gradient on ties, same values with and without a tape', async () => {
    setBackend(be);
    // 5x5 of ones: the last row and column are dropped; every window is a tie.
    const x = tensor(new Float32Array(25).fill(1), [1, 1, 5, 5], { requiresGrad: true });
    const y = maxPool2x2(x);
    expect(y.shape).toEqual([1, 1, 2, 2]);
    expect(Array.from(await y.data())).toEqual([1, 1, 1, 1]);
    const s = tidy(() => mean(y));
    backward(s);
    const want = new Array(25).fill(0);
    for (const i of [0, 2, 10, 12]) want[i] = 0.25;
    expect(Array.from(await x.grad!.data())).toEqual(want);
    const vals = Float32Array.from({ length: 2 * 3 * 7 * 6 }, (_, i) => Math.sin(i * 1.7) * 3);
    const z = tensor(vals, [2, 3, 7, 6], { requiresGrad: true });
    const a = maxPool2x2(z);
    const b = noGrad(() => maxPool2x2(z));
    expect(Array.from(await a.data())).toEqual(Array.from(await b.data()));
    for (const t of [x, y, s, z, a, b]) t.dispose();
  });
});

describe('LPIPS weight files', () => {
  const be = backends[0];
  const sources = {
    files: { vgg16: VGG_PTH, heads: HEADS_PTH },
    checkpoint: { checkpoint: CKPT },
  };

  it.each(Object.entries(sources))('loads from %s through the weights-only reader, equal to the golden weights', async (_n, source) => {
    setBackend(be);
    const net = await loadLpips(source, { widths: WIDTHS });
    try {
      for (const [k, t] of net.stateDict()) {
        const got = await nn.hostTensor(t);
        expect(Array.from(got.data as Float32Array), k).toEqual(Array.from(f32(weights.get(k)!)));
      }
    } finally {
      net.dispose();
    }
  });

  it('says whether weights are available, and why not', async () => {
    expect(await lpipsWeightsAvailable(sources.files, { widths: WIDTHS })).toEqual({ available: true, source: sources.files });
    expect(await lpipsWeightsAvailable(sources.checkpoint, { widths: WIDTHS })).toEqual({ available: true, source: sources.checkpoint });
    // The real network's widths do not fit these small files.
    const real = await lpipsWeightsAvailable(sources.checkpoint);
    expect(real.available).toBe(false);
    if (!real.available) expect(real.reason).toContain('shape mismatches');
    const none = await lpipsWeightsAvailable({ vgg16: '/nonexistent/vgg16-397923af.pth', heads: HEADS_PTH }, { widths: WIDTHS });
    expect(none.available).toBe(false);
    if (!none.available) expect(none.reason).toContain('/nonexistent/vgg16-397923af.pth');
    const first = await lpipsWeightsAvailable([{ checkpoint: '/nonexistent.ckpt' }, sources.files], { widths: WIDTHS });
    expect(first).toEqual({ available: true, source: sources.files });
    expect(await lpipsWeightsAvailable([])).toEqual({ available: false, reason: 'no LPIPS weight source given' });
  });

  it('names the file and the missing keys when weights do not fit', async () => {
    setBackend(be);
    // Files swapped: every key is missing from each, in that file's own naming.
    const swapped = loadLpips({ vgg16: HEADS_PTH, heads: VGG_PTH }, { widths: WIDTHS });
    await expect(swapped).rejects.toThrow(LpipsWeightsError);
    const err = (await swapped.catch((e: unknown) => e)) as LpipsWeightsError;
    expect(err.problems.map((p) => p.file)).toEqual([HEADS_PTH, VGG_PTH]);
    expect(err.problems[0].missing).toContain('features.0.weight');
    expect(err.problems[0].missing).toHaveLength(26);
    expect(err.problems[0].unexpected).toContain('lin0.model.1.weight');
    expect(err.problems[1].missing).toEqual([0, 1, 2, 3, 4].map((k) => `lin${k}.model.1.weight`));
    expect(err.message).toContain(HEADS_PTH);
    expect(err.message).toContain('features.28.bias');

    // A file without the loss entries given as a checkpoint.
    await expect(loadLpips({ checkpoint: VGG_PTH }, { widths: WIDTHS })).rejects.toThrow(/no 'loss\.perceptual_loss\.\*' entries/);
    // Default (VGG16) widths against the small files: shape mismatches, named.
    await expect(loadLpips({ checkpoint: CKPT })).rejects.toThrow(/loss\.perceptual_loss\.net\.slice1\.0\.weight: file \[8,3,3,3\] vs expected \[64,3,3,3\]/);
    await expect(loadLpips({ checkpoint: '/nonexistent.ckpt' })).rejects.toThrow(/\/nonexistent\.ckpt/);

    // A state dict with one entry missing and one extra.
    const net = new LPIPS({ widths: WIDTHS });
    try {
      const bad = new Map(weights);
      bad.delete('net.slice3.12.bias');
      bad.set('lin5.model.1.weight', weights.get('lin4.model.1.weight')!);
      expect(() => loadLpipsState(net, bad, 'my.ckpt')).toThrow(/my\.ckpt: not usable[\s\S]*1 missing keys: net\.slice3\.12\.bias[\s\S]*1 unexpected keys: lin5\.model\.1\.weight/);
    } finally {
      net.dispose();
    }
  });
});
