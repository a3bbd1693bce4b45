// The cpu backend's two convolution paths: every stride-1 3x3 case of the op table through
// each algorithm (direct implicit GEMM, Winograd F(2x2,3x3), F(4x4,3x3)) against reference,
// values and gradients; which path 'auto' takes; chunked transforms; results bit-identical on
// 1 and 2 threads.
import { afterAll, describe, expect, it } from 'vitest';
import { type OpCase, type TensorInfo, getOp, runOp } from '../src/index.js';
import { checkCase, checkGradParity } from '../src/harness/index.js';
import { CpuBackend } from '../src/backends/cpu/index.js';
import { rand, upload } from './cpu-helpers.js';
import { chooseConv } from '../src/backends/cpu/kernels/conv.js';

const one = new CpuBackend({ threads: 1 });
const two = new CpuBackend({ threads: 2 });
await one.init();
await two.init();
afterAll(() => {
  one.destroy();
  two.destroy();
});

const ALGORITHMS = ['direct', 'winograd2', 'winograd4'] as const;



const read = (b: CpuBackend, t: TensorInfo) => Array.from(b.readSync(t.buffer, t.offset, t.shape.reduce((x, y) => x * y, 1)));

/** Runs fn with the backend's convolution algorithm (and chunk size) set, restoring them after. */
async function withAlgorithm<T>(b: CpuBackend, algo: CpuBackend['convAlgorithm'], fn: () => Promise<T> | T, chunkBytes?: number): Promise<T> {
  const [prev, prevChunk] = [b.convAlgorithm, b.winogradChunkBytes];
  b.convAlgorithm = algo;
  if (chunkBytes) b.winogradChunkBytes = chunkBytes;
  try {
    return await fn();
  } finally {
    b.convAlgorithm = prev;
    b.winogradChunkBytes = prevChunk;
  }
}

const isWinogradShape = (c: OpCase, w: number[]) => w[2] === 3 && w[3] === 3 && ((c.attrs?.stride as number[] | undefined) ?? [1, 1]).every((s) => s === 1);

/** Every op-table case of the three convolutions whose kernel is 3x3 at stride 1. */
function stride1Cases(op: string): OpCase[] {
  return getOp(op).cases.filter((c) => {
    const k = op === 'conv2d' ? c.shapes[1] : op === 'conv2d_grad_input' ? c.shapes[1] : [0, 0, ...(c.attrs!.kernelSize as number[])];
    return isWinogradShape(c, k);
  });
}

describe('cpu convolutions: direct and Winograd paths', () => {
  for (const op of ['conv2d', 'conv2d_grad_input', 'conv2d_grad_weight']) {
    it(`${op}: every stride-1 3x3 op-table case matches reference through each algorithm`, async () => {
      const cases = stride1Cases(op);
      expect(cases.length).toBeGreaterThanOrEqual(3);
      const failures: string[] = [];
      for (const algo of ALGORITHMS) {
        await withAlgorithm(two, algo, async () => {
          for (const c of cases) {
            const { failure } = await checkCase(two, getOp(op), c);
            if (failure) failures.push(`${algo} ${c.name}: ${failure}`);
            if (op === 'conv2d') {
              const g = await checkGradParity(two, getOp(op), c);
              if (g.failure) failures.push(`${algo} ${c.name} (gradients): ${g.failure}`);
            }
          }
        });
      }
      expect(failures).toEqual([]);
    });
  }

  it("'auto' takes F(4x4) at a 4x4 tile per 32 channels of an image, else F(2x2) at a 2x2 tile per 32, else direct, whatever the batch; the conv option forces Winograd only where it applies", async () => {
    const geometry = (x: number[], w: number[], pad: number[]) => ({
      C: x[1], H: x[2], W: x[3], KH: w[2], KW: w[3], sh: 1, sw: 1, pt: pad[0], pl: pad[2],
      OH: x[2] + pad[0] + pad[1] - w[2] + 1, OW: x[3] + pad[2] + pad[3] - w[3] + 1, O: w[0],
    });
    const byName = new Map(getOp('conv2d').cases.map((c) => [c.name, c]));
    const expected = { winograd: 'winograd4', 'winograd-pad-0210': 'winograd4', regular: 'direct', 'size-1': 'direct' } as const;
    for (const [name, algo] of Object.entries(expected)) {
      const c = byName.get(name)!;
      const pad = c.attrs!.padding as number[];
      for (const kind of ['forward', 'input', 'weight'] as const) {
        expect(chooseConv(two, geometry(c.shapes[0], c.shapes[1], pad), pad, kind), `${name} ${kind}`).toBe(algo);
      }
    }
    // The tokenizers' layers (channels, size): config S's and the official model's.
    const layer = (C: number, H: number) => chooseConv(two, geometry([1, C, H, H], [C, C, 3, 3], [1, 1, 1, 1]), [1, 1, 1, 1], 'forward');
    expect([layer(64, 32), layer(128, 16), layer(128, 8), layer(128, 256), layer(512, 16), layer(512, 8), layer(512, 4), layer(64, 4)]).toEqual(
      ['winograd4', 'winograd4', 'winograd4', 'winograd4', 'winograd4', 'winograd2', 'direct', 'winograd2']);
    // Too few channels (the RGB side of a tokenizer) stays direct.
    expect(chooseConv(two, geometry([16, 3, 32, 32], [64, 3, 3, 3], [1, 1, 1, 1]), [1, 1, 1, 1], 'forward')).toBe('direct');
    const g = geometry([4, 32, 8, 8], [32, 32, 3, 3], [1, 1, 1, 1]);
    await withAlgorithm(two, 'winograd4', () => {
      expect(chooseConv(two, g, [1, 1, 1, 1], 'forward')).toBe('winograd4');
      // A strided or 1x1 kernel, or a data gradient with padding > 2, stays direct even when forced.
      expect(chooseConv(two, { ...g, sh: 2 }, [1, 1, 1, 1], 'forward')).toBe('direct');
      expect(chooseConv(two, { ...g, KH: 1, KW: 1 }, [0, 0, 0, 0], 'forward')).toBe('direct');
      expect(chooseConv(two, geometry([4, 32, 20, 20], [32, 32, 3, 3], [3, 3, 3, 3]), [3, 3, 3, 3], 'input')).toBe('direct');
    });
  });

  // Larger than the op-table cases: several GEMM tiles, partial tiles at both edges, tile rows
  // in several chunks (a small chunk budget), and both threads taking transform jobs.
  const X = rand(3 * 24 * 30 * 27, 1), W = rand(40 * 24 * 9, 2, 0.2), B = rand(40, 3), DY = rand(3 * 40 * 30 * 27, 4);
  const attrs = { stride: [1, 1], padding: [1, 1, 1, 1] };
  const run = (b: CpuBackend) => {
    const x = upload(b, X, [3, 24, 30, 27]), w = upload(b, W, [40, 24, 3, 3]), bias = upload(b, B, [40]), dy = upload(b, DY, [3, 40, 30, 27]);
    const [y] = runOp(b, 'conv2d', [x, w, bias], attrs);
    const [dx] = runOp(b, 'conv2d_grad_input', [dy, w], { ...attrs, inputSize: [30, 27] });
    const [dw] = runOp(b, 'conv2d_grad_weight', [x, dy], { ...attrs, kernelSize: [3, 3] });
    const out = [y, dx, dw].map((t) => read(b, t));
    for (const t of [x, w, bias, dy, y, dx, dw]) b.release(t.buffer);
    return out;
  };

  for (const algo of ['winograd2', 'winograd4'] as const) {
    it(`${algo}: bit-identical on 1 and 2 threads, whole and in chunks of tile rows; chunks agree with the whole`, async () => {
      const chunk = 200_000; // a few tile rows per chunk
      const whole = await withAlgorithm(two, algo, () => run(two));
      const parts1 = await withAlgorithm(one, algo, () => run(one), chunk);
      const parts2 = await withAlgorithm(two, algo, () => run(two), chunk);
      const whole1 = await withAlgorithm(one, algo, () => run(one));
      const names = ['conv2d', 'conv2d_grad_input', 'conv2d_grad_weight'];
      for (let i = 0; i < 3; i++) {
        expect(whole1[i], `${names[i]} 1 vs 2 threads`).toEqual(whole[i]);
        expect(parts1[i], `${names[i]} chunked, 1 vs 2 threads`).toEqual(parts2[i]);
      }
      // Chunks cut only the forward's and data gradient's tile rows: the same arithmetic.
      expect(parts2[0]).toEqual(whole[0]);
      expect(parts2[1]).toEqual(whole[1]);
      // The weight gradient sums over chunks: another order of the same sum.
      const direct = await withAlgorithm(two, 'direct', () => run(two));
      for (let i = 0; i < 3; i++) {
        let num = 0, den = 0;
        for (let k = 0; k < direct[i].length; k++) {
          num += (parts2[i][k] - direct[i][k]) ** 2;
          den += direct[i][k] ** 2;
        }
        expect(num / den, `${names[i]} chunked vs direct`).toBeLessThan(1e-9);
      }
    });
  }

  for (const algo of ['winograd2', 'winograd4'] as const) {
    it(`${algo}: a batch large enough for the per-chunk pipeline gives each image the bits it gets alone (in phases)`, async () => {
      // 8 images of 30x27: enough tile rows for several pipeline chunks per thread; one image
      // alone has too few and runs in phases. Tiles do not interact, so every output must agree.
      const n = 8, hw = 30 * 27;
      const Xb = rand(n * 24 * hw, 21), Wb = rand(40 * 24 * 9, 22, 0.2), Bb = rand(40, 23);
      const conv = (xs: Float32Array, batch: number) => withAlgorithm(two, algo, () => {
        const x = upload(two, xs, [batch, 24, 30, 27]), w = upload(two, Wb, [40, 24, 3, 3]), bias = upload(two, Bb, [40]);
        const [y] = runOp(two, 'conv2d', [x, w, bias], attrs);
        const out = read(two, y);
        for (const t of [x, w, bias, y]) two.release(t.buffer);
        return out;
      });
      const whole = await conv(Xb, n);
      for (let i = 0; i < n; i++) {
        const alone = await conv(Xb.subarray(i * 24 * hw, (i + 1) * 24 * hw), 1);
        expect(whole.slice(i * 40 * hw, (i + 1) * 40 * hw), `image ${i}`).toEqual(alone);
      }
    });
  }

  for (const algo of ['winograd2', 'winograd4'] as const) {
    it(`${algo}: the weight gradient over many chunks of tile rows is bit-identical on 1 and 2 threads and agrees with the direct path`, async () => {
      // 4 images of 64x64, 24 -> 40 channels: many chunks and GEMM tiles.
      const Xw = rand(4 * 24 * 64 * 64, 31), DYw = rand(4 * 40 * 64 * 64, 32);
      const wgrad = (b: CpuBackend, a: CpuBackend['convAlgorithm']) => withAlgorithm(b, a, () => {
        const x = upload(b, Xw, [4, 24, 64, 64]), dy = upload(b, DYw, [4, 40, 64, 64]);
        const [dw] = runOp(b, 'conv2d_grad_weight', [x, dy], { ...attrs, kernelSize: [3, 3] });
        const out = read(b, dw);
        for (const t of [x, dy, dw]) b.release(t.buffer);
        return out;
      });
      const [w1, w2, direct] = [await wgrad(one, algo), await wgrad(two, algo), await wgrad(two, 'direct')];
      expect(w2).toEqual(w1);
      let num = 0, den = 0;
      for (let k = 0; k < direct.length; k++) {
        num += (w2[k] - direct[k]) ** 2;
        den += direct[k] ** 2;
      }
      expect(num / den).toBeLessThan(1e-9);
    });
  }

  it('takes the Winograd path when forced on a layer of the tokenizer, and matches reference there', async () => {
    const c = { name: 'tokenizer layer', shapes: [[2, 32, 16, 16], [32, 32, 3, 3], [32]], attrs };
    for (const algo of ['winograd4', 'direct'] as const) {
      await withAlgorithm(two, algo, async () => {
        expect((await checkCase(two, getOp('conv2d'), c)).failure, algo).toBeNull();
        expect((await checkGradParity(two, getOp('conv2d'), c)).failure, `${algo} gradients`).toBeNull();
      });
    }
    // auto takes F(4x4) here (16 tiles of 4x4 per image for 32 channels): bit-identical to it, and not to the others.
    const w = rand(32 * 32 * 9, 5, 0.2);
    const outs: number[][] = [];
    for (const algo of ['auto', 'winograd4', 'winograd2', 'direct'] as const) {
      outs.push(await withAlgorithm(two, algo, () => {
        const x = upload(two, X.subarray(0, 2 * 32 * 16 * 16), [2, 32, 16, 16]), wt = upload(two, w, [32, 32, 3, 3]);
        const [y] = runOp(two, 'conv2d', [x, wt], attrs);
        const out = read(two, y);
        for (const t of [x, wt, y]) two.release(t.buffer);
        return out;
      }));
    }
    const [auto, f4, f2, direct] = outs;
    expect(auto).toEqual(f4);
    expect(auto).not.toEqual(f2);
    expect(auto).not.toEqual(direct);
  });
});
