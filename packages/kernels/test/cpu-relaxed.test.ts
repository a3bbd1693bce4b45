// The cpu backend's relaxed-SIMD build (f32x4.relaxed_madd in the GEMM and attention tiles):
// chosen by `simd: 'relaxed'` (which turns V8's flag on under Node 20), inside the tolerances
// of the ops that use it, and bit-identical on 1 and 2 threads; `simd: 'simd128'` keeps the
// plain build. Runs in its own forked process, so the V8 flag stays here.
import { afterAll, describe, expect, it } from 'vitest';
import { type TensorInfo, getOp, runOp } from '../src/index.js';
import { checkCase, checkGradParity } from '../src/harness/index.js';
import { CpuBackend } from '../src/backends/cpu/index.js';
import { rand, upload } from './cpu-helpers.js';

const plain = new CpuBackend({ threads: 2, simd: 'simd128' });
await plain.init();
const one = new CpuBackend({ threads: 1, simd: 'relaxed' });
const two = new CpuBackend({ threads: 2, simd: 'relaxed' });
await one.init();
await two.init();
afterAll(() => {
  for (const b of [plain, one, two]) b.destroy();
});



describe('cpu backend, relaxed SIMD build', () => {
  it('loads the build that was asked for', () => {
    expect(plain.describe().simd).toBe('wasm simd128');
    expect(String(plain.describe().module)).toMatch(/ibq-cpu\.wasm$/);
    expect(two.describe().simd).toBe('wasm simd128 + relaxed simd');
    expect(String(two.describe().module)).toMatch(/ibq-cpu-relaxed\.wasm$/);
  });

  it('rejects an unknown choice', async () => {
    const b = new CpuBackend({ simd: 'avx' as never });
    await expect(b.init()).rejects.toThrow(/simd must be one of auto, relaxed, simd128/);
    b.destroy();
  });

  it('matches reference on the ops whose tiles use relaxed_madd (matmul, convolutions, attention)', async () => {
    const failures: string[] = [];
    for (const op of ['matmul', 'conv2d', 'conv2d_grad_input', 'conv2d_grad_weight', 'attention']) {
      const def = getOp(op);
      for (const c of def.cases) {
        const { failure } = await checkCase(two, def, c);
        if (failure) failures.push(`${op} ${c.name}: ${failure}`);
        if (def.vjp && !c.noGrad) {
          const g = await checkGradParity(two, def, c);
          if (g.failure) failures.push(`${op} ${c.name} (gradient): ${g.failure}`);
        }
      }
    }
    expect(failures).toEqual([]);
  });

  it('gives bit-identical results on 1 and 2 threads', () => {
    const A = rand(300 * 200, 1), B = rand(200 * 700, 2);
    const X = rand(3 * 24 * 30 * 27, 3), W = rand(40 * 24 * 9, 4, 0.2), DY = rand(3 * 40 * 30 * 27, 5);
    const Q = rand(2 * 4 * 80 * 32, 6), K = rand(2 * 4 * 90 * 32, 7), V = rand(2 * 4 * 90 * 32, 8);
    const attrs = { stride: [1, 1], padding: [1, 1, 1, 1] };
    const outs = [one, two].map((b) => {
      const a = upload(b, A, [300, 200]), bb = upload(b, B, [200, 700]);
      const x = upload(b, X, [3, 24, 30, 27]), w = upload(b, W, [40, 24, 3, 3]), dy = upload(b, DY, [3, 40, 30, 27]);
      const q = upload(b, Q, [2, 4, 80, 32]), k = upload(b, K, [2, 4, 90, 32]), v = upload(b, V, [2, 4, 90, 32]);
      const results = [
        runOp(b, 'matmul', [a, bb])[0],
        runOp(b, 'conv2d', [x, w], attrs)[0],
        runOp(b, 'conv2d_grad_input', [dy, w], { ...attrs, inputSize: [30, 27] })[0],
        runOp(b, 'conv2d_grad_weight', [x, dy], { ...attrs, kernelSize: [3, 3] })[0],
        runOp(b, 'attention', [q, k, v], { causal: true })[0],
      ];
      const r = results.map((t) => Array.from(b.readSync(t.buffer)));
      for (const t of [a, bb, x, w, dy, q, k, v, ...results]) b.release(t.buffer);
      return r;
    });
    for (let i = 0; i < outs[0].length; i++) expect(outs[1][i], `output ${i}`).toEqual(outs[0][i]);
  });
});
