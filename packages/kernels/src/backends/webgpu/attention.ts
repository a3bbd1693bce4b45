// WGSL kernels for src/ops/attention.ts: attention and its backward (below), rope (one thread
// per interleaved pair).

import { registerKernel } from '../../dispatch.js';
import { boolAttr } from '../../shape.js';
import { sizeOf } from '../../types.js';
import type { WebGpuBackend } from './backend.js';
import { attentionAttrs } from '../../ops/attention.js';
import { type Program, groups, memo, wgslType } from './program.js';
import { lseDecl } from './reduce.js';

const W = 'webgpu';
const WG = 256;

const ropeProgram = memo((t: string): Program => {
  const ld = (e: string) => (t === 'f32' ? e : `f32(${e})`);
  const st = (e: string) => (t === 'f32' ? e : `${t}(${e})`);
  return {
    name: 'rope',
    inputs: [{ name: 'X', type: t as 'f32' }, { name: 'Cs', type: t as 'f32' }, { name: 'Sn', type: t as 'f32' }],
    outputs: [{ name: 'Y', type: t as 'f32' }],
    uniforms: [['pairs', 'u32'], ['L', 'u32'], ['H', 'u32'], ['half', 'u32'], ['sign', 'f32'], ['offX', 'u32'], ['offC', 'u32'], ['offS', 'u32'], ['offY', 'u32']],
    body: `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let q = wg_linear(wid, nwg) * ${WG}u + lid;
  if (q >= P.pairs) { return; }
  let i = q % P.half;
  let l = (q / (P.half * P.H)) % P.L;
  let c = ${ld('Cs[P.offC + l * P.half + i]')};
  let s = P.sign * ${ld('Sn[P.offS + l * P.half + i]')};
  let a = ${ld('X[P.offX + 2u * q]')};
  let b = ${ld('X[P.offX + 2u * q + 1u]')};
  Y[P.offY + 2u * q] = ${st('a * c - b * s')};
  Y[P.offY + 2u * q + 1u] = ${st('b * c + a * s')};
}`,
  };
});

registerKernel<WebGpuBackend>('rope', W, (be, [x, cos, sin], [y], attrs) => {
  const [, L, H, D] = x.shape;
  const pairs = sizeOf(x.shape) / 2;
  const b = [x, cos, sin, y].map((t) => be.bindView(t));
  const sign = boolAttr('rope', attrs, 'inverse', false) ? -1 : 1;
  be.dispatch(ropeProgram(wgslType(x.dtype)), b.slice(0, 3).map((r) => r.ref), [b[3].ref],
    [pairs, L, H, D / 2, sign, ...b.map((r) => r.elemOffset)], groups(pairs, WG));
});

// Attention: a workgroup per query row (forward, dq) or per key row (dk, dv). Keys (or queries)
// are visited in tiles of TILE: each thread scores one of them into workgroup memory, then the
// threads, each owning head-dim columns d = lid + c*TILE, accumulate from the tile. The forward
// takes the row's logsumexp first (online max/sum), so probabilities are exact exponentials.
const TILE = 64;

const ATT_UNIFORMS: Program['uniforms'] = [['rows', 'u32'], ['Lq', 'u32'], ['Lk', 'u32'], ['D', 'u32'], ['Dv', 'u32'], ['causal', 'u32'], ['scale', 'f32']];

const ATT_COMMON = `
/** Number of keys visible to query i. */
fn visible(i: u32) -> u32 {
  if (P.causal == 0u) { return P.Lk; }
  return u32(clamp(i32(i + P.Lk) - i32(P.Lq) + 1, 0, i32(P.Lk)));
}`;

const attentionProgram = memo((t: string, dChunks: number, dvChunks: number): Program => {
  const ld = (e: string) => (t === 'f32' ? e : `f32(${e})`);
  const st = (e: string) => (t === 'f32' ? e : `${t}(${e})`);
  return {
    name: 'attention',
    inputs: ['Q', 'K', 'V'].map((name) => ({ name, type: t as 'f32' })),
    outputs: [{ name: 'O', type: t as 'f32' }, { name: 'LS', type: t as 'f32' }],
    uniforms: [...ATT_UNIFORMS, ['offQ', 'u32'], ['offK', 'u32'], ['offV', 'u32'], ['offO', 'u32'], ['offL', 'u32']],
    body: `${ATT_COMMON}
${lseDecl}
var<workgroup> red: array<vec2<f32>, ${TILE}>;
var<workgroup> pt: array<f32, ${TILE}>;
fn score(qb: u32, kb: u32, j: u32) -> f32 {
  var s = 0.0;
  for (var d = 0u; d < P.D; d++) { s += ${ld('Q[qb + d]')} * ${ld('K[kb + j * P.D + d]')}; }
  return s * P.scale;
}
@compute @workgroup_size(${TILE})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wg_linear(wid, nwg);
  if (row >= P.rows) { return; }
  let bh = row / P.Lq;
  let i = row % P.Lq;
  let nvis = visible(i);
  let qb = P.offQ + row * P.D;
  let kb = P.offK + bh * P.Lk * P.D;
  let vb = P.offV + bh * P.Lk * P.Dv;
  var s = vec2<f32>(-f32_inf(), 0.0);
  for (var j = lid; j < nvis; j += ${TILE}u) { s = lse_acc(s, score(qb, kb, j)); }
  red[lid] = s;
  workgroupBarrier();
  for (var w = ${TILE / 2}u; w > 0u; w = w / 2u) {
    if (lid < w) { red[lid] = lse_combine(red[lid], red[lid + w]); }
    workgroupBarrier();
  }
  let lse = lse_fin(red[0]);
  var acc: array<f32, ${dvChunks}>;
  for (var j0 = 0u; j0 < nvis; j0 += ${TILE}u) {
    let j = j0 + lid;
    var p = 0.0;
    if (j < nvis) { p = exp(score(qb, kb, j) - lse); }
    pt[lid] = p;
    workgroupBarrier();
    let n = min(${TILE}u, nvis - j0);
    for (var jj = 0u; jj < n; jj++) {
      let pj = pt[jj];
      for (var c = 0u; c < ${dvChunks}u; c++) {
        let d = lid + c * ${TILE}u;
        if (d < P.Dv) { acc[c] += pj * ${ld('V[vb + (j0 + jj) * P.Dv + d]')}; }
      }
    }
    workgroupBarrier();
  }
  for (var c = 0u; c < ${dvChunks}u; c++) {
    let d = lid + c * ${TILE}u;
    if (d < P.Dv) { O[P.offO + row * P.Dv + d] = ${st('acc[c]')}; }
  }
  if (lid == 0u) { LS[P.offL + row] = ${st('lse')}; }
}`,
  };
});

/** dq per query row: dS_ij = P_ij (dout_i.v_j - D_i) scale, dq_i = sum_j dS_ij k_j. */
const dqProgram = memo((t: string, dChunks: number): Program => {
  const ld = (e: string) => (t === 'f32' ? e : `f32(${e})`);
  const st = (e: string) => (t === 'f32' ? e : `${t}(${e})`);
  return {
    name: 'attention_dq',
    inputs: ['G', 'Q', 'K', 'V', 'O', 'LS'].map((name) => ({ name, type: t as 'f32' })),
    outputs: [{ name: 'DQ', type: t as 'f32' }],
    uniforms: [...ATT_UNIFORMS, ['offG', 'u32'], ['offQ', 'u32'], ['offK', 'u32'], ['offV', 'u32'], ['offO', 'u32'], ['offL', 'u32'], ['offDQ', 'u32']],
    body: `${ATT_COMMON}
var<workgroup> red: array<f32, ${TILE}>;
var<workgroup> dsT: array<f32, ${TILE}>;
@compute @workgroup_size(${TILE})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wg_linear(wid, nwg);
  if (row >= P.rows) { return; }
  let bh = row / P.Lq;
  let i = row % P.Lq;
  let nvis = visible(i);
  let qb = P.offQ + row * P.D;
  let gb = P.offG + row * P.Dv;
  let ob = P.offO + row * P.Dv;
  let kb = P.offK + bh * P.Lk * P.D;
  let vb = P.offV + bh * P.Lk * P.Dv;
  let lse = ${ld('LS[P.offL + row]')};
  var part = 0.0;
  for (var c = lid; c < P.Dv; c += ${TILE}u) { part += ${ld('G[gb + c]')} * ${ld('O[ob + c]')}; }
  red[lid] = part;
  workgroupBarrier();
  for (var w = ${TILE / 2}u; w > 0u; w = w / 2u) {
    if (lid < w) { red[lid] = red[lid] + red[lid + w]; }
    workgroupBarrier();
  }
  let Di = red[0];
  var acc: array<f32, ${dChunks}>;
  for (var j0 = 0u; j0 < nvis; j0 += ${TILE}u) {
    let j = j0 + lid;
    var ds = 0.0;
    if (j < nvis) {
      var s = 0.0;
      for (var d = 0u; d < P.D; d++) { s += ${ld('Q[qb + d]')} * ${ld('K[kb + j * P.D + d]')}; }
      let p = exp(s * P.scale - lse);
      var dp = 0.0;
      for (var c = 0u; c < P.Dv; c++) { dp += ${ld('G[gb + c]')} * ${ld('V[vb + j * P.Dv + c]')}; }
      ds = p * (dp - Di) * P.scale;
    }
    dsT[lid] = ds;
    workgroupBarrier();
    let n = min(${TILE}u, nvis - j0);
    for (var jj = 0u; jj < n; jj++) {
      let g = dsT[jj];
      for (var c = 0u; c < ${dChunks}u; c++) {
        let d = lid + c * ${TILE}u;
        if (d < P.D) { acc[c] += g * ${ld('K[kb + (j0 + jj) * P.D + d]')}; }
      }
    }
    workgroupBarrier();
  }
  for (var c = 0u; c < ${dChunks}u; c++) {
    let d = lid + c * ${TILE}u;
    if (d < P.D) { DQ[P.offDQ + row * P.D + d] = ${st('acc[c]')}; }
  }
}`,
  };
});

/** dk, dv per key row j: dv_j = sum_i P_ij dout_i, dk_j = sum_i dS_ij q_i over the queries that see j. */
const dkvProgram = memo((t: string, dChunks: number, dvChunks: number): Program => {
  const ld = (e: string) => (t === 'f32' ? e : `f32(${e})`);
  const st = (e: string) => (t === 'f32' ? e : `${t}(${e})`);
  return {
    name: 'attention_dkv',
    inputs: ['G', 'Q', 'K', 'V', 'O', 'LS'].map((name) => ({ name, type: t as 'f32' })),
    outputs: [{ name: 'DK', type: t as 'f32' }, { name: 'DV', type: t as 'f32' }],
    uniforms: [...ATT_UNIFORMS, ['offG', 'u32'], ['offQ', 'u32'], ['offK', 'u32'], ['offV', 'u32'], ['offO', 'u32'], ['offL', 'u32'], ['offDK', 'u32'], ['offDV', 'u32']],
    body: `${ATT_COMMON}
var<workgroup> pT: array<f32, ${TILE}>;
var<workgroup> dsT: array<f32, ${TILE}>;
@compute @workgroup_size(${TILE})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let krow = wg_linear(wid, nwg);
  if (krow >= P.rows) { return; }
  let bh = krow / P.Lk;
  let j = krow % P.Lk;
  let kb = P.offK + krow * P.D;
  let vb = P.offV + krow * P.Dv;
  // queries i see key j when j < visible(i): the first such i (causal), else all
  var first = 0u;
  if (P.causal != 0u) { first = u32(max(i32(j) - i32(P.Lk) + i32(P.Lq), 0)); }
  var accK: array<f32, ${dChunks}>;
  var accV: array<f32, ${dvChunks}>;
  for (var i0 = first; i0 < P.Lq; i0 += ${TILE}u) {
    let i = i0 + lid;
    var p = 0.0;
    var ds = 0.0;
    if (i < P.Lq) {
      let row = bh * P.Lq + i;
      let qb = P.offQ + row * P.D;
      let gb = P.offG + row * P.Dv;
      let ob = P.offO + row * P.Dv;
      var s = 0.0;
      for (var d = 0u; d < P.D; d++) { s += ${ld('Q[qb + d]')} * ${ld('K[kb + d]')}; }
      p = exp(s * P.scale - ${ld('LS[P.offL + row]')});
      var dp = 0.0;
      var Di = 0.0;
      for (var c = 0u; c < P.Dv; c++) {
        let g = ${ld('G[gb + c]')};
        dp += g * ${ld('V[vb + c]')};
        Di += g * ${ld('O[ob + c]')};
      }
      ds = p * (dp - Di) * P.scale;
    }
    pT[lid] = p;
    dsT[lid] = ds;
    workgroupBarrier();
    let n = min(${TILE}u, P.Lq - i0);
    for (var ii = 0u; ii < n; ii++) {
      let row = bh * P.Lq + i0 + ii;
      let pi = pT[ii];
      let gi = dsT[ii];
      for (var c = 0u; c < ${dvChunks}u; c++) {
        let d = lid + c * ${TILE}u;
        if (d < P.Dv) { accV[c] += pi * ${ld('G[P.offG + row * P.Dv + d]')}; }
      }
      for (var c = 0u; c < ${dChunks}u; c++) {
        let d = lid + c * ${TILE}u;
        if (d < P.D) { accK[c] += gi * ${ld('Q[P.offQ + row * P.D + d]')}; }
      }
    }
    workgroupBarrier();
  }
  for (var c = 0u; c < ${dChunks}u; c++) {
    let d = lid + c * ${TILE}u;
    if (d < P.D) { DK[P.offDK + krow * P.D + d] = ${st('accK[c]')}; }
  }
  for (var c = 0u; c < ${dvChunks}u; c++) {
    let d = lid + c * ${TILE}u;
    if (d < P.Dv) { DV[P.offDV + krow * P.Dv + d] = ${st('accV[c]')}; }
  }
}`,
  };
});

const chunks = (d: number) => Math.max(1, Math.ceil(d / TILE));

registerKernel<WebGpuBackend>('attention', W, (be, [q, k, v], [out, lse], attrs) => {
  const [B, H, Lq, D] = q.shape;
  const Lk = k.shape[2], Dv = v.shape[3];
  const { causal, scale } = attentionAttrs('attention', attrs, D);
  const rows = B * H * Lq;
  const b = [q, k, v, out, lse].map((t) => be.bindView(t));
  be.dispatch(attentionProgram(wgslType(q.dtype), chunks(D), chunks(Dv)), b.slice(0, 3).map((r) => r.ref), [b[3].ref, b[4].ref],
    [rows, Lq, Lk, D, Dv, causal ? 1 : 0, scale, ...b.map((r) => r.elemOffset)], rows);
});

registerKernel<WebGpuBackend>('attention_grad', W, (be, [dout, q, k, v, out, lse], [dq, dk, dv], attrs) => {
  const [B, H, Lq, D] = q.shape;
  const Lk = k.shape[2], Dv = v.shape[3];
  const { causal, scale } = attentionAttrs('attention_grad', attrs, D);
  const ins = [dout, q, k, v, out, lse].map((t) => be.bindView(t));
  const t = wgslType(q.dtype);
  const common = [Lq, Lk, D, Dv, causal ? 1 : 0, scale, ...ins.map((r) => r.elemOffset)];
  if (sizeOf(dq.shape) > 0) {
    const bq = be.bindView(dq);
    be.dispatch(dqProgram(t, chunks(D)), ins.map((r) => r.ref), [bq.ref], [B * H * Lq, ...common, bq.elemOffset], B * H * Lq);
  }
  if (sizeOf(dk.shape) > 0 || sizeOf(dv.shape) > 0) {
    const bk = be.bindView(dk), bv = be.bindView(dv);
    be.dispatch(dkvProgram(t, chunks(D), chunks(Dv)), ins.map((r) => r.ref), [bk.ref, bv.ref], [B * H * Lk, ...common, bk.elemOffset, bv.elemOffset], B * H * Lk);
  }
});
