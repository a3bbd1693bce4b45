import { afterAll, describe, expect, it } from 'vitest';
import { ReferenceBackend, createBackend } from '@ibq/kernels';
import { testBackends } from '@ibq/kernels/harness';
import { Tensor, add, backward, exp, full, keep, mul, noGrad, scale, setBackend, sigmoid, tensor, tidy } from '../src/index.js';

const { backends, destroyAll } = await testBackends();
afterAll(() => destroyAll());

describe.each(backends.map((b) => [b.name, b] as const))('engine on %s', (_name, be) => {
  it('tidy disposes what it created except the result and kept tensors', async () => {
    setBackend(be);
    const base = be.memory();
    let kept: Tensor | undefined;
    const out = tidy(() => {
      const a = tensor([1, 2, 3], [3]);
      const b = mul(a, a);
      kept = keep(add(b, 1));
      return exp(b);
    });
    const got = await out.array();
    [1, 4, 9].forEach((v, i) => expect(got[i]).toBeCloseTo(Math.exp(v), 2));
    expect(await kept!.array()).toEqual([2, 5, 10]);
    expect(be.memory().buffers).toBe(base.buffers + 2);
    out.dispose();
    kept!.dispose();
    await be.sync();
    expect(be.memory()).toMatchObject({ buffers: base.buffers, bytes: base.bytes });
  });

  it('backward matches finite differences, accumulates, and frees its scratch', async () => {
    setBackend(be);
    const base = be.memory();
    const x = tensor([0.3, -1.2, 2.0], [3], { requiresGrad: true });
    const f = (v: Tensor) => mul(sigmoid(mul(v, v)), scale(v, 3, 1));
    const y = tidy(() => f(x));
    const seed = tensor([1, 1, 1], [3]);
    backward(y, seed);
    const g = await x.grad!.array();
    const host = (v: number) => (1 / (1 + Math.exp(-v * v))) * (3 * v + 1);
    [0.3, -1.2, 2.0].forEach((v, i) => {
      const fd = (host(v + 1e-4) - host(v - 1e-4)) / 2e-4;
      expect(g[i]).toBeCloseTo(fd, 3);
    });
    const y2 = tidy(() => f(x));
    backward(y2, seed);
    const g2 = await x.grad!.array();
    g2.forEach((v, i) => expect(v).toBeCloseTo(2 * g[i], 4));
    for (const t of [x, y, y2, seed]) t.dispose();
    await be.sync();
    expect(be.memory()).toMatchObject({ buffers: base.buffers, bytes: base.bytes });
  });

  it('noGrad records nothing and detach cuts the tape', () => {
    setBackend(be);
    const x = tensor([1, 2], [2], { requiresGrad: true });
    const y = noGrad(() => mul(x, x));
    expect(y.requiresGrad).toBe(false);
    const z = mul(x, x).detach();
    expect(z.requiresGrad).toBe(false);
    expect(() => backward(z)).toThrow(/does not require gradients/);
    for (const t of [x, y, z]) t.dispose();
  });

  it('reshape is a view on the same storage and passes gradients', async () => {
    setBackend(be);
    const x = tensor([1, 2, 3, 4, 5, 6], [2, 3], { requiresGrad: true });
    const y = x.reshape([3, -1]);
    expect(y.shape).toEqual([3, 2]);
    const z = mul(y, full([1], 2));
    backward(z, tensor([1, 1, 1, 1, 1, 1], [3, 2]));
    expect(await x.grad!.array()).toEqual([2, 2, 2, 2, 2, 2]);
  });
});

it('ops on tensors of different backends are refused', async () => {
  const a = new ReferenceBackend();
  const b = await createBackend('reference');
  const x = tensor([1], [1], { backend: a });
  const y = tensor([1], [1], { backend: b });
  expect(() => add(x, y)).toThrow(/different backends/);
});
