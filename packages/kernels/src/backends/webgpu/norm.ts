// WGSL kernels for src/ops/norm.ts. Every norm is a set of `count` normalisation sets of `size`
// elements (group: a contiguous (sample, group) block; batch: a channel across the batch;
// row: the last dim). A workgroup per set computes the statistics (two passes: mean, then the
// centred sum of squares, as the reference) and writes y or dx; the weight / bias gradients
// take a workgroup per channel over that channel's elements. group_norm_silu is the group mode
// with silu applied to y, and its gradient kernels recompute h to take silu's backward first.

import { registerKernel } from '../../dispatch.js';
import { normEps, normGroups } from '../../ops/norm.js';
import { type TensorInfo, sizeOf } from '../../types.js';
import type { WebGpuBackend } from './backend.js';
import { MATH_WGSL, wgSumWgsl } from './math.js';
import { type Program, memo, wgslType } from './program.js';

const W = 'webgpu';
const WG = 64;

type Mode = 'group' | 'batch' | 'row';

/** WGSL for a mode: set element index, set element channel, and the j-th element of channel c as (set, index). */
function modeDecls(mode: Mode): string {
  if (mode === 'group') {
    return `
fn elemIndex(s: u32, k: u32) -> u32 { return s * P.size + k; }
fn elemChannel(s: u32, k: u32) -> u32 { return (s % P.G) * P.Cg + k / P.S; }
fn chanCount() -> u32 { return P.Nb * P.S; }
fn chanElem(c: u32, j: u32) -> vec2<u32> { let n = j / P.S; return vec2<u32>(n * P.G + c / P.Cg, (n * P.C + c) * P.S + j % P.S); }`;
  }
  if (mode === 'batch') {
    return `
fn elemIndex(s: u32, k: u32) -> u32 { return ((k / P.S) * P.C + s) * P.S + k % P.S; }
fn elemChannel(s: u32, k: u32) -> u32 { return s; }
fn chanCount() -> u32 { return P.Nb * P.S; }
fn chanElem(c: u32, j: u32) -> vec2<u32> { return vec2<u32>(c, ((j / P.S) * P.C + c) * P.S + j % P.S); }`;
  }
  return `
fn elemIndex(s: u32, k: u32) -> u32 { return s * P.size + k; }
fn elemChannel(s: u32, k: u32) -> u32 { return k; }
fn chanCount() -> u32 { return P.count; }
fn chanElem(c: u32, j: u32) -> vec2<u32> { return vec2<u32>(j, j * P.size + c); }`;
}

const UNIFORMS: Program['uniforms'] = [
  ['count', 'u32'], ['size', 'u32'], ['Nb', 'u32'], ['C', 'u32'], ['S', 'u32'], ['G', 'u32'], ['Cg', 'u32'], ['eps', 'f32'],
];

/** 1/sqrt(v) with one Newton step (the gradients of small sets amplify rstd's rounding). */
const RSQRT = `
fn rsqrt_acc(v: f32) -> f32 {
  let r = 1.0 / sqrt(v);
  return r * (1.5 - 0.5 * v * r * r);
}`;

const WG_SUM = `${RSQRT}
${wgSumWgsl(WG)}`;

function geometry(mode: Mode, x: TensorInfo, groups = 1): number[] {
  if (mode === 'row') {
    const D = x.shape[x.shape.length - 1];
    const count = D === 0 ? sizeOf(x.shape.slice(0, -1)) : sizeOf(x.shape) / D;
    return [count, D, 0, 0, 1, 1, 1];
  }
  const [N, C] = x.shape;
  const S = sizeOf(x.shape.slice(2));
  if (mode === 'batch') return [C, N * S, N, C, S, 1, 1];
  const Cg = C / groups;
  return [N * groups, Cg * S, N, C, S, groups, Cg];
}

/**
 * Forward: y = (x - mean)*rstd*w + b per set; writes mean and rstd (or var for batch norm).
 * `rms`: no mean, no bias, rstd from the mean square.
 */
const forwardProgram = memo((t: string, mode: Mode, rms: boolean, writesVar: boolean, silu: boolean): Program => {
  const ld = (e: string) => (t === 'f32' ? e : `f32(${e})`);
  const st = (e: string) => (t === 'f32' ? e : `${t}(${e})`);
  const inputs = rms ? ['X', 'Wt'] : ['X', 'Wt', 'Bs'];
  const outputs = rms ? ['Y', 'R'] : ['Y', 'Mo', 'R'];
  const offs = [...inputs, ...outputs].map((n): [string, 'u32'] => [`off${n}`, 'u32']);
  return {
    name: rms ? 'rms_norm' : `${mode}_norm${silu ? '_silu' : ''}`,
    inputs: inputs.map((name) => ({ name, type: t as 'f32' })),
    outputs: outputs.map((name) => ({ name, type: t as 'f32' })),
    uniforms: [...UNIFORMS, ...offs],
    body: `${modeDecls(mode)}
${WG_SUM}${silu ? MATH_WGSL : ''}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let s = wg_linear(wid, nwg);
  if (s >= P.count) { return; }
  let n = P.size;
  var mean = 0.0;
  ${rms ? '' : `var part = 0.0;
  for (var k = lid; k < n; k += ${WG}u) { part += ${ld('X[P.offX + elemIndex(s, k)]')}; }
  let total = wg_sum(part, lid);
  if (n > 0u) { mean = total / f32(n); }`}
  var sq = 0.0;
  for (var k = lid; k < n; k += ${WG}u) { let d = ${ld('X[P.offX + elemIndex(s, k)]')} - mean; sq += d * d; }
  let sqTotal = wg_sum(sq, lid);
  var variance = 0.0;
  if (n > 0u) { variance = sqTotal / f32(n); }
  let rstd = rsqrt_acc(variance + P.eps);
  for (var k = lid; k < n; k += ${WG}u) {
    let i = elemIndex(s, k);
    let c = elemChannel(s, k);
    let v = (${ld('X[P.offX + i]')} - mean) * rstd * ${ld('Wt[P.offWt + c]')}${rms ? '' : ` + ${ld('Bs[P.offBs + c]')}`};
    Y[P.offY + i] = ${st(silu ? 'silu_acc(v)' : 'v')};
  }
  if (lid == 0u) {
    ${rms ? '' : `Mo[P.offMo + s] = ${st('mean')};`}
    R[P.offR + s] = ${st(writesVar ? 'variance' : 'rstd')};
  }
}`,
  };
});

/**
 * The upstream gradient of the normalised value at element i of channel c, as WGSL: dy, or for
 * group_norm_silu dh = silu'(h)*dy with h = xhat*w[c] + b[c] recomputed (`xhat` in scope).
 */
function upstream(ld: (e: string) => string, silu: boolean, i: string, c: string): string {
  const dy = ld(`DY[P.offDY + ${i}]`);
  return silu ? `silu_grad_acc(xhat * ${ld(`Wt[P.offWt + ${c}]`)} + ${ld(`Bs[P.offBs + ${c}]`)}, ${dy})` : dy;
}

/** dx per set: rstd*(g - mean(g) - xhat*mean(g*xhat)), g = upstream*w (rms: no mean terms of x or g). */
const dxProgram = memo((t: string, mode: Mode, rms: boolean, statIsVar: boolean, silu: boolean): Program => {
  const ld = (e: string) => (t === 'f32' ? e : `f32(${e})`);
  const st = (e: string) => (t === 'f32' ? e : `${t}(${e})`);
  const inputs = rms ? ['DY', 'X', 'Wt', 'R'] : ['DY', 'X', 'Wt', ...(silu ? ['Bs'] : []), 'Mi', 'R'];
  const offs = [...inputs, 'DX'].map((n): [string, 'u32'] => [`off${n}`, 'u32']);
  return {
    name: `${rms ? 'rms' : mode}_norm${silu ? '_silu' : ''}_dx`,
    inputs: inputs.map((name) => ({ name, type: t as 'f32' })),
    outputs: [{ name: 'DX', type: t as 'f32' }],
    uniforms: [...UNIFORMS, ...offs],
    body: `${modeDecls(mode)}
${WG_SUM}${silu ? MATH_WGSL : ''}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let s = wg_linear(wid, nwg);
  if (s >= P.count) { return; }
  let n = P.size;
  let mean = ${rms ? '0.0' : ld('Mi[P.offMi + s]')};
  let stat = ${ld('R[P.offR + s]')};
  let rstd = ${statIsVar ? 'rsqrt_acc(stat + P.eps)' : 'stat'};
  var sg = 0.0;
  var sgx = 0.0;
  for (var k = lid; k < n; k += ${WG}u) {
    let i = elemIndex(s, k);
    let c = elemChannel(s, k);
    let xc = ${ld('X[P.offX + i]')} - mean;
    let xhat = xc * rstd;
    let g = ${upstream(ld, silu, 'i', 'c')} * ${ld('Wt[P.offWt + c]')};
    sg += g;
    sgx += g * xc * rstd;
  }
  let meanG = ${rms ? '0.0' : 'wg_sum(sg, lid) / f32(n)'};
  let meanGX = wg_sum(sgx, lid) / f32(n);
  for (var k = lid; k < n; k += ${WG}u) {
    let i = elemIndex(s, k);
    let c = elemChannel(s, k);
    let xhat = (${ld('X[P.offX + i]')} - mean) * rstd;
    let g = ${upstream(ld, silu, 'i', 'c')} * ${ld('Wt[P.offWt + c]')};
    DX[P.offDX + i] = ${st('rstd * (g - meanG - xhat * meanGX)')};
  }
}`,
  };
});

/** dweight[c] = sum upstream*xhat and dbias[c] = sum upstream over the elements of channel c. */
const dwProgram = memo((t: string, mode: Mode, rms: boolean, statIsVar: boolean, silu: boolean): Program => {
  const ld = (e: string) => (t === 'f32' ? e : `f32(${e})`);
  const st = (e: string) => (t === 'f32' ? e : `${t}(${e})`);
  const inputs = rms ? ['DY', 'X', 'R'] : ['DY', 'X', ...(silu ? ['Wt', 'Bs'] : []), 'Mi', 'R'];
  const outputs = rms ? ['DW'] : ['DW', 'DB'];
  const offs = [...inputs, ...outputs].map((n): [string, 'u32'] => [`off${n}`, 'u32']);
  return {
    name: `${rms ? 'rms' : mode}_norm${silu ? '_silu' : ''}_dw`,
    inputs: inputs.map((name) => ({ name, type: t as 'f32' })),
    outputs: outputs.map((name) => ({ name, type: t as 'f32' })),
    uniforms: [...UNIFORMS, ['channels', 'u32'], ...offs],
    body: `${modeDecls(mode)}
${WG_SUM}${silu ? MATH_WGSL : ''}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wg_linear(wid, nwg);
  if (c >= P.channels) { return; }
  var sw = 0.0;
  var sb = 0.0;
  let m = chanCount();
  for (var j = lid; j < m; j += ${WG}u) {
    let e = chanElem(c, j);
    let stat = ${ld('R[P.offR + e.x]')};
    let rstd = ${statIsVar ? 'rsqrt_acc(stat + P.eps)' : 'stat'};
    let mean = ${rms ? '0.0' : ld('Mi[P.offMi + e.x]')};
    let xc = ${ld('X[P.offX + e.y]')} - mean;
    let xhat = xc * rstd;
    let dy = ${upstream(ld, silu, 'e.y', 'c')};
    sw += dy * xc * rstd;
    sb += dy;
  }
  let tw = wg_sum(sw, lid);
  ${rms ? '' : 'let tb = wg_sum(sb, lid);'}
  if (lid == 0u) {
    DW[P.offDW + c] = ${st('tw')};
    ${rms ? '' : `DB[P.offDB + c] = ${st('tb')};`}
  }
}`,
  };
});

function dispatchNorm(be: WebGpuBackend, prog: Program, ins: readonly TensorInfo[], outs: readonly TensorInfo[], geom: number[], eps: number, extra: number[], workgroups: number): void {
  const bi = ins.map((t) => be.bindView(t)), bo = outs.map((t) => be.bindView(t));
  be.dispatch(prog, bi.map((b) => b.ref), bo.map((b) => b.ref), [...geom, eps, ...extra, ...bi.map((b) => b.elemOffset), ...bo.map((b) => b.elemOffset)], workgroups);
}

function forward(be: WebGpuBackend, mode: Mode, rms: boolean, writesVar: boolean, ins: readonly TensorInfo[], outs: readonly TensorInfo[], eps: number, groups = 1, silu = false): void {
  const geom = geometry(mode, ins[0], groups);
  dispatchNorm(be, forwardProgram(wgslType(ins[0].dtype), mode, rms, writesVar, silu), ins, outs, geom, eps, [], geom[0]);
}

/** Inputs [dy, x, w, (bias: silu only), ...stats]. */
function backward(
  be: WebGpuBackend, mode: Mode, rms: boolean, statIsVar: boolean, ins: readonly TensorInfo[], [dx, ...dparams]: readonly TensorInfo[], eps: number, groups = 1, silu = false,
): void {
  const [dy, x, w] = ins;
  const t = wgslType(x.dtype);
  const geom = geometry(mode, x, groups);
  if (sizeOf(dx.shape) > 0) dispatchNorm(be, dxProgram(t, mode, rms, statIsVar, silu), ins, [dx], geom, eps, [], geom[0]);
  const channels = w.shape[0];
  // The weight / bias gradients read w (and bias) only to recompute silu's h.
  const dwIns = silu ? ins : [dy, x, ...ins.slice(3)];
  dispatchNorm(be, dwProgram(t, mode, rms, statIsVar, silu), dwIns, dparams, geom, eps, [channels], channels);
}

registerKernel<WebGpuBackend>('group_norm', W, (be, ins, outs, attrs) => {
  forward(be, 'group', false, false, ins, outs, normEps('group_norm', attrs), normGroups('group_norm', attrs, ins[0].shape[1]));
});
registerKernel<WebGpuBackend>('group_norm_grad', W, (be, ins, outs, attrs) => {
  backward(be, 'group', false, false, ins, outs, 0, normGroups('group_norm_grad', attrs, ins[1].shape[1]));
});
registerKernel<WebGpuBackend>('group_norm_silu', W, (be, ins, outs, attrs) => {
  forward(be, 'group', false, false, ins, outs, normEps('group_norm_silu', attrs), normGroups('group_norm_silu', attrs, ins[0].shape[1]), true);
});
registerKernel<WebGpuBackend>('group_norm_silu_grad', W, (be, ins, outs, attrs) => {
  backward(be, 'group', false, false, ins, outs, 0, normGroups('group_norm_silu_grad', attrs, ins[1].shape[1]), true);
});
registerKernel<WebGpuBackend>('batch_norm_train', W, (be, ins, outs, attrs) => {
  forward(be, 'batch', false, true, ins, outs, normEps('batch_norm_train', attrs));
});
registerKernel<WebGpuBackend>('batch_norm_train_grad', W, (be, ins, outs, attrs) => {
  backward(be, 'batch', false, true, ins, outs, normEps('batch_norm_train_grad', attrs));
});
registerKernel<WebGpuBackend>('layer_norm', W, (be, ins, outs, attrs) => {
  forward(be, 'row', false, false, ins, outs, normEps('layer_norm', attrs));
});
registerKernel<WebGpuBackend>('layer_norm_grad', W, (be, ins, outs) => backward(be, 'row', false, false, ins, outs, 0));
registerKernel<WebGpuBackend>('rms_norm', W, (be, ins, outs, attrs) => {
  forward(be, 'row', true, false, ins, outs, normEps('rms_norm', attrs, true));
});
registerKernel<WebGpuBackend>('rms_norm_grad', W, (be, ins, outs) => backward(be, 'row', true, false, ins, outs, 0));

const evalProgram = memo((t: string): Program => {
  // (RSQRT is declared inside the body below)
  const ld = (e: string) => (t === 'f32' ? e : `f32(${e})`);
  const st = (e: string) => (t === 'f32' ? e : `${t}(${e})`);
  return {
    name: 'batch_norm_eval',
    inputs: ['X', 'Wt', 'Bs', 'RM', 'RV'].map((name) => ({ name, type: t as 'f32' })),
    outputs: [{ name: 'Y', type: t as 'f32' }],
    uniforms: [['n', 'u32'], ['C', 'u32'], ['S', 'u32'], ['eps', 'f32'], ['offX', 'u32'], ['offWt', 'u32'], ['offBs', 'u32'], ['offRM', 'u32'], ['offRV', 'u32'], ['offY', 'u32']],
    body: `${RSQRT}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = wg_linear(wid, nwg) * 256u + lid;
  if (i >= P.n) { return; }
  let c = (i / P.S) % P.C;
  let rstd = rsqrt_acc(${ld('RV[P.offRV + c]')} + P.eps);
  Y[P.offY + i] = ${st(`(${ld('X[P.offX + i]')} - ${ld('RM[P.offRM + c]')}) * rstd * ${ld('Wt[P.offWt + c]')} + ${ld('Bs[P.offBs + c]')}`)};
}`,
  };
});

registerKernel<WebGpuBackend>('batch_norm_eval', W, (be, ins, [y], attrs) => {
  const x = ins[0];
  const n = sizeOf(x.shape);
  const bi = ins.map((t) => be.bindView(t)), by = be.bindView(y);
  be.dispatch(evalProgram(wgslType(x.dtype)), bi.map((b) => b.ref), [by.ref],
    [n, x.shape[1], sizeOf(x.shape.slice(2)), normEps('batch_norm_eval', attrs), ...bi.map((b) => b.elemOffset), by.elemOffset], Math.ceil(n / 256));
});
