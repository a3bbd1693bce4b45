// WGSL kernels for src/ops/optim.ts: in-place Adam / AdamW and EMA updates, one thread per
// element. Step-dependent constants (bias corrections) are computed once on the host in float64.

import { registerKernel } from '../../dispatch.js';
import { adamParams, emaDecay } from '../../ops/optim.js';
import { sizeOf } from '../../types.js';
import type { WebGpuBackend } from './backend.js';
import { type Program, groups, memo, wgslType } from './program.js';

const W = 'webgpu';
const WG = 256;

const adamProgram = memo((t: string, decoupled: boolean): Program => {
  const ld = (e: string) => (t === 'f32' ? e : `f32(${e})`);
  const st = (e: string) => (t === 'f32' ? e : `${t}(${e})`);
  return {
    name: decoupled ? 'adamw_update' : 'adam_update',
    inputs: [{ name: 'G', type: t as 'f32' }],
    outputs: [{ name: 'Pm', type: t as 'f32' }, { name: 'Mm', type: t as 'f32' }, { name: 'Vm', type: t as 'f32' }],
    uniforms: [['n', 'u32'], ['offG', 'u32'], ['offP', 'u32'], ['offM', 'u32'], ['offV', 'u32'],
      ['wd', 'f32'], ['decayMul', 'f32'], ['oneMinusB1', 'f32'], ['b2', 'f32'], ['oneMinusB2', 'f32'], ['stepSize', 'f32'], ['bc2Sqrt', 'f32'], ['eps', 'f32']],
    body: `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = wg_linear(wid, nwg) * ${WG}u + lid;
  if (i >= P.n) { return; }
  var x = ${ld('Pm[P.offP + i]')};
  var g = ${ld('G[P.offG + i]')};
  ${decoupled ? 'x = x * P.decayMul;' : 'g = g + P.wd * x;'}
  let m0 = ${ld('Mm[P.offM + i]')};
  let m = m0 + P.oneMinusB1 * (g - m0);
  let v = P.b2 * ${ld('Vm[P.offV + i]')} + P.oneMinusB2 * g * g;
  let denom = sqrt(v) / P.bc2Sqrt + P.eps;
  Pm[P.offP + i] = ${st('x - P.stepSize * (m / denom)')};
  Mm[P.offM + i] = ${st('m')};
  Vm[P.offV + i] = ${st('v')};
}`,
  };
});

registerKernel<WebGpuBackend>('adam_update', W, (be, [param, grad, m, v], _outs, attrs) => {
  const p = adamParams(attrs);
  const n = sizeOf(param.shape);
  const bp = be.bindView(param), bg = be.bindView(grad), bm = be.bindView(m), bv = be.bindView(v);
  const decoupled = p.decoupled && p.weightDecay !== 0;
  be.dispatch(adamProgram(wgslType(param.dtype), decoupled), [bg.ref], [bp.ref, bm.ref, bv.ref], [
    n, bg.elemOffset, bp.elemOffset, bm.elemOffset, bv.elemOffset,
    p.decoupled ? 0 : p.weightDecay, 1 - p.lr * p.weightDecay, 1 - p.beta1, p.beta2, 1 - p.beta2,
    p.lr / (1 - p.beta1 ** p.step), Math.sqrt(1 - p.beta2 ** p.step), p.eps,
  ], groups(n, WG));
});

const emaProgram = memo((t: string): Program => {
  const ld = (e: string) => (t === 'f32' ? e : `f32(${e})`);
  const st = (e: string) => (t === 'f32' ? e : `${t}(${e})`);
  return {
    name: 'ema_update',
    inputs: [{ name: 'Pa', type: t as 'f32' }],
    outputs: [{ name: 'S', type: t as 'f32' }],
    uniforms: [['n', 'u32'], ['offP', 'u32'], ['offS', 'u32'], ['keep', 'f32']],
    body: `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = wg_linear(wid, nwg) * ${WG}u + lid;
  if (i >= P.n) { return; }
  let s = ${ld('S[P.offS + i]')};
  S[P.offS + i] = ${st(`s - P.keep * (s - ${ld('Pa[P.offP + i]')})`)};
}`,
  };
});

registerKernel<WebGpuBackend>('ema_update', W, (be, [shadow, param], _outs, attrs) => {
  const keep = 1 - emaDecay(attrs);
  const n = sizeOf(shadow.shape);
  const bs = be.bindView(shadow), bp = be.bindView(param);
  be.dispatch(emaProgram(wgslType(shadow.dtype)), [bp.ref], [bs.ref], [n, bp.elemOffset, bs.elemOffset, keep], groups(n, WG));
});
