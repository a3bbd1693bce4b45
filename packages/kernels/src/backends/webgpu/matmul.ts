// WGSL kernel for src/ops/matmul.ts: tiles of op(a) and op(b) staged in workgroup memory, each
// thread accumulating a TM x TN register block (vec4 along n). Transposes are read in place
// (specialisation flags); broadcast batch dims walk collapsed strides (rank specialised).

import { registerKernel } from '../../dispatch.js';
import { matmulGeometry } from '../../ops/matmul.js';
import { broadcastStrides } from '../../shape.js';
import { sizeOf } from '../../types.js';
import type { TensorInfo } from '../../types.js';
import type { WebGpuBackend } from './backend.js';
import { collapse } from './elementwise.js';
import { type Program, memo, wgslType } from './program.js';

/** Tile shape: threads WGX x WGY, each computing TM rows x TN columns (TN a multiple of 4). */
export interface MatmulTile { WGX: number; WGY: number; TM: number; TN: number; BK: number; direct?: boolean }
/** Real GPUs: 64x64 tiles staged in workgroup memory. */
export const GPU_TILE: MatmulTile = { WGX: 16, WGY: 16, TM: 4, TN: 4, BK: 16 };
/**
 * Software adapters (llvmpipe runs each workgroup on one CPU thread, 8 invocations per SIMD
 * vector): barriers and workgroup-memory round trips cost more than they save, so each thread
 * reads straight from storage into a 16x8 register block (about 2x the tiled kernel there).
 */
export const CPU_TILE: MatmulTile = { WGX: 8, WGY: 8, TM: 16, TN: 8, BK: 16, direct: true };

export function tileFor(be: WebGpuBackend): MatmulTile {
  return be.cpuAdapter ? CPU_TILE : GPU_TILE;
}

/**
 * A tiled GEMM whose operands are read through functions, so matmul and the convolutions
 * (implicit GEMM: the im2col matrix is never materialised) share one kernel:
 *   `decls` defines prologue(batch), loadA(m, k) -> f32, loadB(k, n) -> f32, storeY(m, n, v);
 *   uniforms must start with M, N, K, batchBase.
 */
export function gemmProgram(name: string, inputs: Program['inputs'], outputs: Program['outputs'], uniforms: Program['uniforms'], decls: string, tile: MatmulTile): Program {
  const { WGX, WGY, TM, TN, BK } = tile;
  const BM = TM * WGY, BN = TN * WGX, NT = WGX * WGY, V = TN / 4;
  if (tile.direct) return directGemm(name, inputs, outputs, uniforms, decls, tile);
  return {
    name, inputs, outputs, uniforms,
    body: `${decls}
var<workgroup> As: array<f32, ${BK * BM}>;
var<workgroup> Bs: array<vec4<f32>, ${BK * (BN / 4)}>;
@compute @workgroup_size(${WGX}, ${WGY})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  prologue(P.batchBase + wid.z);
  let m0 = wid.y * ${BM}u;
  let n0 = wid.x * ${BN}u;
  var acc: array<array<vec4<f32>, ${V}>, ${TM}>;
  for (var k0 = 0u; k0 < P.K; k0 += ${BK}u) {
    for (var l = lid; l < ${BM * BK}u; l += ${NT}u) {
      let kk = l / ${BM}u;
      let mm = l % ${BM}u;
      let m = m0 + mm;
      let k = k0 + kk;
      var v = 0.0;
      if (m < P.M && k < P.K) { v = loadA(m, k); }
      As[kk * ${BM}u + mm] = v;
    }
    for (var l = lid; l < ${BK * (BN / 4)}u; l += ${NT}u) {
      let kk = l / ${BN / 4}u;
      let nq = l % ${BN / 4}u;
      let k = k0 + kk;
      var v = vec4<f32>(0.0);
      if (k < P.K) {
        for (var j = 0u; j < 4u; j++) {
          let n = n0 + nq * 4u + j;
          if (n < P.N) { v[j] = loadB(k, n); }
        }
      }
      Bs[l] = v;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${BK}u; kk++) {
      var b: array<vec4<f32>, ${V}>;
      for (var j = 0u; j < ${V}u; j++) { b[j] = Bs[kk * ${BN / 4}u + j * ${WGX}u + lid3.x]; }
      for (var i = 0u; i < ${TM}u; i++) {
        let a = As[kk * ${BM}u + i * ${WGY}u + lid3.y];
        for (var j = 0u; j < ${V}u; j++) { acc[i][j] = fma(vec4<f32>(a), b[j], acc[i][j]); }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < ${TM}u; i++) {
    let m = m0 + i * ${WGY}u + lid3.y;
    if (m >= P.M) { continue; }
    for (var j = 0u; j < ${V}u; j++) {
      let nq = j * ${WGX}u + lid3.x;
      for (var e = 0u; e < 4u; e++) {
        let n = n0 + nq * 4u + e;
        if (n < P.N) { storeY(m, n, acc[i][j][e]); }
      }
    }
  }
}`,
  };
}

/** The same GEMM without workgroup memory: each thread reads its operands straight from storage. */
function directGemm(name: string, inputs: Program['inputs'], outputs: Program['outputs'], uniforms: Program['uniforms'], decls: string, tile: MatmulTile): Program {
  const { WGX, WGY, TM, TN } = tile;
  const V = TN / 4;
  return {
    name, inputs, outputs, uniforms,
    body: `${decls}
@compute @workgroup_size(${WGX}, ${WGY})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
  prologue(P.batchBase + wid.z);
  let m0 = (wid.y * ${WGY}u + lid3.y) * ${TM}u;
  let n0 = (wid.x * ${WGX}u + lid3.x) * ${TN}u;
  var acc: array<array<vec4<f32>, ${V}>, ${TM}>;
  for (var k = 0u; k < P.K; k++) {
    var b: array<vec4<f32>, ${V}>;
    for (var j = 0u; j < ${V}u; j++) {
      for (var e = 0u; e < 4u; e++) {
        let n = n0 + j * 4u + e;
        if (n < P.N) { b[j][e] = loadB(k, n); }
      }
    }
    for (var i = 0u; i < ${TM}u; i++) {
      let m = m0 + i;
      var a = 0.0;
      if (m < P.M) { a = loadA(m, k); }
      for (var j = 0u; j < ${V}u; j++) { acc[i][j] = fma(vec4<f32>(a), b[j], acc[i][j]); }
    }
  }
  for (var i = 0u; i < ${TM}u; i++) {
    let m = m0 + i;
    if (m >= P.M) { continue; }
    for (var j = 0u; j < ${V}u; j++) {
      for (var e = 0u; e < 4u; e++) {
        let n = n0 + j * 4u + e;
        if (n < P.N) { storeY(m, n, acc[i][j][e]); }
      }
    }
  }
}`,
  };
}

/** Workgroups of a GEMM over M x N with `tile`. */
export function gemmGrid(M: number, N: number, tile: MatmulTile): [number, number] {
  return [Math.ceil(N / (tile.TN * tile.WGX)), Math.ceil(M / (tile.TM * tile.WGY))];
}

export const matmulProgram = memo((t: string, transA: boolean, transB: boolean, batchRank: number, tile: MatmulTile): Program => {
  const ld = (e: string) => (t === 'f32' ? e : `f32(${e})`);
  const st = (e: string) => (t === 'f32' ? e : `${t}(${e})`);
  const uniforms: Program['uniforms'] = [['M', 'u32'], ['N', 'u32'], ['K', 'u32'], ['batchBase', 'u32'], ['offA', 'u32'], ['offB', 'u32'], ['offY', 'u32']];
  for (let d = 0; d < batchRank; d++) uniforms.push([`bd${d}`, 'u32'], [`sa${d}`, 'u32'], [`sb${d}`, 'u32']);
  const walk: string[] = [];
  for (let d = batchRank - 1; d >= 0; d--) walk.push(`  { let c = r % P.bd${d}; r = r / P.bd${d}; ia += c * P.sa${d}; ib += c * P.sb${d}; }`);
  // op(a)[m, k] and op(b)[k, n] inside one matrix
  const aAt = transA ? 'k * P.M + m' : 'm * P.K + k';
  const bAt = transB ? 'n * P.K + k' : 'k * P.N + n';
  const decls = `
var<private> aBase: u32;
var<private> bBase: u32;
var<private> yBase: u32;
fn prologue(batch: u32) {
  var r = batch;
  var ia = 0u;
  var ib = 0u;
${walk.join('\n')}
  aBase = P.offA + ia * P.M * P.K;
  bBase = P.offB + ib * P.K * P.N;
  yBase = P.offY + batch * P.M * P.N;
}
fn loadA(m: u32, k: u32) -> f32 { return ${ld(`A[aBase + ${aAt}]`)}; }
fn loadB(k: u32, n: u32) -> f32 { return ${ld(`B[bBase + ${bAt}]`)}; }
fn storeY(m: u32, n: u32, v: f32) { Y[yBase + m * P.N + n] = ${st('v')}; }`;
  return gemmProgram(`matmul${transA ? '_tA' : ''}${transB ? '_tB' : ''}`,
    [{ name: 'A', type: t as 'f32' }, { name: 'B', type: t as 'f32' }], [{ name: 'Y', type: t as 'f32' }], uniforms, decls, tile);
});

export function runMatmul(be: WebGpuBackend, a: TensorInfo, b: TensorInfo, y: TensorInfo, transA: boolean, transB: boolean, tile = tileFor(be)): void {
  const g = matmulGeometry(a.shape, b.shape, { transA, transB });
  const { M, N, K } = g;
  const batch = sizeOf(g.batchShape);
  const sa = broadcastStrides(g.aBatchShape, g.batchShape);
  const sb = broadcastStrides(g.bBatchShape, g.batchShape);
  const c = collapse(g.batchShape, [sa, sb]);
  const rank = c.shape.length;
  const prog = matmulProgram(wgslType(a.dtype), transA, transB, rank, tile);
  const ba = be.bindView(a), bb = be.bindView(b), by = be.bindView(y);
  const [gx, gy] = gemmGrid(M, N, tile);
  const maxZ = be.limits.maxComputeWorkgroupsPerDimension;
  for (let base = 0; base < batch; base += maxZ) {
    const u = [M, N, K, base, ba.elemOffset, bb.elemOffset, by.elemOffset];
    for (let d = 0; d < rank; d++) u.push(c.shape[d], c.strides[0][d], c.strides[1][d]);
    be.dispatch(prog, [ba.ref, bb.ref], [by.ref], u, [gx, gy, Math.min(maxZ, batch - base)]);
  }
}

registerKernel<WebGpuBackend>('matmul', 'webgpu', (be, [a, b], [y], attrs) => {
  runMatmul(be, a, b, y, attrs.transA === true, attrs.transB === true);
});
