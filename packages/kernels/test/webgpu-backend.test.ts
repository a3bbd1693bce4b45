// The webgpu backend's machinery: errors, pool reuse, uniform arena, splitting, 2-D grids, f16.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBackend, runOp, type TensorInfo } from '../src/index.js';
import type { WebGpuBackend } from '../src/backends/webgpu/index.js';
import { CPU_TILE, GPU_TILE, runMatmul } from '../src/backends/webgpu/matmul.js';
import { conv2dForward } from '../src/backends/webgpu/conv.js';
import { ReferenceBackend } from '../src/backends/reference/index.js';
import { compare, F16_TOLERANCES, TOLERANCES } from '../src/harness/tolerance.js';

let be: WebGpuBackend | null = null;
let reason = '';
beforeAll(async () => {
  try {
    be = (await createBackend('webgpu', { submitEvery: 8, f16: true })) as WebGpuBackend;
  } catch (e) {
    reason = (e as Error).message;
    if (process.env.IBQ_REQUIRE_WEBGPU === '1') throw e;
  }
});
afterAll(() => be?.destroy());

const t = (buffer: TensorInfo['buffer'], shape: number[], offset = 0): TensorInfo => ({ buffer, offset, shape, dtype: buffer.dtype });

describe('webgpu backend', () => {
  it('is available or says why, and describes its adapter', () => {
    if (!be) {
      expect(reason).toMatch(/webgpu|adapter|Dawn/i);
      return;
    }
    const d = be.describe();
    expect(d.adapter).toBeTypeOf('object');
    expect((d.limits as Record<string, number>).maxStorageBufferBindingSize).toBeGreaterThan(0);
    expect(Array.isArray(d.features)).toBe(true);
  });

  it('pools released buffers only after their submit completed, and reports memory', async () => {
    if (!be) return;
    const base = be.memory();
    const a = be.alloc('f32', 1000);
    be.write(a, new Float32Array(1000).fill(2));
    const [y] = runOp(be, 'exp', [t(a, [1000])]);
    expect(be.memory().buffers).toBe(base.buffers + 2);
    be.release(y.buffer); // recorded, not yet submitted: must not be handed out again yet
    const b = be.alloc('f32', 1000);
    expect((b as any).gpu).not.toBe((y.buffer as any).gpu);
    await be.sync();
    const c = be.alloc('f32', 1000); // now the pool may return it
    expect(be.memory().pooledBytes).toBeGreaterThanOrEqual(0);
    for (const x of [a, b, c]) be.release(x);
    await be.sync();
    expect(be.memory()).toMatchObject({ buffers: base.buffers, bytes: base.bytes });
  });

  it('splits work over maxStorageBufferBindingSize into windows that fit a binding', async () => {
    if (!be) return;
    const max = be.limits.maxStorageBufferBindingSize;
    if (max > 256 * 2 ** 20) return; // a buffer just over the limit would be too big to test here
    const n = max / 4 + 3 * 1024 * 1024 + 5;
    const x = be.alloc('f32', n);
    runOp(be, 'fill', [], { shape: [n - 7], value: 1.5 }, { outputs: [t(x, [n - 7], 7)] });
    const [y] = runOp(be, 'neg', [t(x, [n - 7], 7)]);
    const [z] = runOp(be, 'add', [y, t(x, [n - 7], 7)]);
    expect(Array.from(await be.read(y.buffer, 0, 2))).toEqual([-1.5, -1.5]);
    expect(Array.from(await be.read(y.buffer, n - 9, 2))).toEqual([-1.5, -1.5]);
    expect(Array.from(await be.read(z.buffer, max / 4 - 1, 3))).toEqual([0, 0, 0]);
    be.release(x);
    be.release(y.buffer);
    be.release(z.buffer);
  });

  it('splits dispatches over more than 65535 workgroups into a 2-D grid', async () => {
    if (!be) return;
    const n = 256 * 70000; // 70000 workgroups of 256
    const x = be.alloc('f32', n);
    runOp(be, 'fill', [], { shape: [n], value: 0.5 }, { outputs: [t(x, [n])] });
    const [y] = runOp(be, 'scale', [t(x, [n])], { mul: 2, add: 1 });
    const tail = await be.read(y.buffer, n - 3, 3);
    expect(Array.from(tail)).toEqual([2, 2, 2]);
    be.release(x);
    be.release(y.buffer);
  });

  it('reports a failed shader as an error instead of printing it', async () => {
    if (!be) return;
    be.dispatch({ name: 'broken', inputs: [], outputs: [{ name: 'Y', type: 'f32' }], uniforms: [], body: '@compute @workgroup_size(1) fn main() { Y[0] = undefined_thing; }' },
      [], [be.scratchBuffer(16)], [], 1);
    await expect(be.sync()).rejects.toThrow(/undefined_thing|error/i);
    // the backend keeps working afterwards
    const b = be.alloc('f32', 4);
    be.write(b, new Float32Array([1, 2, 3, 4]));
    expect(Array.from(await be.read(b))).toEqual([1, 2, 3, 4]);
    be.release(b);
  });

  const host = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.731 + seed) * 1.5);
  const put = (b: { alloc: any; write: any }, shape: number[], seed: number): TensorInfo => {
    const n = shape.reduce((x, y) => x * y, 1);
    const buffer = b.alloc('f32', n);
    b.write(buffer, host(n, seed));
    return { buffer, offset: 0, shape, dtype: 'f32' };
  };

  // Both GEMM variants run here whatever the adapter, so the one real GPUs take is tested on lavapipe too.
  it.each([['workgroup-memory tiles', GPU_TILE], ['direct register blocks', CPU_TILE]] as const)('matmul and conv2d agree with reference: %s', async (_name, tile) => {
    if (!be) return;
    const ref = new ReferenceBackend();
    const cases: [number[], number[], boolean, boolean][] = [[[3, 67, 129], [3, 129, 65], false, false], [[2, 40, 33], [2, 70, 40], true, true]];
    for (const [sa, sb, tA, tB] of cases) {
      const a = put(be, sa, 1), b = put(be, sb, 2);
      const M = tA ? sa[2] : sa[1], N = tB ? sb[1] : sb[2];
      const y = { buffer: be.alloc('f32', sa[0] * M * N), offset: 0, shape: [sa[0], M, N], dtype: 'f32' as const };
      runMatmul(be, a, b, y, tA, tB, tile);
      const want = runOp(ref, 'matmul', [put(ref, sa, 1), put(ref, sb, 2)], { transA: tA, transB: tB })[0];
      expect(compare(Array.from(await be.read(y.buffer)), Array.from(await ref.read(want.buffer)), TOLERANCES.accumulate)).toBeNull();
      [a, b, y].forEach((t) => be!.release(t.buffer));
    }
    const attrs = { stride: [2, 1], padding: [1, 0, 2, 1] };
    const x = put(be, [2, 5, 9, 8], 3), w = put(be, [7, 5, 3, 2], 4), bias = put(be, [7], 5);
    const want = runOp(ref, 'conv2d', [put(ref, [2, 5, 9, 8], 3), put(ref, [7, 5, 3, 2], 4), put(ref, [7], 5)], attrs)[0];
    const y = { buffer: be.alloc('f32', want.buffer.length), offset: 0, shape: [...want.shape], dtype: 'f32' as const };
    conv2dForward(be, x, w, bias, y, attrs, tile);
    expect(compare(Array.from(await be.read(y.buffer)), Array.from(await ref.read(want.buffer)), TOLERANCES.accumulate)).toBeNull();
    [x, w, bias, y].forEach((t) => be!.release(t.buffer));
  });

  // shader-f16: halves in storage, f32 math, the f16 tolerance classes.
  it('runs f16 tensors within the f16 tolerances when shader-f16 is present', async () => {
    if (!be || !be.hasF16) return;
    const ref = new ReferenceBackend();
    const half = (shape: number[], seed: number) => {
      const n = shape.reduce((x, y) => x * y, 1);
      // values representable in f16, so both sides start from the same inputs
      const vals = Float32Array.from(host(n, seed), (v) => Math.round(v * 256) / 256);
      const buffer = be!.alloc('f16', n + 3);
      be!.write(buffer, vals, 1); // odd offset: exercises the half-word write path
      const r = ref.alloc('f32', n);
      ref.write(r, vals);
      return [{ buffer, offset: 1, shape, dtype: 'f16' as const }, { buffer: r, offset: 0, shape, dtype: 'f32' as const }] as const;
    };
    const [a, ra] = half([5, 33], 1), [b, rb] = half([33, 7], 2), [c, rc] = half([7], 3);
    const checks: [string, TensorInfo[], TensorInfo[], Record<string, unknown>, 'elementwise' | 'accumulate' | 'transcendental'][] = [
      ['matmul', [a, b], [ra, rb], {}, 'accumulate'],
      ['softmax', [a], [ra], { axis: 1 }, 'accumulate'],
      ['gelu', [a], [ra], {}, 'transcendental'],
    ];
    for (const [op, ins, refIns, attrs, tol] of checks) {
      const [y] = runOp(be, op, ins, attrs);
      const [want] = runOp(ref, op, refIns, attrs);
      const got = Array.from(await be.readF32(y.buffer, y.offset, want.buffer.length));
      expect(compare(got, Array.from(await ref.read(want.buffer)), F16_TOLERANCES[tol]), op).toBeNull();
      be.release(y.buffer);
    }
    const [ab] = runOp(be, 'matmul', [a, b]);
    const [s] = runOp(be, 'mul', [ab, c]);
    expect(Array.from(await be.readF32(s.buffer)).every(Number.isFinite)).toBe(true);
    [a, b, c, ab, s].forEach((t) => be!.release(t.buffer));
    expect(be.supports('scatter_add_rows', ['i32', 'f16'], {})).toMatch(/f32/);
  });
});
