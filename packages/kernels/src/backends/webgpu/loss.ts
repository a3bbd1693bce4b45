// WGSL kernels for src/ops/loss.ts: a workgroup per row of logits; the row's logsumexp is an
// online (max, sum) reduction, so a large vocabulary is read twice at most (lse, then dlogits).

import { registerKernel } from '../../dispatch.js';
import { ignoreIndexAttr } from '../../ops/loss.js';
import type { WebGpuBackend } from './backend.js';
import { type Program, memo, wgslType } from './program.js';
import { lseDecl } from './reduce.js';

const W = 'webgpu';
const WG = 64;

const forwardProgram = memo((t: string): Program => {
  const ld = (e: string) => (t === 'f32' ? e : `f32(${e})`);
  const st = (e: string) => (t === 'f32' ? e : `${t}(${e})`);
  return {
    name: 'cross_entropy',
    inputs: [{ name: 'X', type: t as 'f32' }, { name: 'T', type: 'i32' }],
    outputs: [{ name: 'L', type: t as 'f32' }, { name: 'S', type: t as 'f32' }],
    uniforms: [['N', 'u32'], ['V', 'u32'], ['ignore', 'i32'], ['offX', 'u32'], ['offT', 'u32'], ['offL', 'u32'], ['offS', 'u32']],
    body: `${lseDecl}
var<workgroup> sh: array<vec2<f32>, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let n = wg_linear(wid, nwg);
  if (n >= P.N) { return; }
  let row = P.offX + n * P.V;
  var s = vec2<f32>(-f32_inf(), 0.0);
  for (var c = lid; c < P.V; c += ${WG}u) { s = lse_acc(s, ${ld('X[row + c]')}); }
  sh[lid] = s;
  workgroupBarrier();
  for (var w = ${WG / 2}u; w > 0u; w = w / 2u) {
    if (lid < w) { sh[lid] = lse_combine(sh[lid], sh[lid + w]); }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let lse = lse_fin(sh[0]);
    let t = T[P.offT + n];
    var loss = f32_nan();
    if (t == P.ignore) { loss = 0.0; } else if (t >= 0 && u32(t) < P.V) { loss = lse - ${ld('X[row + u32(t)]')}; }
    S[P.offS + n] = ${st('lse')};
    L[P.offL + n] = ${st('loss')};
  }
}`,
  };
});

const gradProgram = memo((t: string): Program => {
  const ld = (e: string) => (t === 'f32' ? e : `f32(${e})`);
  const st = (e: string) => (t === 'f32' ? e : `${t}(${e})`);
  return {
    name: 'cross_entropy_grad',
    inputs: [{ name: 'G', type: t as 'f32' }, { name: 'X', type: t as 'f32' }, { name: 'T', type: 'i32' }, { name: 'S', type: t as 'f32' }],
    outputs: [{ name: 'D', type: t as 'f32' }],
    uniforms: [['N', 'u32'], ['V', 'u32'], ['ignore', 'i32'], ['offG', 'u32'], ['offX', 'u32'], ['offT', 'u32'], ['offS', 'u32'], ['offD', 'u32']],
    body: `
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = wg_linear(wid, nwg) * 256u + lid;
  if (i >= P.N * P.V) { return; }
  let n = i / P.V;
  let c = i % P.V;
  let t = T[P.offT + n];
  var d = f32_nan();
  if (t == P.ignore) { d = 0.0; } else if (t >= 0 && u32(t) < P.V) {
    d = ${ld('G[P.offG + n]')} * (exp(${ld('X[P.offX + i]')} - ${ld('S[P.offS + n]')}) - select(0.0, 1.0, u32(t) == c));
  }
  D[P.offD + i] = ${st('d')};
}`,
  };
});

registerKernel<WebGpuBackend>('cross_entropy', W, (be, [logits, targets], [loss, lse], attrs) => {
  const [N, V] = logits.shape;
  const b = [logits, targets, loss, lse].map((t) => be.bindView(t));
  be.dispatch(forwardProgram(wgslType(logits.dtype)), [b[0].ref, b[1].ref], [b[2].ref, b[3].ref],
    [N, V, ignoreIndexAttr('cross_entropy', attrs), ...b.map((x) => x.elemOffset)], N);
});

registerKernel<WebGpuBackend>('cross_entropy_grad', W, (be, [dloss, logits, targets, lse], [dlogits], attrs) => {
  const [N, V] = logits.shape;
  const b = [dloss, logits, targets, lse, dlogits].map((t) => be.bindView(t));
  be.dispatch(gradProgram(wgslType(logits.dtype)), b.slice(0, 4).map((x) => x.ref), [b[4].ref],
    [N, V, ignoreIndexAttr('cross_entropy_grad', attrs), ...b.map((x) => x.elemOffset)], Math.ceil((N * V) / 256));
});
