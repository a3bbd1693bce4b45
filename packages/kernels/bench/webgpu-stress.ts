// Stress run for the webgpu backend: training-like steps (a chain of dispatches forward and
// backward, a scalar readback per step, buffers released every step) interleaved with heavy
// JS allocation that keeps the garbage collector busy. Run by `npm run stress:webgpu`
// (scripts/stress-webgpu.mjs bundles this file and runs it many times in fresh processes).
//
//   --steps N      training-like steps (default 500)
//   --repro-gc     instead, run the same pattern on raw Dawn WITHOUT holding the object that
//                  create() returned: shows the crash this backend avoids (see README).

import { createBackend, getKernel, runOp, type Backend, type TensorInfo } from '../src/index.js';

const args = process.argv.slice(2);
const steps = Number(args[args.indexOf('--steps') + 1]) || 500;

/** Allocates short- and medium-lived garbage: objects, strings, typed arrays. */
let retained: unknown[] = [];
function churn(step: number): number {
  let sink = 0;
  for (let i = 0; i < 3000; i++) {
    const o = { i, s: `step-${step}-${i}`.repeat(4), a: new Float64Array(32) };
    o.a[i % 32] = i;
    sink += o.s.length + o.a[0];
    if (i % 8 === 0) retained.push(o);
  }
  if (retained.length > 60000) retained = [];
  return sink;
}

async function stressBackend(): Promise<void> {
  const be: Backend = await createBackend('webgpu', { submitEvery: 16 });
  const base = be.memory();
  const up = (shape: number[], f: (i: number) => number): TensorInfo => {
    const n = shape.reduce((a, b) => a * b, 1);
    const buf = be.alloc('f32', n);
    be.write(buf, Float32Array.from({ length: n }, (_, i) => f(i)));
    return { buffer: buf, offset: 0, shape, dtype: 'f32' };
  };
  const hasMatmul = !!getKernel('matmul', 'webgpu');
  const hasSum = !!getKernel('sum', 'webgpu');
  const D = 128, B = 64;
  let w = up([D, D], (i) => Math.sin(i) * 0.05);
  const x = up([B, D], (i) => Math.cos(i * 0.37));
  const target = up([B, D], (i) => Math.sin(i * 0.11) * 0.5);
  let lastLoss = NaN;
  let sink = 0;
  const t0 = performance.now();
  for (let step = 0; step < steps; step++) {
    const tmp: TensorInfo[] = [];
    const run = (op: string, ins: TensorInfo[], attrs = {}) => {
      const [y] = runOp(be, op, ins, attrs);
      tmp.push(y);
      return y;
    };
    // forward: h = tanh(x @ w) (or x * w-row broadcast without matmul), loss = (h - t)^2
    const wRow: TensorInfo = { buffer: w.buffer, offset: 0, shape: [1, D], dtype: 'f32' };
    const pre = hasMatmul ? run('matmul', [x, w]) : run('mul', [x, wRow]);
    const h = run('tanh', [pre]);
    const diff = run('sub', [h, target]);
    const sq = run('square', [diff]);
    const loss = hasSum ? run('sum', [sq], { axes: [0, 1] }) : sq;
    // backward by hand: dpre = 2 diff (1 - h^2); dw = x^T dpre
    const dh = run('scale', [diff], { mul: 2, add: 0 });
    const dpre = run('mul', [dh, run('scale', [run('square', [h])], { mul: -1, add: 1 })]);
    const dw = hasMatmul ? run('matmul', [x, dpre], { transA: true }) : run('mul', [dpre, dpre]);
    const upd = hasMatmul ? run('scale', [dw], { mul: -1e-3, add: 0 }) : null;
    const neww = upd ? runOp(be, 'add', [w, upd])[0] : w;
    sink += churn(step);
    // the logged scalar
    const v = await be.read(loss.buffer, loss.offset, 1);
    lastLoss = v[0];
    if (!Number.isFinite(lastLoss)) throw new Error(`step ${step}: loss is ${lastLoss}`);
    for (const t of tmp) be.release(t.buffer);
    if (neww !== w) {
      be.release(w.buffer);
      w = neww;
    }
  }
  await be.sync();
  for (const t of [w, x, target]) be.release(t.buffer);
  await be.sync();
  const mem = be.memory();
  const ms = performance.now() - t0;
  be.destroy();
  if (mem.buffers !== base.buffers || mem.bytes !== base.bytes) throw new Error(`leak: ${JSON.stringify(mem)} vs ${JSON.stringify(base)}`);
  console.log(JSON.stringify({ stress: 'webgpu', steps, ms: Math.round(ms), lastLoss, matmul: hasMatmul, sum: hasSum, sink: sink > 0 }));
}

/** The failing pattern on raw Dawn: the GPU object from create() is unreachable after setup. */
async function reproGc(): Promise<void> {
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  const device = await (async () => {
    const gpu = create([]); // only this closure refers to it: collectable once setup returns
    const adapter = await gpu.requestAdapter();
    return adapter!.requestDevice();
  })();
  const code = `@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) { if (g.x < arrayLength(&a)) { a[g.x] = a[g.x] * 0.999 + 1.0; } }`;
  const pipe = device.createComputePipeline({ layout: 'auto', compute: { module: device.createShaderModule({ code }), entryPoint: 'main' } });
  const buf = device.createBuffer({ size: 1 << 18, usage: 0x80 | 0x4 });
  for (let step = 0; step < steps; step++) {
    const rb = device.createBuffer({ size: 16, usage: 0x1 | 0x8 });
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipe);
    pass.setBindGroup(0, device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: buf } }] }));
    for (let k = 0; k < 16; k++) pass.dispatchWorkgroups(1024);
    pass.end();
    enc.copyBufferToBuffer(buf, 0, rb, 0, 16);
    device.queue.submit([enc.finish()]);
    churn(step);
    await rb.mapAsync(0x1);
    rb.unmap();
    rb.destroy();
  }
  device.destroy();
  console.log(JSON.stringify({ stress: 'repro-gc', steps, survived: true }));
}

await (args.includes('--repro-gc') ? reproGc() : stressBackend());
