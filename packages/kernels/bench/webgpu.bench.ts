// Benchmarks of the webgpu backend against @tensorflow/tfjs-backend-webgpu on the same Dawn
// adapter in the same process: matmul, conv2d (forward, data and weight gradients), the cost
// of dispatching a small op and of a readback. One JSON line per figure: op, shape, backend,
// median ms over >= 5 timed runs after warm-up, GFLOP/s, and the ratio to the peer.
//
//   node scripts/run-ts.mjs packages/kernels/bench/webgpu.bench.ts [--runs 5] [--quick]
// (also reachable through `npm run bench:kernels -- --backend webgpu` via runWebGpuBench()).

import { createBackend, runOp, sizeOf, type TensorInfo } from '../src/index.js';
import type { WebGpuBackend } from '../src/backends/webgpu/index.js';

export interface BenchOptions {
  runs?: number;
  /** Smaller shapes, for a smoke run. */
  quick?: boolean;
  /** Skip the tfjs peer. */
  noPeer?: boolean;
  /** Only these ops (matmul, conv2d, conv2d_grad_input, conv2d_grad_weight, dispatch, readback). */
  ops?: string[];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function time(runs: number, once: () => Promise<void>): Promise<number> {
  await once(); // warm-up: pipelines compiled, pools filled
  const ts: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await once();
    ts.push(performance.now() - t0);
  }
  return median(ts);
}

function emit(o: Record<string, unknown>): void {
  console.log(JSON.stringify(o));
}

interface Work {
  op: string;
  shape: string;
  flops: number;
  ours: (be: WebGpuBackend) => { run: () => TensorInfo[]; dispose: () => void };
  peer: (tf: any) => { run: () => any; dispose: () => void };
}

function randomData(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 4294967296 - 0.5;
  }
  return a;
}

function upload(be: WebGpuBackend, shape: number[], seed: number): TensorInfo {
  const n = sizeOf(shape);
  const buffer = be.alloc('f32', n);
  be.write(buffer, randomData(n, seed));
  return { buffer, offset: 0, shape, dtype: 'f32' };
}

function works(quick: boolean): Work[] {
  const list: Work[] = [];
  const mm = (M: number, K: number, N: number) => list.push({
    op: 'matmul', shape: `${M}x${K}x${N}`, flops: 2 * M * N * K,
    ours: (be) => {
      const a = upload(be, [M, K], 1), b = upload(be, [K, N], 2);
      return { run: () => runOp(be, 'matmul', [a, b]), dispose: () => [a, b].forEach((t) => be.release(t.buffer)) };
    },
    peer: (tf) => {
      const a = tf.tensor2d(randomData(M * K, 1), [M, K]), b = tf.tensor2d(randomData(K * N, 2), [K, N]);
      return { run: () => tf.matMul(a, b), dispose: () => tf.dispose([a, b]) };
    },
  });
  if (quick) mm(256, 256, 256);
  else {
    mm(1024, 1024, 1024);
    mm(256, 4096, 1024);
  }
  const [N, C, H, W, O] = quick ? [1, 32, 32, 32, 32] : [4, 128, 64, 64, 128];
  const shape = `N${N} C${C} ${H}x${W} -> O${O}, 3x3 s1 p1`;
  const flops = 2 * N * O * H * W * C * 9;
  const attrs = { stride: [1, 1], padding: [1, 1, 1, 1] };
  list.push({
    op: 'conv2d', shape, flops,
    ours: (be) => {
      const x = upload(be, [N, C, H, W], 3), w = upload(be, [O, C, 3, 3], 4);
      return { run: () => runOp(be, 'conv2d', [x, w], attrs), dispose: () => [x, w].forEach((t) => be.release(t.buffer)) };
    },
    peer: (tf) => {
      // tfjs-webgpu convolves NHWC with HWIO filters: its native layout.
      const x = tf.tensor4d(randomData(N * C * H * W, 3), [N, H, W, C]), w = tf.tensor4d(randomData(O * C * 9, 4), [3, 3, C, O]);
      return { run: () => tf.conv2d(x, w, 1, 'same'), dispose: () => tf.dispose([x, w]) };
    },
  });
  list.push({
    op: 'conv2d_grad_input', shape, flops,
    ours: (be) => {
      const dy = upload(be, [N, O, H, W], 5), w = upload(be, [O, C, 3, 3], 4);
      return { run: () => runOp(be, 'conv2d_grad_input', [dy, w], { ...attrs, inputSize: [H, W] }), dispose: () => [dy, w].forEach((t) => be.release(t.buffer)) };
    },
    peer: (tf) => {
      const dy = tf.tensor4d(randomData(N * O * H * W, 5), [N, H, W, O]), w = tf.tensor4d(randomData(O * C * 9, 4), [3, 3, C, O]);
      return { run: () => tf.conv2dTranspose(dy, w, [N, H, W, C], 1, 'same'), dispose: () => tf.dispose([dy, w]) };
    },
  });
  list.push({
    op: 'conv2d_grad_weight', shape, flops,
    ours: (be) => {
      const x = upload(be, [N, C, H, W], 3), dy = upload(be, [N, O, H, W], 5);
      return { run: () => runOp(be, 'conv2d_grad_weight', [x, dy], { ...attrs, kernelSize: [3, 3] }), dispose: () => [x, dy].forEach((t) => be.release(t.buffer)) };
    },
    peer: (tf) => {
      const x = tf.tensor4d(randomData(N * C * H * W, 3), [N, H, W, C]), dy = tf.tensor4d(randomData(N * O * H * W, 5), [N, H, W, O]);
      // the filter gradient of tf.conv2d, through its registered gradient kernel
      const run = () => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { strides: 1, pad: 'same', dataFormat: 'NHWC', dimRoundingMode: undefined, filterShape: [3, 3, C, O] });
      return { run, dispose: () => tf.dispose([x, dy]) };
    },
  });
  return list;
}

async function loadPeer(): Promise<{ tf: any; sync: () => Promise<void>; close: () => void } | string> {
  try {
    const { create, globals } = await import('webgpu');
    Object.assign(globalThis, globals);
    const gpu = create([]);
    Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
    const tf: any = await import('@tensorflow/tfjs-core');
    await import('@tensorflow/tfjs-backend-webgpu');
    if (!(await tf.setBackend('webgpu'))) return 'tfjs could not start its webgpu backend';
    await tf.ready();
    const be: any = tf.backend();
    const sync = async () => {
      // tfjs keeps a compute pass open: close it, submit, wait.
      be.ensureCommandEncoderReady();
      be.endComputePassEncoder();
      be.submitQueue();
      await be.device.queue.onSubmittedWorkDone();
    };
    const close = () => {
      try { be.device.destroy(); } catch { /* gone */ }
      delete (globalThis as any).navigator;
      void gpu;
    };
    return { tf, sync, close };
  } catch (e) {
    return `tfjs-backend-webgpu unavailable: ${(e as Error).message}`;
  }
}

export async function runWebGpuBench(o: BenchOptions = {}): Promise<void> {
  const runs = Math.max(5, o.runs ?? 5);
  const be = (await createBackend('webgpu', {})) as WebGpuBackend;
  const peer = o.noPeer ? 'disabled' : await loadPeer();
  if (typeof peer === 'string') emit({ note: `peer skipped: ${peer}` });
  const wanted = (op: string) => !o.ops || o.ops.includes(op);
  for (const w of works(o.quick ?? false).filter((w) => wanted(w.op))) {
    const mine = w.ours(be);
    const ms = await time(runs, async () => {
      const outs = mine.run();
      await be.sync();
      outs.forEach((t) => be.release(t.buffer));
    });
    mine.dispose();
    let peerMs: number | undefined;
    if (typeof peer !== 'string') {
      const p = w.peer(peer.tf);
      peerMs = await time(runs, async () => {
        const r = p.run();
        await peer.sync();
        peer.tf.dispose(r);
      });
      p.dispose();
      emit({ op: w.op, shape: w.shape, backend: 'tfjs-webgpu', ms: +peerMs.toFixed(2), gflops: +(w.flops / peerMs / 1e6).toFixed(2) });
    }
    emit({
      op: w.op, shape: w.shape, backend: 'webgpu', ms: +ms.toFixed(2), gflops: +(w.flops / ms / 1e6).toFixed(2),
      ...(peerMs ? { ratio: +(peerMs / ms).toFixed(2), peer: 'tfjs-webgpu' } : {}),
    });
  }

  // Cost of recording and running a small op: 1000 adds of 1024 elements, then one sync.
  const a = upload(be, [1024], 6), b = upload(be, [1024], 7);
  const count = 1000;
  const perOp = await time(runs, async () => {
    const outs: TensorInfo[] = [];
    for (let i = 0; i < count; i++) outs.push(runOp(be, 'add', [a, b])[0]);
    await be.sync();
    outs.forEach((t) => be.release(t.buffer));
  });
  if (wanted('dispatch')) emit({ op: 'dispatch', shape: 'add [1024]', backend: 'webgpu', us: +((perOp / count) * 1000).toFixed(1), submitEvery: be.submitEvery });
  for (const n of wanted('readback') ? [1, 1 << 20] : []) {
    const t = upload(be, [n], 8);
    const ms = await time(Math.max(runs, 20), async () => {
      await be.read(t.buffer, 0, n);
    });
    emit({ op: 'readback', shape: `${n} f32`, backend: 'webgpu', ms: +ms.toFixed(3) });
    be.release(t.buffer);
  }
  [a, b].forEach((t) => be.release(t.buffer));
  be.destroy();
  if (typeof peer !== 'string') peer.close();
}

/** The entry `npm run bench:kernels -- --backend webgpu` calls (bench/kernels.bench.ts). */
export async function run(o: { runs: number; quick: boolean; noPeers: boolean; filter?: string }): Promise<void> {
  await runWebGpuBench({ runs: o.runs, quick: o.quick, noPeer: o.noPeers, ops: o.filter ? o.filter.split(',') : undefined });
}

const isMain = process.argv[1] && /webgpu\.bench\.m?[jt]s$/.test(process.argv[1]);
if (isMain) {
  const args = process.argv.slice(2);
  const i = args.indexOf('--runs');
  const j = args.indexOf('--ops');
  await runWebGpuBench({
    runs: i >= 0 ? Number(args[i + 1]) : 5, quick: args.includes('--quick'), noPeer: args.includes('--no-peer'),
    ops: j >= 0 ? args[j + 1].split(',') : undefined,
  });
  process.exit(0);
}
