// cpu-backend specifics the parity harness does not cover: the build check, memory growth
// and reuse, results independent of the thread count (GEMM tiles and quantizer units are
// taken dynamically), and the quantizer's bounded memory. Norms and attention on larger shapes:
// cpu-norm-attention.test.ts.
import { afterAll, describe, expect, it } from 'vitest';
import { type TensorInfo, getOp, runOp } from '../src/index.js';
import { checkCase, checkGradParity } from '../src/harness/index.js';
import { CpuBackend } from '../src/backends/cpu/index.js';
import { rand, upload } from './cpu-helpers.js';

const one = new CpuBackend({ threads: 1 });
const two = new CpuBackend({ threads: 2 });
await one.init();
await two.init();
afterAll(() => {
  one.destroy();
  two.destroy();
});



const read = (b: CpuBackend, t: TensorInfo) => b.readSync(t.buffer, t.offset, t.shape.reduce((x, y) => x * y, 1));

describe('cpu backend', () => {
  it('says what it runs on', () => {
    const d = two.describe();
    expect(d.threads).toBe(2);
    expect(d.simd).toMatch(/simd128/);
  });

  it('names the build step when the module is missing', async () => {
    const b = new CpuBackend({ wasmPath: '/nonexistent/ibq-cpu.wasm' });
    await expect(b.init()).rejects.toThrow(/npm run build/);
    b.destroy();
  });

  it('grows memory on demand, keeps data across growth, and reuses released regions', async () => {
    const before = two.memory();
    const small = upload(two, rand(1000, 1), [1000]);
    const bytesBefore = two.describe().memoryBytes as number;
    const n = 12 << 20; // 48 MiB: more than the initial memory
    const big = upload(two, rand(n, 2), [n]);
    expect(two.describe().memoryBytes as number).toBeGreaterThan(bytesBefore);
    expect(Array.from(read(two, small))).toEqual(Array.from(rand(1000, 1)));
    const [y] = runOp(two, 'scale', [big], { mul: 2, add: 0 });
    const got = read(two, y);
    const want = rand(n, 2);
    for (const i of [0, 1, n >> 1, n - 1]) expect(got[i]).toBe(Math.fround(want[i] * 2));
    for (const t of [small, big, y]) two.release(t.buffer);
    expect(two.memory()).toEqual(before);
    // Released space is reused: the same allocation does not grow memory again.
    const grown = two.describe().memoryBytes;
    const again = upload(two, rand(n, 3), [n]);
    expect(two.describe().memoryBytes).toBe(grown);
    two.release(again.buffer);
  });

  it('gives bit-identical matmul, conv2d and conv2d gradient results on 1 and 2 threads', () => {
    // Shapes that split into several tiles along M and N (threads take tiles dynamically).
    const A = rand(300 * 200, 4), B = rand(200 * 700, 5);
    const X = rand(3 * 16 * 40 * 42, 6), W = rand(24 * 16 * 3 * 3, 7), DY = rand(3 * 24 * 20 * 21, 11);
    const conv = { stride: [2, 2], padding: [1, 1, 1, 1] };
    const outs = [one, two].map((b) => {
      const a = upload(b, A, [300, 200]), bb = upload(b, B, [200, 700]);
      const x = upload(b, X, [3, 16, 40, 42]), w = upload(b, W, [24, 16, 3, 3]), dy = upload(b, DY, [3, 24, 20, 21]);
      const [mm] = runOp(b, 'matmul', [a, bb]);
      const [cv] = runOp(b, 'conv2d', [x, w], conv);
      const [dx] = runOp(b, 'conv2d_grad_input', [dy, w], { ...conv, inputSize: [40, 42] });
      const [dw] = runOp(b, 'conv2d_grad_weight', [x, dy], { ...conv, kernelSize: [3, 3] });
      // A 1x1 convolution (plain-matrix operands) whose batch-summed weight gradient is one C-sized tile per image.
      const w1 = upload(b, W.subarray(0, 24 * 16), [24, 16, 1, 1]), dy1 = upload(b, rand(3 * 24 * 40 * 42, 12), [3, 24, 40, 42]);
      const pw = { stride: [1, 1], padding: [0, 0, 0, 0] };
      const [dx1] = runOp(b, 'conv2d_grad_input', [dy1, w1], { ...pw, inputSize: [40, 42] });
      const [dw1] = runOp(b, 'conv2d_grad_weight', [x, dy1], { ...pw, kernelSize: [1, 1] });
      const r = [mm, cv, dx, dw, dx1, dw1].map((t) => Array.from(read(b, t)));
      for (const t of [a, bb, x, w, dy, mm, cv, dx, dw, w1, dy1, dx1, dw1]) b.release(t.buffer);
      return r;
    });
    const names = ['matmul', 'conv2d', 'conv2d_grad_input', 'conv2d_grad_weight', '1x1 conv2d_grad_input', '1x1 conv2d_grad_weight'];
    for (let i = 0; i < outs[0].length; i++) expect(outs[1][i], names[i]).toEqual(outs[0][i]);
  });

  it('matches reference on convolutions large enough for several GEMM tiles and threads', async () => {
    const def = getOp('conv2d');
    const cases = [
      { name: '3x3 pad 1', shapes: [[2, 16, 40, 42], [24, 16, 3, 3], [24]], attrs: { stride: [1, 1], padding: [1, 1, 1, 1] } },
      { name: '3x3 stride 2, asymmetric pad', shapes: [[2, 16, 40, 42], [24, 16, 3, 3], [24]], attrs: { stride: [2, 2], padding: [0, 1, 0, 1] } },
      { name: '1x1', shapes: [[2, 40, 30, 30], [24, 40, 1, 1], [24]], attrs: { stride: [1, 1], padding: [0, 0, 0, 0] } },
    ];
    for (const c of cases) {
      expect((await checkCase(two, def, c)).failure, c.name).toBeNull();
      expect((await checkGradParity(two, def, c)).failure, `${c.name} (gradients)`).toBeNull();
    }
  });

  it('gives bit-identical quantizer results on 1 and 2 threads', () => {
    const T = 100, N = 3000, D = 12;
    const Z = rand(T * D, 12, 0.5), E = rand(N * D, 13, 0.5), DZQ = rand(T * D, 14);
    const attrs = { beta: 0.25, temperature: 0.05 };
    const outs = [one, two].map((b) => {
      const z = upload(b, Z, [T, D]), e = upload(b, E, [N, D]), dzq = upload(b, DZQ, [T, D]);
      const dl = upload(b, Float32Array.from([1, 0.1, 0.2, 0.3]), [4]);
      const fwd = runOp(b, 'ibq_quantize', [z, e], attrs);
      const [indices, , , lse, lseT, avgP] = fwd;
      const grads = runOp(b, 'ibq_quantize_grad', [dzq, dl, z, e, indices, lse, lseT, avgP], attrs);
      const r = [...fwd, ...grads].map((t) => Array.from(read(b, t)));
      for (const t of [z, e, dzq, dl, ...fwd, ...grads]) b.release(t.buffer);
      return r;
    });
    for (let i = 0; i < outs[0].length; i++) expect(outs[1][i], `output ${i}`).toEqual(outs[0][i]);
  });

  it('quantizes against a 262144-row codebook without a [tokens x codebook] buffer, whatever the chunk', () => {
    const T = 512, N = 262144, D = 4;
    const z = upload(two, rand(T * D, 8, 0.5), [T, D]);
    const e = upload(two, rand(N * D, 9, 0.5), [N, D]);
    const attrs = { beta: 0.25, temperature: 0.01 };
    const runs = [undefined, 4096].map((chunk) => {
      const outs = runOp(two, 'ibq_quantize', [z, e], chunk ? { ...attrs, chunk } : attrs);
      const [indices, zq, losses, lse, lseT, avgP] = outs;
      const dzq = upload(two, rand(T * D, 10), [T, D]);
      const dl = upload(two, Float32Array.from([1, 0.1, 0.2, 0.3]), [4]);
      const grads = runOp(two, 'ibq_quantize_grad', [dzq, dl, z, e, indices, lse, lseT, avgP], attrs);
      const r = { indices: Array.from(read(two, indices)), losses: Array.from(read(two, losses)), dcodebookSum: Array.from(read(two, grads[1])).reduce((s, v) => s + Math.abs(v), 0) };
      for (const t of [...outs, ...grads, dzq, dl]) two.release(t.buffer);
      void zq;
      return r;
    });
    expect(runs[1].indices).toEqual(runs[0].indices);
    for (let i = 0; i < 4; i++) expect(runs[1].losses[i]).toBeCloseTo(runs[0].losses[i], 4);
    expect(runs[1].dcodebookSum).toBeCloseTo(runs[0].dcodebookSum, 2);
    // Logits for all tokens would be T*N*4 = 512 MiB; the whole wasm memory (inputs, outputs,
    // the per-block logits of 64 tokens) stays well below.
    expect(two.describe().memoryBytes as number).toBeLessThan((T * N * 4) / 2);
    for (const t of [z, e]) two.release(t.buffer);
  });
  it("adam_update: every element equals the reference's float64 update rounded to f32, on the vector path and the tail", async () => {
    const { ReferenceBackend } = await import('../src/backends/reference/index.js');
    const ref = new ReferenceBackend();
    await ref.init();
    const n = 4097; // odd: the f64x2 loop and the scalar tail
    const inputs = [rand(n, 11), rand(n, 12, 0.1), rand(n, 13, 0.01), rand(n, 14, 0.001).map(Math.abs)];
    for (const attrs of [
      { lr: 1e-3, beta1: 0.5, beta2: 0.9, step: 3 },
      { lr: 1e-2, beta1: 0.9, beta2: 0.95, step: 7, weightDecay: 0.05, decoupled: true },
      { lr: 1e-2, beta1: 0.9, beta2: 0.999, step: 1, weightDecay: 0.01 },
    ]) {
      const ours = inputs.map((a) => upload(two, a, [n]));
      const theirs = inputs.map((a) => {
        const buffer = ref.alloc('f32', n);
        ref.write(buffer, a);
        return { buffer, offset: 0, shape: [n], dtype: 'f32' as const };
      });
      runOp(two, 'adam_update', ours, attrs);
      runOp(ref, 'adam_update', theirs, attrs);
      for (const k of [0, 2, 3]) {
        const want = Float32Array.from(await ref.read(theirs[k].buffer, 0, n));
        expect(Array.from(read(two, ours[k])), `${JSON.stringify(attrs)} input ${k}`).toEqual(Array.from(want));
      }
      for (const t of ours) two.release(t.buffer);
    }
    ref.destroy();
  });
});
