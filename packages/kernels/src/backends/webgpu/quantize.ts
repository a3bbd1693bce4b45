// WGSL kernels for src/ops/quantize.ts: the fused IBQ quantizer, forward and backward. No
// [tokens x codebook] tensor ever exists: every pass recomputes the logits z.E^T it needs, and
// the codebook is visited in chunks of rows (attribute `chunk`, else as many rows as one
// binding holds), so a 262144 x 256 codebook never needs a binding over 128 MiB. Per-token
// running state (max, argmax, sum exp, sum exp(/temperature)) lives in a scratch buffer between
// chunks; it and the other scratch buffers are f32 whatever the tensors' dtype (f16 tensors are
// converted on load and store; all math is f32). Forward passes: F1 state per chunk; F2 entropy, zq, squared error per token; F3
// avgP per codeword; F4 the four losses. Backward: B0 the straight-through gradient g and dz's
// commitment term; B1 per-token sums (softmax-weighted <g,E>, entropy, <c,p>); B2 dz; B3 dcodebook.

import { registerKernel } from '../../dispatch.js';
import { AVG_ENTROPY_EPS, quantizeAttrs } from '../../ops/quantize.js';
import type { TensorInfo } from '../../types.js';
import type { BindRef, WebGpuBackend } from './backend.js';
import { wgSumWgsl } from './math.js';
import { type Program, type WgslScalar, memo, wgslType } from './program.js';

const W = 'webgpu';
const WG = 64;

const U: Program['uniforms'] = [['T', 'u32'], ['D', 'u32'], ['N', 'u32'], ['start', 'u32'], ['rows', 'u32'], ['first', 'u32'], ['tau', 'f32'], ['beta', 'f32']];

const WG_SUM = wgSumWgsl(WG);
/** Loads an element of a tensor binding of type `t` as f32 / stores an f32 into one. */
type Conv = (e: string) => string;
const convs = (t: WgslScalar): { ld: Conv; st: Conv } => ({
  ld: (e) => (t === 'f32' ? e : `f32(${e})`),
  st: (e) => (t === 'f32' ? e : `${t}(${e})`),
});
const zdotWgsl = (ld: Conv) => `
fn zdot(t: u32, nl: u32) -> f32 {
  var s = 0.0;
  for (var d = 0u; d < P.D; d++) { s += ${ld('Z[P.off_Z + t * P.D + d]')} * ${ld('E[P.off_E + nl * P.D + d]')}; }
  return s;
}`;
const ST_FNS = `
fn lseT_of(t: u32) -> f32 { return ST[4u * t] / P.tau + log(ST[4u * t + 2u]); }
fn lse_of(t: u32) -> f32 { return ST[4u * t] + log(ST[4u * t + 1u]); }`;

/** Running state (m, s, sT, arg) of a row's logits; a wins ties (earlier indices). */
const STATE = `
struct St { m: f32, s: f32, sT: f32, arg: u32 };
fn st_acc(a: St, l: f32, n: u32) -> St {
  if (l > a.m) { return St(l, a.s * exp(a.m - l) + 1.0, a.sT * exp((a.m - l) / P.tau) + 1.0, n); }
  return St(a.m, a.s + exp(l - a.m), a.sT + exp((l - a.m) / P.tau), a.arg);
}
fn st_combine(a: St, b: St) -> St {
  if (b.m == -f32_inf()) { return a; }
  if (a.m == -f32_inf()) { return b; }
  let m = max(a.m, b.m);
  var arg = a.arg;
  if (b.m > a.m || (b.m == a.m && b.arg < a.arg)) { arg = b.arg; }
  return St(m, a.s * exp(a.m - m) + b.s * exp(b.m - m), a.sT * exp((a.m - m) / P.tau) + b.sT * exp((b.m - m) / P.tau), arg);
}
var<workgroup> sst: array<St, ${WG}>;`;

type Pass = 'F1' | 'F2' | 'F3' | 'F4' | 'B0' | 'B1' | 'B2' | 'B3';

/** Bindings per pass: read-only then read-write names. Z and E are z and the codebook chunk. */
const BINDINGS: Record<Pass, [string[], string[]]> = {
  F1: [['Z', 'E'], ['ST']],
  F2: [['Z', 'E', 'ST'], ['IND', 'ZQ', 'LSE', 'LSET', 'HS', 'SQ']],
  F3: [['Z', 'E', 'ST'], ['AVGP']],
  F4: [['HS', 'SQ', 'AVGP'], ['LOSS']],
  B0: [['Z', 'E', 'IND', 'DZQ', 'DL'], ['G', 'DZ']],
  B1: [['Z', 'E', 'LSE', 'LSET', 'AVGP', 'G'], ['SUMS']],
  B2: [['Z', 'E', 'LSE', 'LSET', 'AVGP', 'G', 'SUMS', 'DL'], ['DZ']],
  B3: [['Z', 'E', 'IND', 'LSE', 'LSET', 'AVGP', 'G', 'SUMS', 'DL'], ['DE']],
};

/** c_n of the avg-entropy gradient and g.E_n (G is f32 scratch). */
const cgWgsl = (ld: Conv) => `
fn c_of(n: u32) -> f32 { let a = ${ld('AVGP[P.off_AVGP + n]')}; return -(log(a + ${AVG_ENTROPY_EPS}) + a / (a + ${AVG_ENTROPY_EPS})); }
fn gdot(t: u32, nl: u32) -> f32 {
  var s = 0.0;
  for (var d = 0u; d < P.D; d++) { s += G[t * P.D + d] * ${ld('E[P.off_E + nl * P.D + d]')}; }
  return s;
}`;

/** dLogit for token t, chunk row nl (global n), given l = z.E_n and gE = g.E_n. */
const dlogitWgsl = (ld: Conv) => `${cgWgsl(ld)}
fn dlogit(t: u32, n: u32, l: f32, gE: f32) -> f32 {
  let soft = exp(l - ${ld('LSE[P.off_LSE + t]')});
  let logp = l / P.tau - ${ld('LSET[P.off_LSET + t]')};
  let p = exp(logp);
  let scale = 1.0 / (f32(P.T) * P.tau);
  let gS = ${ld('DL[P.off_DL + 1]')} + ${ld('DL[P.off_DL + 3]')};
  let gA = ${ld('DL[P.off_DL + 2]')} - ${ld('DL[P.off_DL + 3]')};
  return soft * (gE - SUMS[3u * t]) - gS * p * (logp + SUMS[3u * t + 1u]) * scale + gA * p * (c_of(n) - SUMS[3u * t + 2u]) * scale;
}`;

/** Scratch bindings: f32 whatever the tensors' dtype. */
const SCRATCH = new Set(['ST', 'HS', 'SQ', 'G', 'SUMS']);

const quantProgram = memo((pass: Pass, dChunks: number, t: WgslScalar): Program => {
  const [ins, outs] = BINDINGS[pass];
  const type = (n: string): WgslScalar => (n === 'IND' ? 'i32' : SCRATCH.has(n) ? 'f32' : t);
  const { ld, st } = convs(t);
  let body = '';
  const head = `@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wg_linear(wid, nwg);`;
  if (pass === 'F1') {
    body = `${STATE}
${head}
  let t = row;
  if (t >= P.T) { return; }
  var s = St(-f32_inf(), 0.0, 0.0, 0u);
  for (var nl = lid; nl < P.rows; nl += ${WG}u) { s = st_acc(s, zdot(t, nl), P.start + nl); }
  sst[lid] = s;
  workgroupBarrier();
  for (var w = ${WG / 2}u; w > 0u; w = w / 2u) {
    if (lid < w) { sst[lid] = st_combine(sst[lid], sst[lid + w]); }
    workgroupBarrier();
  }
  if (lid == 0u) {
    var r = sst[0];
    if (P.first == 0u) { r = st_combine(St(ST[4u * t], ST[4u * t + 1u], ST[4u * t + 2u], bitcast<u32>(ST[4u * t + 3u])), r); }
    ST[4u * t] = r.m; ST[4u * t + 1u] = r.s; ST[4u * t + 2u] = r.sT; ST[4u * t + 3u] = bitcast<f32>(r.arg);
  }
}`;
  } else if (pass === 'F2') {
    body = `${head}
  let t = row;
  if (t >= P.T) { return; }
  let lT = lseT_of(t);
  var h = 0.0;
  for (var nl = lid; nl < P.rows; nl += ${WG}u) {
    let logp = zdot(t, nl) / P.tau - lT;
    h -= exp(logp) * logp;
  }
  let hs = wg_sum(h, lid);
  let arg = bitcast<u32>(ST[4u * t + 3u]);
  var sq = 0.0;
  let hit = arg >= P.start && arg < P.start + P.rows;
  if (hit) {
    for (var d = lid; d < P.D; d += ${WG}u) {
      let e = ${ld('E[P.off_E + (arg - P.start) * P.D + d]')};
      ZQ[P.off_ZQ + t * P.D + d] = ${st('e')};
      let diff = e - ${ld('Z[P.off_Z + t * P.D + d]')};
      sq += diff * diff;
    }
  }
  let sqs = wg_sum(sq, lid);
  if (lid == 0u) {
    if (P.first == 1u) {
      HS[t] = hs;
      IND[P.off_IND + t] = i32(arg);
      LSE[P.off_LSE + t] = ${st('lse_of(t)')};
      LSET[P.off_LSET + t] = ${st('lT')};
    } else { HS[t] = HS[t] + hs; }
    if (hit) { SQ[t] = sqs; }
  }
}`;
  } else if (pass === 'F3') {
    body = `${head}
  let nl = row;
  if (nl >= P.rows) { return; }
  var a = 0.0;
  for (var t = lid; t < P.T; t += ${WG}u) { a += exp(zdot(t, nl) / P.tau - lseT_of(t)); }
  let s = wg_sum(a, lid);
  if (lid == 0u) { AVGP[P.off_AVGP + P.start + nl] = ${st('s / f32(P.T)')}; }
}`;
  } else if (pass === 'F4') {
    body = `${head}
  var h = 0.0;
  var sq = 0.0;
  for (var t = lid; t < P.T; t += ${WG}u) { h += HS[t]; sq += SQ[t]; }
  var ae = 0.0;
  for (var n = lid; n < P.N; n += ${WG}u) { let a = ${ld('AVGP[P.off_AVGP + n]')}; ae -= a * log(a + ${AVG_ENTROPY_EPS}); }
  let H = wg_sum(h, lid);
  let S = wg_sum(sq, lid);
  let A = wg_sum(ae, lid);
  if (lid == 0u) {
    let mse = S / f32(P.T * P.D);
    let sample = H / f32(P.T);
    LOSS[P.off_LOSS + 0u] = ${st('mse + mse + P.beta * mse')};
    LOSS[P.off_LOSS + 1u] = ${st('sample')};
    LOSS[P.off_LOSS + 2u] = ${st('A')};
    LOSS[P.off_LOSS + 3u] = ${st('sample - A')};
  }
}`;
  } else if (pass === 'B0') {
    body = `${head}
  let t = row;
  if (t >= P.T) { return; }
  let ind = IND[P.off_IND + t];
  let inChunk = ind >= 0 && u32(ind) >= P.start && u32(ind) < P.start + P.rows;
  let outside = ind < 0 || u32(ind) >= P.N;
  if (!inChunk && !(outside && P.first == 1u)) { return; }
  let M = f32(P.T * P.D);
  for (var d = lid; d < P.D; d += ${WG}u) {
    var e = 0.0;
    if (inChunk) { e = ${ld('E[P.off_E + (u32(ind) - P.start) * P.D + d]')}; }
    let r = e - ${ld('Z[P.off_Z + t * P.D + d]')};
    let dl0 = ${ld('DL[P.off_DL + 0u]')};
    G[t * P.D + d] = ${ld('DZQ[P.off_DZQ + t * P.D + d]')} + 2.0 * dl0 * r / M;
    DZ[P.off_DZ + t * P.D + d] = ${st('-4.0 * dl0 * r / M')};
  }
}`;
  } else if (pass === 'B1') {
    body = `${cgWgsl(ld)}
${head}
  let t = row;
  if (t >= P.T) { return; }
  var sd = 0.0; var h = 0.0; var cd = 0.0;
  for (var nl = lid; nl < P.rows; nl += ${WG}u) {
    let l = zdot(t, nl);
    sd += exp(l - ${ld('LSE[P.off_LSE + t]')}) * gdot(t, nl);
    let logp = l / P.tau - ${ld('LSET[P.off_LSET + t]')};
    let p = exp(logp);
    h -= p * logp;
    cd += c_of(P.start + nl) * p;
  }
  let a = wg_sum(sd, lid);
  let b = wg_sum(h, lid);
  let c = wg_sum(cd, lid);
  if (lid == 0u) {
    if (P.first == 1u) { SUMS[3u * t] = a; SUMS[3u * t + 1u] = b; SUMS[3u * t + 2u] = c; }
    else { SUMS[3u * t] += a; SUMS[3u * t + 1u] += b; SUMS[3u * t + 2u] += c; }
  }
}`;
  } else if (pass === 'B2') {
    // dz accumulates in the output tensor: an f16 dz is rounded once per chunk (B0, then each B2).
    body = `${dlogitWgsl(ld)}
var<workgroup> dlT: array<f32, ${WG}>;
${head}
  let t = row;
  if (t >= P.T) { return; }
  var acc: array<f32, ${dChunks}>;
  for (var n0 = 0u; n0 < P.rows; n0 += ${WG}u) {
    let nl = n0 + lid;
    var v = 0.0;
    if (nl < P.rows) { v = dlogit(t, P.start + nl, zdot(t, nl), gdot(t, nl)); }
    dlT[lid] = v;
    workgroupBarrier();
    let cnt = min(${WG}u, P.rows - n0);
    for (var k = 0u; k < cnt; k++) {
      for (var c = 0u; c < ${dChunks}u; c++) {
        let d = lid + c * ${WG}u;
        if (d < P.D) { acc[c] += dlT[k] * ${ld('E[P.off_E + (n0 + k) * P.D + d]')}; }
      }
    }
    workgroupBarrier();
  }
  for (var c = 0u; c < ${dChunks}u; c++) {
    let d = lid + c * ${WG}u;
    if (d < P.D) { DZ[P.off_DZ + t * P.D + d] = ${st(`${ld('DZ[P.off_DZ + t * P.D + d]')} + acc[c]`)}; }
  }
}`;
  } else {
    body = `${dlogitWgsl(ld)}
var<workgroup> dlT: array<f32, ${WG}>;
var<workgroup> hitT: array<u32, ${WG}>;
${head}
  let nl = row;
  if (nl >= P.rows) { return; }
  let n = P.start + nl;
  let M = f32(P.T * P.D);
  var acc: array<f32, ${dChunks}>;
  for (var t0 = 0u; t0 < P.T; t0 += ${WG}u) {
    let t = t0 + lid;
    var v = 0.0;
    var hit = 0u;
    if (t < P.T) {
      v = dlogit(t, n, zdot(t, nl), gdot(t, nl));
      hit = select(0u, 1u, IND[P.off_IND + t] == i32(n));
    }
    dlT[lid] = v;
    hitT[lid] = hit;
    workgroupBarrier();
    let cnt = min(${WG}u, P.T - t0);
    for (var k = 0u; k < cnt; k++) {
      let tk = t0 + k;
      for (var c = 0u; c < ${dChunks}u; c++) {
        let d = lid + c * ${WG}u;
        if (d < P.D) {
          let zv = ${ld('Z[P.off_Z + tk * P.D + d]')};
          var add = dlT[k] * zv;
          if (hitT[k] == 1u) {
            let r = ${ld('E[P.off_E + nl * P.D + d]')} - zv;
            add += G[tk * P.D + d] + 2.0 * P.beta * ${ld('DL[P.off_DL + 0]')} * r / M;
          }
          acc[c] += add;
        }
      }
    }
    workgroupBarrier();
  }
  for (var c = 0u; c < ${dChunks}u; c++) {
    let d = lid + c * ${WG}u;
    if (d < P.D) { DE[P.off_DE + n * P.D + d] = ${st('acc[c]')}; }
  }
}`;
  }
  const all = [...ins, ...outs];
  const decls = [WG_SUM, all.includes('Z') ? zdotWgsl(ld) : '', all.includes('ST') ? ST_FNS : ''].join('\n');
  return {
    name: `ibq_quantize_${pass}`,
    inputs: ins.map((name) => ({ name, type: type(name) })),
    outputs: outs.map((name) => ({ name, type: type(name) })),
    uniforms: [...U, ...all.map((n): [string, 'u32'] => [`off_${n}`, 'u32'])],
    body: `${decls}
${body}`,
  };
});

/** Codebook rows per chunk: the attribute, else what one binding holds. */
function chunkRows(be: WebGpuBackend, N: number, D: number, chunk: number | undefined, dtype: TensorInfo['dtype']): number {
  const fit = Math.max(1, Math.floor(be.maxViewElements(dtype) / Math.max(D, 1)));
  return Math.max(1, Math.min(N, chunk ?? N, fit));
}

type Bound = { ref: BindRef; elemOffset: number };

interface Ctx {
  be: WebGpuBackend;
  T: number; D: number; N: number;
  tau: number; beta: number;
  codebook: TensorInfo;
  /** Bindings by name (tensors at their offsets, scratch at 0); E is bound per chunk. */
  refs: Record<string, Bound>;
}

function run(c: Ctx, pass: Pass, start: number, rows: number, workgroups: number): void {
  const [ins, outs] = BINDINGS[pass];
  const e = c.be.bindView({ ...c.codebook, offset: c.codebook.offset + start * c.D, shape: [rows, c.D] });
  const get = (n: string): Bound => (n === 'E' ? e : c.refs[n]);
  const dChunks = Math.max(1, Math.ceil(c.D / WG));
  c.be.dispatch(quantProgram(pass, dChunks, wgslType(c.codebook.dtype)), ins.map((n) => get(n).ref), outs.map((n) => get(n).ref), [
    c.T, c.D, c.N, start, rows, start === 0 ? 1 : 0, c.tau, c.beta, ...[...ins, ...outs].map((n) => get(n).elemOffset),
  ], workgroups);
}

function chunks(c: Ctx, C: number, f: (start: number, rows: number) => void): void {
  for (let s = 0; s < c.N; s += C) f(s, Math.min(C, c.N - s));
}

registerKernel<WebGpuBackend>('ibq_quantize', W, (be, [z, codebook], [indices, zq, losses, lse, lseT, avgP], attrs) => {
  const { beta, temperature, chunk } = quantizeAttrs('ibq_quantize', attrs);
  const [T, D] = z.shape;
  const N = codebook.shape[0];
  const bind = (t: TensorInfo) => be.bindView(t);
  const scratch = (n: number): Bound => ({ ref: be.scratchBuffer(n * 4), elemOffset: 0 });
  const refs = {
    Z: bind(z), IND: bind(indices), ZQ: bind(zq), LSE: bind(lse), LSET: bind(lseT), AVGP: bind(avgP), LOSS: bind(losses),
    ST: scratch(4 * T), HS: scratch(T), SQ: scratch(T),
  };
  const c: Ctx = { be, T, D, N, tau: temperature, beta, codebook, refs };
  const C = chunkRows(be, N, D, chunk, codebook.dtype);
  chunks(c, C, (s, r) => run(c, 'F1', s, r, T));
  chunks(c, C, (s, r) => run(c, 'F2', s, r, T));
  chunks(c, C, (s, r) => run(c, 'F3', s, r, r));
  run(c, 'F4', 0, Math.min(C, N), 1);
});

registerKernel<WebGpuBackend>('ibq_quantize_grad', W, (be, [dzq, dlosses, z, codebook, indices, lse, lseT, avgP], [dz, dcodebook], attrs) => {
  const { beta, temperature, chunk } = quantizeAttrs('ibq_quantize_grad', attrs);
  const [T, D] = z.shape;
  const N = codebook.shape[0];
  const bind = (t: TensorInfo) => be.bindView(t);
  const scratch = (n: number): Bound => ({ ref: be.scratchBuffer(n * 4), elemOffset: 0 });
  const refs = {
    Z: bind(z), IND: bind(indices), DZQ: bind(dzq), DL: bind(dlosses), LSE: bind(lse), LSET: bind(lseT), AVGP: bind(avgP),
    DZ: bind(dz), DE: bind(dcodebook), G: scratch(T * D), SUMS: scratch(3 * T),
  };
  const c: Ctx = { be, T, D, N, tau: temperature, beta, codebook, refs };
  const C = chunkRows(be, N, D, chunk, codebook.dtype);
  chunks(c, C, (s, r) => run(c, 'B0', s, r, T));
  chunks(c, C, (s, r) => run(c, 'B1', s, r, T));
  chunks(c, C, (s, r) => run(c, 'B2', s, r, T));
  chunks(c, C, (s, r) => run(c, 'B3', s, r, r));
});
