// Modules, optimizers and training loops on every backend present.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type Backend, ReferenceBackend } from '@ibq/kernels';
import { testBackends } from '@ibq/kernels/harness';
import {
  Adam, EMA, Generator, type Tensor, backward, clipGradNorm, mean, mul, nn, noGrad, setBackend, square, sub, tensor, tidy,
  lrAfterDrops, warmupPlateauLinear, relu, add, readSafetensors, writeSafetensors, silu,
} from '../src/index.js';

const { backends, destroyAll } = await testBackends();
afterAll(() => destroyAll());

class MLP extends nn.Module {
  readonly fc1: nn.Linear;
  readonly fc2: nn.Linear;
  constructor(g: Generator) {
    super();
    this.fc1 = this.module('fc1', new nn.Linear(4, 16, true, { generator: g }));
    this.fc2 = this.module('fc2', new nn.Linear(16, 1, true, { generator: g }));
  }
  forward(x: Tensor): Tensor {
    return this.fc2.forward(relu(this.fc1.forward(x)));
  }
}

class ConvNet extends nn.Module {
  readonly conv: nn.Conv2d;
  readonly bn: nn.BatchNorm2d;
  readonly norm: nn.GroupNorm;
  readonly head: nn.Linear;
  constructor(g: Generator) {
    super();
    this.conv = this.module('conv', new nn.Conv2d(1, 4, 3, { padding: 1 }, { generator: g }));
    this.bn = this.module('bn', new nn.BatchNorm2d(4));
    this.norm = this.module('norm', new nn.GroupNorm(2, 4, 1e-6));
    this.head = this.module('head', new nn.Linear(4 * 6 * 6, 1, true, { generator: g }));
  }
  forward(x: Tensor): Tensor {
    const h = nn.SiLU.prototype.forward(this.norm.forward(this.bn.forward(this.conv.forward(x))));
    return this.head.forward(h.reshape([x.shape[0], -1]));
  }
}

/** A fixed regression problem: y = sum of the inputs' squares, from a seeded host generator. */
function problem(n: number, dims: number[]): { x: number[]; y: number[] } {
  let s = 12345;
  const rand = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  const per = dims.reduce((a, b) => a * b, 1);
  const x = Array.from({ length: n * per }, rand);
  const y = Array.from({ length: n }, (_, i) => x.slice(i * per, (i + 1) * per).reduce((a, v) => a + v * v, 0) / per);
  return { x, y };
}

async function train(be: Backend, model: MLP | ConvNet, dims: number[], steps: number): Promise<number[]> {
  setBackend(be);
  const { x, y } = problem(16, dims);
  const xs = tensor(x, [16, ...dims]);
  const ys = tensor(y, [16, 1]);
  const opt = new Adam(model.parameters(), { lr: 0.01 });
  const losses: number[] = [];
  for (let i = 0; i < steps; i++) {
    const loss = tidy(() => mean(square(sub(model.forward(xs), ys))));
    backward(loss);
    opt.step();
    opt.zeroGrad();
    losses.push(await loss.item());
    loss.dispose();
  }
  xs.dispose();
  ys.dispose();
  opt.dispose();
  return losses;
}

describe.each(backends.map((b) => [b.name, b] as const))('nn on %s', (_name, be) => {
  it('an MLP reaches a fixed loss and training leaks nothing over 100 steps', async () => {
    setBackend(be);
    const model = new MLP(new Generator(1));
    await train(be, model, [4], 5); // warm pools
    const before = be.memory();
    const losses = await train(be, model, [4], 100);
    await be.sync();
    const after = be.memory();
    expect(after.buffers).toBe(before.buffers);
    expect(after.bytes).toBe(before.bytes);
    expect(losses[99]).toBeLessThan(0.25 * losses[0]);
    expect(losses[99]).toBeLessThan(0.02);
    model.dispose();
  });

  it('a conv net with BatchNorm and GroupNorm trains and matches reference gradients', async () => {
    setBackend(be);
    const model = new ConvNet(new Generator(2));
    const losses = await train(be, model, [1, 6, 6], 30);
    expect(losses[29]).toBeLessThan(0.5 * losses[0]);
    // running statistics moved and the batch counter counted every step
    const rm = await model.bn.runningMean.array();
    expect(rm.some((v) => v !== 0)).toBe(true);
    expect(await model.stateDict().get('bn.num_batches_tracked')!.item()).toBe(30);
    model.dispose();
  });

  it('GroupNorm.forwardSilu is silu(forward) in one op: values and gradients of x, weight and bias', async () => {
    setBackend(be);
    const norm = new nn.GroupNorm(2, 4, 1e-6);
    // weight and bias off 1 and 0, so that a mix-up of either shows
    const host = (data: number[]) => ({ dtype: 'f32' as const, shape: [data.length], data: Float32Array.from(data) });
    norm.loadStateDict({ weight: host([0.5, -1.5, 2, 1]), bias: host([0.3, -0.2, 1, -2]) });
    const { x: xv, y: yv } = problem(3, [4, 5, 5]);
    const upstream = Array.from({ length: xv.length }, (_, i) => yv[i % yv.length] - 0.5 + Math.sin(i));
    const run = async (f: (x: Tensor) => Tensor) => {
      const x = tensor(xv, [3, 4, 5, 5], { requiresGrad: true });
      const up = tensor(upstream, [3, 4, 5, 5]);
      const y = f(x);
      const out = await y.array();
      backward(tidy(() => mean(mul(y, up))));
      const grads = [await x.grad!.array(), await norm.weight.grad!.array(), await norm.bias.grad!.array()];
      for (const p of [norm.weight, norm.bias]) {
        p.grad!.dispose();
        p.grad = null;
      }
      [x, up, y].forEach((t) => t.dispose());
      return [out, ...grads];
    };
    const fused = await run((x) => norm.forwardSilu(x));
    const separate = await run((x) => silu(norm.forward(x)));
    const names = ['y', 'dx', 'dweight', 'dbias'];
    fused.forEach((f, k) => {
      const r = separate[k];
      const err = f.reduce((a, v, j) => a + (v - r[j]) ** 2, 0) / r.reduce((a, v) => a + v * v, 0);
      expect(err, names[k]).toBeLessThan(1e-9);
    });
    norm.dispose();
  });

  it('save then load is bit-exact', async () => {
    setBackend(be);
    const a = new ConvNet(new Generator(8));
    await train(be, a, [1, 6, 6], 2); // running stats and counters move off their initial values
    const file = join(mkdtempSync(join(tmpdir(), 'ibq-nn-')), 'model.safetensors');
    await writeSafetensors(file, await Promise.all([...a.stateDict()].map(async ([k, t]) => [k, await nn.hostTensor(t)] as const)));
    const b = new ConvNet(new Generator(9));
    b.loadStateDict((await readSafetensors(file)).tensors);
    const sa = [...a.stateDict()], sb = b.stateDict();
    for (const [k, t] of sa) expect(Array.from(await sb.get(k)!.data()), k).toEqual(Array.from(await t.data()));
    a.dispose();
    b.dispose();
  });

  it('gradients agree with the reference backend', async () => {
    const ref = new ReferenceBackend();
    const grads = async (b: Backend) => {
      setBackend(b);
      const model = new ConvNet(new Generator(3));
      const { x, y } = problem(4, [1, 6, 6]);
      const loss = tidy(() => mean(square(sub(model.forward(tensor(x, [4, 1, 6, 6])), tensor(y, [4, 1])))));
      backward(loss);
      const out = await Promise.all(model.namedParameters().map(async ([n, p]) => [n, await p.grad!.array()] as const));
      model.dispose();
      return out;
    };
    const mine = await grads(be);
    const theirs = await grads(ref);
    // conv.bias feeds a training-mode BatchNorm, which removes per-channel constants: its true
    // gradient is 0 and both sides hold rounding noise. So each parameter's error is measured
    // against the larger of its own gradient and a small share of the whole model's.
    const sq = (a: readonly number[]) => a.reduce((s, v) => s + v * v, 0);
    const total = theirs.reduce((s, [, r]) => s + sq(r), 0);
    mine.forEach(([n, g], i) => {
      const r = theirs[i][1];
      const num = g.reduce((a, v, j) => a + (v - r[j]) ** 2, 0);
      expect(num / Math.max(sq(r), 1e-6 * total), n).toBeLessThan(1e-6);
    });
  });
});

describe('modules on reference', () => {
  setBackend(new ReferenceBackend());

  it('state dict keys follow PyTorch naming and loading checks every key', () => {
    const model = new ConvNet(new Generator(4));
    const keys = [...model.stateDict().keys()];
    expect(keys).toEqual([
      'conv.weight', 'conv.bias',
      'bn.weight', 'bn.bias', 'bn.running_mean', 'bn.running_var', 'bn.num_batches_tracked',
      'norm.weight', 'norm.bias', 'head.weight', 'head.bias',
    ]);
    const host = (shape: number[]) => ({ dtype: 'f32' as const, shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
    const dict = new Map(keys.map((k) => [k, host([...model.stateDict().get(k)!.shape])] as const));
    dict.delete('conv.bias');
    dict.set('extra.weight', host([1]));
    dict.set('head.weight', host([2, 2]));
    let err: Error | undefined;
    try {
      model.loadStateDict(dict);
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).toMatch(/1 missing keys:\n {2}conv.bias/);
    expect(err?.message).toMatch(/1 unexpected keys:\n {2}extra.weight/);
    expect(err?.message).toMatch(/head.weight: checkpoint \[2,2\] vs model \[1,144\]/);
    const res = model.loadStateDict(dict, { strict: false });
    expect(res.missing).toEqual(['conv.bias']);
    model.dispose();
  });

  it('modules built to be loaded skip the random initialisation', async () => {
    const lin = nn.withoutRandomInit(() => new nn.Linear(3, 2));
    expect(await lin.weight.array()).toEqual([0, 0, 0, 0, 0, 0]);
    const drawn = new nn.Linear(3, 2);
    expect((await drawn.weight.array()).some((v) => v !== 0)).toBe(true);
    lin.dispose();
    drawn.dispose();
  });

  it('Adam and AdamW follow the PyTorch update rule', async () => {
    for (const decoupled of [false, true]) {
      const p = tensor([0.5, -1, 2], [3], { requiresGrad: true });
      const opt = new Adam([p], { lr: 0.1, betas: [0.9, 0.95], weightDecay: 0.1, decoupled });
      const gs = [[0.1, 0.2, -0.3], [-0.5, 0.1, 0.05]];
      let host = [0.5, -1, 2], m = [0, 0, 0], v = [0, 0, 0];
      for (let s = 1; s <= 2; s++) {
        p.grad?.dispose();
        p.grad = tensor(gs[s - 1], [3]);
        opt.step();
        host = host.map((w, i) => {
          let g = gs[s - 1][i];
          if (decoupled) w *= 1 - 0.1 * 0.1;
          else g += 0.1 * w;
          m[i] = 0.9 * m[i] + 0.1 * g;
          v[i] = 0.95 * v[i] + 0.05 * g * g;
          const denom = Math.sqrt(v[i]) / Math.sqrt(1 - 0.95 ** s) + 1e-8;
          return w - (0.1 / (1 - 0.9 ** s)) * (m[i] / denom);
        });
      }
      const got = await p.array();
      got.forEach((w, i) => expect(w).toBeCloseTo(host[i], 5));
      opt.dispose();
      p.dispose();
    }
  });

  it('parameters in noDecay are not decayed; by default every parameter is', async () => {
    const a = tensor([1, 1], [2], { requiresGrad: true });
    const b = tensor([1, 1], [2], { requiresGrad: true });
    const opt = new Adam([a, b], { lr: 0.1, weightDecay: 0.5, decoupled: true, noDecay: [b] });
    a.grad = tensor([0, 0], [2]);
    b.grad = tensor([0, 0], [2]);
    opt.step();
    expect(await a.array()).toEqual([0.95, 0.95].map((v) => expect.closeTo(v, 6)));
    expect(await b.array()).toEqual([1, 1]);
    opt.dispose();
  });

  it('clipGradNorm scales to the max norm and EMA tracks parameters', async () => {
    const p = tensor([3, 4], [2], { requiresGrad: true });
    p.grad = tensor([3, 4], [2]);
    const norm = clipGradNorm([p], 1);
    expect(await norm.item()).toBeCloseTo(5, 5);
    const g = await p.grad.array();
    expect(g[0]).toBeCloseTo(0.6, 5);
    expect(g[1]).toBeCloseTo(0.8, 5);
    const ema = new EMA([['p', p]], 0.9);
    noGrad(() => {
      const q = add(p, 1);
      // shadow moves 10% toward the parameter value
      ema.update();
      q.dispose();
    });
    expect(await ema.shadow.get('p')!.array()).toEqual([3, 4].map((v) => expect.closeTo(v, 5)));
    ema.dispose();
  });

  it('LR schedules: epoch drops and warm-up/plateau/linear decay', () => {
    expect(lrAfterDrops(1e-4, 249, [250, 300])).toBe(1e-4);
    expect(lrAfterDrops(1e-4, 250, [250, 300])).toBeCloseTo(1e-5, 12);
    expect(lrAfterDrops(1e-4, 300, [250, 300])).toBeCloseTo(1e-6, 12);
    const s = { peak: 3e-4, totalSteps: 1000, warmupSteps: 100, warmupStart: 0.005, end: 0.1 };
    expect(warmupPlateauLinear(s, 0)).toBeCloseTo(3e-4 * 0.005, 12);
    expect(warmupPlateauLinear(s, 100)).toBeCloseTo(3e-4, 12);
    expect(warmupPlateauLinear(s, 999)).toBeCloseTo(3e-4 * 0.1, 12);
    expect(mul).toBeDefined();
  });
});
