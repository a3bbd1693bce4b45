// The cpu backend's figures, each followed by the peers on the same work:
//   matmul 1024x1024x1024 and 256x4096x1024 (M x K x N);
//   conv2d 3x3 stride 1 pad 1, batch 4, 128 -> 128 channels, 64x64: forward, data gradient,
//   weight gradient;
//   the stride-1 3x3 convolutions of the tokenizers (config S's layers, and the official
//   model's): forward, data and weight gradient through each algorithm of the cpu backend
//   (direct implicit GEMM, Winograd F(2x2,3x3), F(4x4,3x3)), timed interleaved, with the
//   GFLOP/s-equivalent (the direct convolution's flop count over the time), the ratio to the
//   direct path, the normalised MSE against the reference backend (on at most 2 images of at
//   most 32x32 with the layer's channels),
//   and which algorithm 'auto' takes;
//   ibq_quantize forward, and forward+backward, for 1024 tokens x 1024 codes x 64 dims (config
//   S's quantizer), 4096 tokens x 16384 codes x 256 dims and 1024 tokens x 262144 codes x 256
//   dims (with peak memory). The quantizer's peers run its forward core: matmul + softmax + argmax;
//   attention, forward and forward+backward: the IBQ mid-block shape (one head of 512 over
//   16x16 tokens) and an AR shape (16 causal heads of 64 over 256 tokens); ONNX Runtime runs
//   the forward as MatMul, Mul, (Add of a causal mask), Softmax, MatMul;
//   group_norm (IBQ: 32 groups), layer_norm and rms_norm, forward and forward+backward;
//   group_norm_silu on config S's 32px and the official model's 256px activations against
//   group_norm then silu (and backward: silu_grad then group_norm_grad), timed interleaved;
//   ONNX Runtime's LayerNormalization is layer_norm's peer (opset 17 has no GroupNorm/RMSNorm).

import { availableParallelism } from 'node:os';
import { type Backend, type TensorInfo, createBackend, runOp } from '../src/index.js';
import type { CpuBackend } from '../src/backends/cpu/index.js';
import { chooseConv } from '../src/backends/cpu/kernels/conv.js';
import { ReferenceBackend } from '../src/backends/reference/index.js';
import { type BenchOptions, type Figure, emit, randomArray, time, timeInterleaved } from './common.js';
import { ORT_NODE, ORT_WEB, type PeerWork, type Runner, TFJS_WASM, prepareOrtNode, prepareOrtWeb, tfjsWasm } from './peers.js';

let backend: Backend;
let options: BenchOptions;
let threads: number;

function upload(data: Float32Array, shape: number[]): TensorInfo {
  const buffer = backend.alloc('f32', data.length);
  backend.write(buffer, data);
  return { buffer, offset: 0, shape, dtype: 'f32' };
}

function releaseAll(ts: TensorInfo[]): void {
  for (const t of ts) backend.release(t.buffer);
}

/** Times `fn` and prints our figure; returns our ms for the peers' ratios. */
async function ours(op: string, shape: Record<string, number | string>, flops: number, fn: () => void,
  extra: () => Record<string, unknown> = () => ({})): Promise<number> {
  const ms = await time(fn, options.runs);
  const f: Figure = { op, shape, backend: 'cpu', threads, ms, runs: options.runs, ...(flops > 0 ? { gflops: flops / ms / 1e6 } : {}), ...extra() };
  emit(f);
  return ms;
}

async function peer(name: string, peerThreads: number, op: string, shape: Record<string, number | string>, flops: number, ourMs: number,
  prepared: Runner | string, note?: string): Promise<void> {
  if (options.noPeers) return;
  if (typeof prepared === 'string') {
    process.stderr.write(`[bench] peer ${name} skipped for ${op}: ${prepared}\n`);
    return;
  }
  try {
    const ms = await time(prepared, options.runs);
    emit({ op, shape, backend: 'cpu', threads: peerThreads, ms, runs: options.runs, ...(flops > 0 ? { gflops: flops / ms / 1e6 } : {}), peer: name, ratio: ms / ourMs, ...(note ? { note } : {}) });
  } catch (e) {
    process.stderr.write(`[bench] peer ${name} failed for ${op}: ${(e as Error).message}\n`);
  }
}

async function ortPeers(op: string, shape: Record<string, number | string>, flops: number, ourMs: number, work: PeerWork, note?: string): Promise<void> {
  if (options.noPeers) return;
  await peer(ORT_WEB, threads, op, shape, flops, ourMs, await prepareOrtWeb(work, threads), note);
  await peer(ORT_NODE, threads, op, shape, flops, ourMs, await prepareOrtNode(work, threads), note);
}

async function tfjsPeer(op: string, shape: Record<string, number | string>, flops: number, ourMs: number,
  make: (tf: any) => Runner, note?: string): Promise<void> { // eslint-disable-line @typescript-eslint/no-explicit-any
  if (options.noPeers) return;
  const tf = await tfjsWasm();
  let runner: Runner | string;
  try {
    runner = typeof tf === 'string' ? tf : make(tf);
  } catch (e) {
    runner = `tfjs-backend-wasm: ${(e as Error).message}`;
  }
  await peer(TFJS_WASM, 1, op, shape, flops, ourMs, runner, note);
}

async function benchMatmul(M: number, K: number, N: number): Promise<void> {
  const shape = { M, K, N };
  const flops = 2 * M * K * N;
  const A = randomArray(M * K, 1), B = randomArray(K * N, 2);
  const a = upload(A, [M, K]), b = upload(B, [K, N]);
  const ms = await ours('matmul', shape, flops, () => releaseAll(runOp(backend, 'matmul', [a, b])));
  releaseAll([a, b]);
  await ortPeers('matmul', shape, flops, ms, {
    nodes: [{ op: 'MatMul', inputs: ['a', 'b'], outputs: ['y'] }],
    inputs: [['a', [M, K], A], ['b', [K, N], B]],
    outputs: [['y', [M, N]]],
  });
  await tfjsPeer('matmul', shape, flops, ms, (tf) => {
    const ta = tf.tensor2d(A, [M, K]), tb = tf.tensor2d(B, [K, N]);
    return async () => {
      const y = tf.matMul(ta, tb);
      y.dataSync();
      y.dispose();
    };
  });
}

async function benchConv(N: number, C: number, O: number, H: number, W: number): Promise<void> {
  const KH = 3, KW = 3;
  const attrs = { stride: [1, 1], padding: [1, 1, 1, 1] };
  const shape = { N, C, O, H, W, KH, KW, stride: 1, pad: 1 };
  const flops = 2 * N * O * H * W * C * KH * KW;
  const X = randomArray(N * C * H * W, 3), Wt = randomArray(O * C * KH * KW, 4, 0.05), Bias = randomArray(O, 5), DY = randomArray(N * O * H * W, 6);
  const x = upload(X, [N, C, H, W]), w = upload(Wt, [O, C, KH, KW]), bias = upload(Bias, [O]), dy = upload(DY, [N, O, H, W]);

  const fwd = await ours('conv2d', shape, flops, () => releaseAll(runOp(backend, 'conv2d', [x, w, bias], attrs)));
  await ortPeers('conv2d', shape, flops, fwd, {
    nodes: [{ op: 'Conv', inputs: ['x', 'w', 'b'], outputs: ['y'], ints: { pads: [1, 1, 1, 1], strides: [1, 1], kernel_shape: [KH, KW] } }],
    inputs: [['x', [N, C, H, W], X], ['w', [O, C, KH, KW], Wt], ['b', [O], Bias]],
    outputs: [['y', [N, O, H, W]]],
  });
  // tfjs-backend-wasm convolves NHWC only: the same work on transposed data.
  await tfjsPeer('conv2d', shape, flops, fwd, (tf) => {
    const tx = tf.transpose(tf.tensor4d(X, [N, C, H, W]), [0, 2, 3, 1]), tw = tf.transpose(tf.tensor4d(Wt, [O, C, KH, KW]), [2, 3, 1, 0]);
    const tb = tf.tensor1d(Bias);
    return async () => {
      const y = tf.add(tf.conv2d(tx, tw, 1, 'same'), tb);
      y.dataSync();
      y.dispose();
    };
  }, 'NHWC');

  const dataGrad = await ours('conv2d_grad_input', shape, flops, () =>
    releaseAll(runOp(backend, 'conv2d_grad_input', [dy, w], { ...attrs, inputSize: [H, W] })));
  await ortPeers('conv2d_grad_input', shape, flops, dataGrad, {
    nodes: [{ op: 'ConvTranspose', inputs: ['dy', 'w'], outputs: ['dx'], ints: { pads: [1, 1, 1, 1], strides: [1, 1], kernel_shape: [KH, KW] } }],
    inputs: [['dy', [N, O, H, W], DY], ['w', [O, C, KH, KW], Wt]],
    outputs: [['dx', [N, C, H, W]]],
  }, 'ConvTranspose');
  await tfjsPeer('conv2d_grad_input', shape, flops, dataGrad, (tf) => {
    const tdy = tf.transpose(tf.tensor4d(DY, [N, O, H, W]), [0, 2, 3, 1]), tw = tf.transpose(tf.tensor4d(Wt, [O, C, KH, KW]), [2, 3, 1, 0]);
    return async () => {
      const dx = tf.conv2dTranspose(tdy, tw, [N, H, W, C], 1, 'same');
      dx.dataSync();
      dx.dispose();
    };
  }, 'NHWC conv2dTranspose');

  const weightGrad = await ours('conv2d_grad_weight', shape, flops, () =>
    releaseAll(runOp(backend, 'conv2d_grad_weight', [x, dy], { ...attrs, kernelSize: [KH, KW] })));
  // The weight gradient as one forward Conv over batch-transposed tensors (transposes done
  // once, outside the timing): dw^T [C, O, KH, KW] = Conv(x^T [C, N, H, W], dy^T [O, N, H, W]).
  const xT = permute4(X, [N, C, H, W], [1, 0, 2, 3]), dyT = permute4(DY, [N, O, H, W], [1, 0, 2, 3]);
  await ortPeers('conv2d_grad_weight', shape, flops, weightGrad, {
    nodes: [{ op: 'Conv', inputs: ['xT', 'dyT'], outputs: ['dwT'], ints: { pads: [1, 1, 1, 1], strides: [1, 1], kernel_shape: [H, W] } }],
    inputs: [['xT', [C, N, H, W], xT], ['dyT', [O, N, H, W], dyT]],
    outputs: [['dwT', [C, O, KH, KW]]],
  }, 'Conv over batch-transposed x and dy (no filter-gradient op)');
  releaseAll([x, w, bias, dy]);
}

const CONV_ALGORITHMS = ['direct', 'winograd2', 'winograd4'] as const;

/** The three convolution ops of one stride-1 3x3 layer, as [name, inputs, run] over a backend. */
function convOps(be: Backend, N: number, C: number, O: number, H: number, W: number, seed: number):
  { ops: [string, (out?: TensorInfo[]) => TensorInfo][]; release(): void } {
  const attrs = { stride: [1, 1], padding: [1, 1, 1, 1] };
  const put = (data: Float32Array, shape: number[]): TensorInfo => {
    const buffer = be.alloc('f32', data.length);
    be.write(buffer, data);
    return { buffer, offset: 0, shape, dtype: 'f32' };
  };
  const x = put(randomArray(N * C * H * W, seed), [N, C, H, W]), w = put(randomArray(O * C * 9, seed + 1, 0.05), [O, C, 3, 3]);
  const bias = put(randomArray(O, seed + 2), [O]), dy = put(randomArray(N * O * H * W, seed + 3), [N, O, H, W]);
  return {
    ops: [
      ['conv2d', () => runOp(be, 'conv2d', [x, w, bias], attrs)[0]],
      ['conv2d_grad_input', () => runOp(be, 'conv2d_grad_input', [dy, w], { ...attrs, inputSize: [H, W] })[0]],
      ['conv2d_grad_weight', () => runOp(be, 'conv2d_grad_weight', [x, dy], { ...attrs, kernelSize: [3, 3] })[0]],
    ],
    release: () => { for (const t of [x, w, bias, dy]) be.release(t.buffer); },
  };
}

/** Each convolution algorithm of the cpu backend on one layer shape: speed (interleaved) and error. */
async function benchConvAlgorithms(N: number, C: number, O: number, H: number, W: number, layer: string): Promise<void> {
  const cpu = backend as CpuBackend;
  const shape = { N, C, O, H, W, KH: 3, KW: 3, stride: 1, pad: 1, layer };
  const flops = 2 * N * O * H * W * C * 9;
  // Errors against reference on at most 2 images of at most 32 x 32 with the layer's channels
  // (reference runs in float64 JS; the error of a pixel depends on the channel sums, not the image size).
  const ref = new ReferenceBackend();
  const [sn, sh, sw] = [Math.min(N, 2), Math.min(H, 32), Math.min(W, 32)];
  const refOps = convOps(ref, sn, C, O, sh, sw, 7), oursSmall = convOps(backend, sn, C, O, sh, sw, 7), oursFull = convOps(backend, N, C, O, H, W, 7);
  const saved = cpu.convAlgorithm;
  try {
    for (let k = 0; k < 3; k++) {
      const [op, refRun] = refOps.ops[k];
      const want = await ref.read(refRun().buffer);
      const nmse: Record<string, number> = {};
      for (const algo of CONV_ALGORITHMS) {
        cpu.convAlgorithm = algo;
        const y = oursSmall.ops[k][1]();
        const got = cpu.readSync(y.buffer);
        cpu.release(y.buffer);
        let num = 0, den = 0;
        for (let i = 0; i < got.length; i++) {
          num += (got[i] - want[i]) ** 2;
          den += want[i] ** 2;
        }
        nmse[algo] = num / den;
      }
      const run = oursFull.ops[k][1];
      const ms = await timeInterleaved(CONV_ALGORITHMS.map((algo) => () => {
        cpu.convAlgorithm = algo;
        cpu.release(run().buffer);
      }), options.runs);
      const geometry = { C, H, W, KH: 3, KW: 3, sh: 1, sw: 1, pt: 1, pl: 1, OH: H, OW: W, O };
      cpu.convAlgorithm = 'auto';
      const auto = chooseConv(cpu, geometry, [1, 1, 1, 1], op === 'conv2d' ? 'forward' : op === 'conv2d_grad_input' ? 'input' : 'weight');
      CONV_ALGORITHMS.forEach((algo, i) => emit({
        op, shape, backend: 'cpu', threads, ms: ms[i], runs: options.runs, gflops: flops / ms[i] / 1e6, algorithm: algo,
        ...(algo === 'direct' ? {} : { vs: 'direct', ratio: ms[0] / ms[i] }), nmse: +nmse[algo].toExponential(2), auto,
      }));
    }
  } finally {
    cpu.convAlgorithm = saved;
    refOps.release();
    oursSmall.release();
    oursFull.release();
  }
}

function permute4(src: Float32Array, shape: number[], perm: number[]): Float32Array {
  const out = new Float32Array(src.length);
  const st = [shape[1] * shape[2] * shape[3], shape[2] * shape[3], shape[3], 1];
  const os = perm.map((p) => shape[p]);
  let o = 0;
  for (let a = 0; a < os[0]; a++) for (let b = 0; b < os[1]; b++) for (let c = 0; c < os[2]; c++) for (let d = 0; d < os[3]; d++) {
    const idx = [a, b, c, d];
    let s = 0;
    for (let k = 0; k < 4; k++) s += idx[k] * st[perm[k]];
    out[o++] = src[s];
  }
  return out;
}

async function benchQuantizer(T: number, N: number, D: number, withMemory: boolean): Promise<void> {
  const shape = { tokens: T, codes: N, dims: D };
  const attrs = { beta: 0.25, temperature: 0.01 };
  const fwdFlops = 2 * T * N * D;
  const Z = randomArray(T * D, 7, 0.1), E = randomArray(N * D, 8, 0.1);
  const z = upload(Z, [T, D]), e = upload(E, [N, D]);
  const dzq = upload(randomArray(T * D, 9), [T, D]), dlosses = upload(Float32Array.from([1, 0.1, 0.1, 0.1]), [4]);
  const fwd = await ours('ibq_quantize', shape, fwdFlops, () => releaseAll(runOp(backend, 'ibq_quantize', [z, e], attrs)));
  // Forward + backward: the logical work is four T x N x D products (logits; and in the
  // backward g.E^T, dlogits.E, dlogits^T.z).
  const memBefore = (backend.describe?.().memoryBytes as number) ?? 0;
  await ours('ibq_quantize+grad', shape, 4 * fwdFlops, () => {
    const outs = runOp(backend, 'ibq_quantize', [z, e], attrs);
    const [indices, , , lse, lseT, avgP] = outs;
    const grads = runOp(backend, 'ibq_quantize_grad', [dzq, dlosses, z, e, indices, lse, lseT, avgP], attrs);
    releaseAll([...outs, ...grads]);
  }, () => withMemory ? {
    // The wasm memory only grows: its size after the runs is the peak. The [T x N] logits a
    // naive quantizer would hold are shown for scale.
    inputBytes: (T * D + N * D) * 4,
    logitsBytes: T * N * 4,
    peakWasmMemoryBytes: backend.describe?.().memoryBytes,
    wasmMemoryBytesBefore: memBefore,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
  } : {});
  releaseAll([z, e, dzq, dlosses]);
  const ET = new Float32Array(D * N);
  for (let n = 0; n < N; n++) for (let d = 0; d < D; d++) ET[d * N + n] = E[n * D + d];
  const note = 'matmul + softmax + argmax';
  await ortPeers('ibq_quantize', shape, fwdFlops, fwd, {
    nodes: [
      { op: 'MatMul', inputs: ['z', 'et'], outputs: ['l'] },
      { op: 'Softmax', inputs: ['l'], outputs: ['p'], int: { axis: -1 } },
      { op: 'ArgMax', inputs: ['l'], outputs: ['i'], int: { axis: -1, keepdims: 0 } },
      { op: 'ReduceMax', inputs: ['p'], outputs: ['pmax'], ints: { axes: [-1] }, int: { keepdims: 0 } },
    ],
    inputs: [['z', [T, D], Z], ['et', [D, N], ET]],
    outputs: [['i', [T], 7], ['pmax', [T]]],
  }, note);
  await tfjsPeer('ibq_quantize', shape, fwdFlops, fwd, (tf) => {
    const tz = tf.tensor2d(Z, [T, D]), te = tf.tensor2d(ET, [D, N]);
    return async () => {
      const [i, p] = tf.tidy(() => {
        const l = tf.matMul(tz, te);
        return [tf.argMax(l, 1), tf.max(tf.softmax(l), 1)];
      });
      i.dataSync();
      p.dataSync();
      i.dispose();
      p.dispose();
    };
  }, note);
}

async function benchAttention(B: number, H: number, L: number, D: number, causal: boolean): Promise<void> {
  const shape = { B, H, L, D, causal: causal ? 'yes' : 'no' };
  const attrs = { causal };
  // q.k and p.v: 4 B H L^2 D flops, half of it when causal.
  const flops = 4 * B * H * L * L * D * (causal ? 0.5 : 1);
  const n = B * H * L * D;
  const Q = randomArray(n, 21), K = randomArray(n, 22), V = randomArray(n, 23);
  const q = upload(Q, [B, H, L, D]), k = upload(K, [B, H, L, D]), v = upload(V, [B, H, L, D]);
  const fwd = await ours('attention', shape, flops, () => releaseAll(runOp(backend, 'attention', [q, k, v], attrs)));
  // The backward recomputes the scores and adds three more products: 3.5x the forward's work
  // as flash-style kernels count it (q.k twice, dout.v twice, dS.k, dS^T.q, P^T.dout).
  await ours('attention+grad', shape, 3.5 * flops, () => {
    const [out, lse] = runOp(backend, 'attention', [q, k, v], attrs);
    const grads = runOp(backend, 'attention_grad', [out, q, k, v, out, lse], attrs);
    releaseAll([out, lse, ...grads]);
  });
  releaseAll([q, k, v]);
  const KT = new Float32Array(n);
  for (let bh = 0; bh < B * H; bh++) for (let j = 0; j < L; j++) for (let d = 0; d < D; d++) KT[bh * L * D + d * L + j] = K[bh * L * D + j * D + d];
  const mask = new Float32Array(L * L);
  if (causal) for (let i = 0; i < L; i++) for (let j = i + 1; j < L; j++) mask[i * L + j] = -Infinity;
  await ortPeers('attention', shape, flops, fwd, {
    nodes: [
      { op: 'MatMul', inputs: ['q', 'kt'], outputs: ['s'] },
      { op: 'Mul', inputs: ['s', 'scale'], outputs: ['ss'] },
      ...(causal ? [{ op: 'Add', inputs: ['ss', 'mask'], outputs: ['sm'] }] : []),
      { op: 'Softmax', inputs: [causal ? 'sm' : 'ss'], outputs: ['p'], int: { axis: -1 } },
      { op: 'MatMul', inputs: ['p', 'v'], outputs: ['y'] },
    ],
    inputs: [['q', [B, H, L, D], Q], ['kt', [B, H, D, L], KT], ['v', [B, H, L, D], V], ['scale', [1], Float32Array.of(1 / Math.sqrt(D))],
      ...(causal ? [['mask', [L, L], mask] as [string, number[], Float32Array]] : [])],
    outputs: [['y', [B, H, L, D]]],
  }, 'MatMul, Mul, Softmax, MatMul (materialises the L x L scores)');
}

/**
 * GroupNorm + SiLU, 32 groups, on config S's 32px activations (16x64x32x32: 4 MiB, inside the L3
 * cache) and the official model's 256px ones (1x128x256x256: 32 MiB, beyond it): the fused op
 * against the two ops the tokenizer ran before, forward (group_norm, silu), backward (silu_grad,
 * group_norm_grad) and both, timed interleaved; ratio = separate ms / fused ms.
 */
async function benchGroupNormSilu(): Promise<void> {
  const shapes: [number, number, number, number, string][] = options.quick
    ? [[2, 64, 16, 16, 'quick']]
    : [[16, 64, 32, 32, 'S 32px'], [1, 128, 256, 256, 'official 256px']];
  for (const [N, C, H, W, layer] of shapes) await benchGroupNormSiluShape(N, C, H, W, layer);
}

async function benchGroupNormSiluShape(N: number, C: number, H: number, W: number, layer: string): Promise<void> {
  const shape = { N, C, H, W, groups: 32, layer };
  const attrs = { groups: 32, eps: 1e-6 };
  const n = N * C * H * W;
  const x = upload(randomArray(n, 41), [N, C, H, W]), dy = upload(randomArray(n, 42), [N, C, H, W]);
  const w = upload(randomArray(C, 43), [C]), bias = upload(randomArray(C, 44), [C]);
  // Saved tensors of each variant's forward, for the backward-only figures.
  const [hSaved, meanSaved, rstdSaved] = runOp(backend, 'group_norm', [x, w, bias], attrs);
  const fused = {
    forward: () => releaseAll(runOp(backend, 'group_norm_silu', [x, w, bias], attrs)),
    backward: () => releaseAll(runOp(backend, 'group_norm_silu_grad', [dy, x, w, bias, meanSaved, rstdSaved], { groups: 32 })),
    both: () => {
      const [y, mean, rstd] = runOp(backend, 'group_norm_silu', [x, w, bias], attrs);
      releaseAll([y, mean, rstd, ...runOp(backend, 'group_norm_silu_grad', [dy, x, w, bias, mean, rstd], { groups: 32 })]);
    },
  };
  const separateBackward = (h: TensorInfo, mean: TensorInfo, rstd: TensorInfo) => {
    const [dh] = runOp(backend, 'silu_grad', [h, dy]);
    releaseAll([dh, ...runOp(backend, 'group_norm_grad', [dh, x, w, mean, rstd], { groups: 32 })]);
  };
  const separate = {
    forward: () => {
      const outs = runOp(backend, 'group_norm', [x, w, bias], attrs);
      releaseAll([...outs, ...runOp(backend, 'silu', [outs[0]])]);
    },
    backward: () => separateBackward(hSaved, meanSaved, rstdSaved),
    both: () => {
      const [h, mean, rstd] = runOp(backend, 'group_norm', [x, w, bias], attrs);
      const [y] = runOp(backend, 'silu', [h]);
      separateBackward(h, mean, rstd);
      releaseAll([h, mean, rstd, y]);
    },
  };
  for (const part of ['forward', 'backward', 'both'] as const) {
    const [fusedMs, separateMs] = await timeInterleaved([fused[part], separate[part]], options.runs);
    const op = part === 'forward' ? 'group_norm_silu' : part === 'backward' ? 'group_norm_silu_grad' : 'group_norm_silu+grad';
    const peerOps = part === 'forward' ? 'group_norm, silu' : part === 'backward' ? 'silu_grad, group_norm_grad' : 'group_norm, silu, silu_grad, group_norm_grad';
    emit({ op, shape, backend: 'cpu', threads, ms: fusedMs, runs: options.runs });
    emit({ op, shape, backend: 'cpu', threads, ms: separateMs, runs: options.runs, peer: `separate ops (${peerOps})`, ratio: separateMs / fusedMs });
  }
  releaseAll([x, dy, w, bias, hSaved, meanSaved, rstdSaved]);
}

async function benchNorms(): Promise<void> {
  await benchGroupNormSilu();
  const q = options.quick;
  // GroupNorm as in the IBQ encoder / decoder: 32 groups.
  {
    const [N, C, H, W] = q ? [1, 64, 32, 32] : [4, 128, 64, 64];
    const shape = { N, C, H, W, groups: 32 };
    const attrs = { groups: 32, eps: 1e-6 };
    const X = randomArray(N * C * H * W, 31);
    const x = upload(X, [N, C, H, W]), w = upload(randomArray(C, 32), [C]), bias = upload(randomArray(C, 33), [C]);
    await ours('group_norm', shape, 0, () => releaseAll(runOp(backend, 'group_norm', [x, w, bias], attrs)));
    await ours('group_norm+grad', shape, 0, () => {
      const [y, mean, rstd] = runOp(backend, 'group_norm', [x, w, bias], attrs);
      releaseAll([y, mean, rstd, ...runOp(backend, 'group_norm_grad', [y, x, w, mean, rstd], { groups: 32 })]);
    });
    releaseAll([x, w, bias]);
  }
  // LayerNorm / RMSNorm over transformer rows.
  {
    const [R, D] = q ? [512, 256] : [4096, 1024];
    const shape = { rows: R, D };
    const X = randomArray(R * D, 34), Wt = randomArray(D, 35), Bs = randomArray(D, 36);
    const x = upload(X, [R, D]), w = upload(Wt, [D]), bias = upload(Bs, [D]);
    const fwd = await ours('layer_norm', shape, 0, () => releaseAll(runOp(backend, 'layer_norm', [x, w, bias], { eps: 1e-5 })));
    await ours('layer_norm+grad', shape, 0, () => {
      const [y, mean, rstd] = runOp(backend, 'layer_norm', [x, w, bias], { eps: 1e-5 });
      releaseAll([y, mean, rstd, ...runOp(backend, 'layer_norm_grad', [y, x, w, mean, rstd])]);
    });
    await ortPeers('layer_norm', shape, 0, fwd, {
      nodes: [{ op: 'LayerNormalization', inputs: ['x', 'w', 'b'], outputs: ['y'], int: { axis: -1 } }],
      inputs: [['x', [R, D], X], ['w', [D], Wt], ['b', [D], Bs]],
      outputs: [['y', [R, D]]],
    });
    await ours('rms_norm', shape, 0, () => releaseAll(runOp(backend, 'rms_norm', [x, w], { eps: 1e-6 })));
    await ours('rms_norm+grad', shape, 0, () => {
      const [y, rstd] = runOp(backend, 'rms_norm', [x, w], { eps: 1e-6 });
      releaseAll([y, rstd, ...runOp(backend, 'rms_norm_grad', [y, x, w, rstd])]);
    });
    releaseAll([x, w, bias]);
  }
}

export async function run(o: BenchOptions): Promise<void> {
  options = o;
  threads = o.threads || Number(process.env.IBQ_THREADS) || availableParallelism();
  backend = await createBackend('cpu', { threads });
  process.stderr.write(`[bench] cpu backend: ${JSON.stringify(backend.describe?.())}\n`);
  const want = (op: string) => !o.filter || op.includes(o.filter);
  const q = o.quick;
  try {
    if (want('matmul')) {
      await benchMatmul(q ? 256 : 1024, q ? 256 : 1024, q ? 256 : 1024);
      await benchMatmul(q ? 64 : 256, q ? 1024 : 4096, q ? 256 : 1024);
    }
    if (want('conv2d')) await benchConv(q ? 1 : 4, q ? 32 : 128, q ? 32 : 128, q ? 32 : 64, q ? 32 : 64);
    if (want('conv2d') || want('winograd')) {
      // Config S's 3x3 layers (batch 16), then the official model's (one 256x256 image).
      const layers: [number, number, number, number, number, string][] = q
        ? [[2, 32, 32, 16, 16, 'quick']]
        : [[16, 64, 64, 32, 32, 'S 32px'], [16, 128, 128, 16, 16, 'S 16px'], [16, 128, 128, 8, 8, 'S 8px'],
          [1, 128, 128, 256, 256, 'official 256px'], [1, 256, 256, 64, 64, 'official 64px'], [1, 512, 512, 16, 16, 'official 16px']];
      for (const [N, C, O, H, W, layer] of layers) await benchConvAlgorithms(N, C, O, H, W, layer);
    }
    if (want('ibq_quantize')) {
      // Config S's quantizer (16 images of 32x32 -> 1024 tokens, 1024 codes of 64): token items.
      await benchQuantizer(q ? 256 : 1024, 1024, 64, false);
      await benchQuantizer(q ? 256 : 4096, q ? 2048 : 16384, q ? 64 : 256, false);
      await benchQuantizer(q ? 64 : 1024, q ? 16384 : 262144, q ? 64 : 256, true);
    }
    if (want('attention')) {
      await benchAttention(q ? 1 : 2, 1, q ? 64 : 256, q ? 128 : 512, false);
      await benchAttention(q ? 2 : 8, q ? 4 : 16, q ? 64 : 256, 64, true);
    }
    if (want('norm')) await benchNorms();
    else if (want('group_norm_silu')) await benchGroupNormSilu();
  } finally {
    backend.destroy();
  }
}
