// Mixed precision: the autocast policy and f16 training on webgpu (when it has shader-f16), and
// the loss scaler's rules on reference.
import { afterAll, describe, expect, it } from 'vitest';
import { type Backend, ReferenceBackend } from '@ibq/kernels';
import { F16_TOLERANCES, compare, testF16Backend } from '@ibq/kernels/harness';
import {
  Adam, Generator, GradScaler, type Tensor, add, autocast, backward, cast, matmul, mean, nn, setBackend, square, sub, sum, tensor, tidy,
} from '../src/index.js';

const { backend: gpu, reason, destroy } = await testF16Backend();
afterAll(() => destroy());

class Net extends nn.Module {
  readonly conv: nn.Conv2d;
  readonly norm: nn.GroupNorm;
  readonly head: nn.Linear;
  constructor(g: Generator) {
    super();
    this.conv = this.module('conv', new nn.Conv2d(3, 8, 3, { padding: 1 }, { generator: g }));
    this.norm = this.module('norm', new nn.GroupNorm(2, 8, 1e-6));
    this.head = this.module('head', new nn.Linear(8 * 6 * 6, 2, true, { generator: g }));
  }
  forward(x: Tensor): Tensor {
    const h = nn.SiLU.prototype.forward(this.norm.forward(this.conv.forward(x)));
    return this.head.forward(h.reshape([x.shape[0], -1]));
  }
}

function problem(n: number): { x: number[]; y: number[] } {
  let s = 777;
  const rand = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  const x = Array.from({ length: n * 3 * 36 }, rand);
  const y = Array.from({ length: n * 2 }, (_, i) => Math.sin(x[i * 7] * 3) + x[i * 11]);
  return { x, y };
}

function lossOf(net: Net, xs: Tensor, ys: Tensor): Tensor {
  return tidy(() => mean(square(sub(net.forward(xs), ys))));
}

describe.skipIf(!gpu)(`autocast on webgpu (f16)${reason ? `: skipped, ${reason}` : ''}`, () => {
  it('runs GEMM ops in f16, sensitive ops in f32, and mixes by promotion', async () => {
    setBackend(gpu!);
    const base = gpu!.memory();
    const a = tensor([1, 2, 3, 4, 5, 6], [2, 3]);
    const b = tensor([0.5, -1, 2, 0.25, 1, -3], [3, 2]);
    tidy(() =>
      autocast('f16', () => {
        const ab = matmul(a, b);
        expect(ab.dtype).toBe('f16');
        expect(sum(ab).dtype).toBe('f32'); // long sums in f32
        expect(add(ab, ab).dtype).toBe('f16'); // same dtype: left as is
        expect(add(ab, tensor([1, 2, 3, 4], [2, 2])).dtype).toBe('f32'); // mixed: the widest
        expect(cast(a, 'f16').dtype).toBe('f16'); // explicit casts are not second-guessed
        expect(autocast(null, () => matmul(a, b)).dtype).toBe('f32');
      }),
    );
    const after = matmul(a, b);
    expect(after.dtype).toBe('f32'); // off again outside
    [a, b, after].forEach((t) => t.dispose());
    await gpu!.sync();
    expect(gpu!.memory()).toMatchObject({ buffers: base.buffers, bytes: base.bytes });
  });

  it('gives float32 master weights float32 gradients close to a float32 run', async () => {
    const ref = new ReferenceBackend();
    const grads = async (be: Backend, amp: boolean) => {
      setBackend(be);
      const net = new Net(new Generator(5));
      const { x, y } = problem(4);
      const xs = tensor(x, [4, 3, 6, 6]), ys = tensor(y, [4, 2]);
      const loss = amp ? autocast('f16', () => lossOf(net, xs, ys)) : lossOf(net, xs, ys);
      expect(loss.dtype).toBe('f32');
      backward(loss);
      const out = await Promise.all(net.parameters().map(async (p) => {
        expect(p.grad!.dtype).toBe('f32');
        return Array.from(await p.grad!.data());
      }));
      loss.dispose();
      xs.dispose();
      ys.dispose();
      net.dispose();
      return out;
    };
    const want = await grads(ref, false);
    const got = await grads(gpu!, true);
    got.forEach((g, i) => expect(compare(g, want[i], F16_TOLERANCES.loose), `parameter ${i}`).toBeNull());
  });

  it('trains with a loss scaler along the float32 curve and leaks nothing', async () => {
    const curve = async (be: Backend, amp: boolean) => {
      setBackend(be);
      const base = be.memory();
      const net = new Net(new Generator(9));
      const { x, y } = problem(8);
      const xs = tensor(x, [8, 3, 6, 6]), ys = tensor(y, [8, 2]);
      const opt = new Adam(net.parameters(), { lr: 3e-3 });
      const scaler = new GradScaler({ growthInterval: 10 });
      const losses: number[] = [];
      for (let i = 0; i < 40; i++) {
        const loss = amp ? autocast('f16', () => lossOf(net, xs, ys)) : lossOf(net, xs, ys);
        if (amp) {
          scaler.backward(loss);
          expect(await scaler.step(opt)).toBe(true);
          scaler.update();
        } else {
          backward(loss);
          opt.step();
        }
        opt.zeroGrad();
        losses.push(await loss.item());
        loss.dispose();
      }
      if (amp) expect(scaler.scale).toBe(65536 * 2 ** 4); // 40 clean steps, growth every 10
      opt.dispose();
      net.dispose();
      xs.dispose();
      ys.dispose();
      await be.sync();
      expect(be.memory()).toMatchObject({ buffers: base.buffers, bytes: base.bytes });
      return losses;
    };
    const want = await curve(new ReferenceBackend(), false);
    const got = await curve(gpu!, true);
    expect(got[39]).toBeLessThan(got[0] * 0.5);
    got.forEach((l, i) => expect(Math.abs(l - want[i]), `step ${i}: ${l} vs ${want[i]}`).toBeLessThan(0.02 * want[0]));
  });
});

describe('GradScaler (reference)', () => {
  const setup = () => {
    setBackend(new ReferenceBackend());
    const p = tensor([0.5, -1, 2], [3], { requiresGrad: true });
    const opt = new Adam([p], { lr: 0.1 });
    return { p, opt };
  };

  it('scaled backward then unscale gives the plain gradients', async () => {
    const { p } = setup();
    const scaler = new GradScaler({ initScale: 1024 });
    const f = () => tidy(() => sum(square(p)));
    const l1 = f();
    backward(l1);
    const plain = await p.grad!.array();
    p.grad!.dispose();
    p.grad = null;
    const l2 = f();
    scaler.backward(l2);
    expect(await p.grad!.array()).toEqual(plain.map((g) => g * 1024));
    expect(await scaler.unscale([p])).toBe(true);
    expect(await p.grad!.array()).toEqual(plain);
  });

  it('skips the step on inf or NaN gradients and backs off; grows after the interval', async () => {
    const { p, opt } = setup();
    const scaler = new GradScaler({ initScale: 8, growthInterval: 3 });
    const before = await p.array();
    for (const bad of [Infinity, NaN]) {
      p.grad = tensor([1, bad, 1], [3]);
      expect(await scaler.step(opt)).toBe(false);
      scaler.update();
      expect(await p.array()).toEqual(before); // nothing applied
      expect(opt.stepCount).toBe(0); // as torch: Adam's step count does not move either
      opt.zeroGrad();
    }
    expect(scaler.state()).toEqual({ scale: 2, growthTracker: 0 });
    for (let i = 0; i < 3; i++) {
      p.grad = tensor([2, 2, 2], [3]);
      expect(await scaler.step(opt)).toBe(true);
      scaler.update();
      opt.zeroGrad();
    }
    expect(opt.stepCount).toBe(3);
    expect(scaler.state()).toEqual({ scale: 4, growthTracker: 0 });
    expect(await p.array()).not.toEqual(before);
  });

  it('one scaler over two optimizers: an overflow in either backs off once per update', async () => {
    const { p, opt } = setup();
    const q = tensor([1], [1], { requiresGrad: true });
    const opt2 = new Adam([q], { lr: 0.1 });
    const scaler = new GradScaler({ initScale: 16 });
    p.grad = tensor([1, 1, 1], [3]);
    q.grad = tensor([Infinity], [1]);
    expect(await scaler.step(opt)).toBe(true);
    expect(await scaler.step(opt2)).toBe(false);
    scaler.update();
    expect(scaler.state()).toEqual({ scale: 8, growthTracker: 0 });
    expect(() => scaler.loadState({ scale: -1, growthTracker: 0 })).toThrow(/bad state/);
    scaler.loadState({ scale: 32, growthTracker: 7 });
    expect(scaler.state()).toEqual({ scale: 32, growthTracker: 7 });
  });
});
