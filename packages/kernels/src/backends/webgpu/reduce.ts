// WGSL kernels for src/ops/reduce.ts. Every reduction works on the [outer, reduced, inner]
// split: one row per output element, element r of row (o, i) at o*reduced*inner + r*inner + i.
// Long rows get a workgroup each (threads stride the row, then a tree in workgroup memory, or
// subgroup operations for sums where the adapter has them); short rows get a thread each.

import { registerKernel } from '../../dispatch.js';
import { axisAttr, reduceGeometry } from '../../ops/reduce.js';
import { splitAxes } from '../../shape.js';
import type { TensorInfo } from '../../types.js';
import type { WebGpuBackend } from './backend.js';
import { type Program, groups, memo, wgslType } from './program.js';

const W = 'webgpu';
const WG = 64;
/** Rows no longer than this are reduced by one thread each. */
const SHORT_ROW = 32;

interface Fold {
  /** WGSL type of the running state. */
  state: string;
  /** Extra declarations (structs, helpers). */
  decl?: string;
  init: string;
  /** Accumulates `v` (f32) at row index `r` (u32) into `s`; returns the new state. */
  acc: string;
  /** Merges `a` (earlier indices) and `b`; returns the merged state. */
  combine: string;
  /** Output value from `s` and the row length `n` (u32). */
  fin: string;
  /** Subgroup reduction of a state `s`, when one exists (sums). */
  subgroup?: string;
}

const INF = 'f32_inf()';
const NAN = 'f32_nan()';
const isNan = (e: string) => `(${e} != ${e})`;

const sumFold: Fold = { state: 'f32', init: '0.0', acc: 's + v', combine: 'a + b', fin: 's', subgroup: 'subgroupAdd(s)' };
const extremeFold = (isMax: boolean): Fold => ({
  state: 'f32',
  init: isMax ? `-${INF}` : INF,
  acc: `select(s, v, !${isNan('s')} && (${isNan('v')} || v ${isMax ? '>' : '<'} s))`,
  combine: `select(a, b, !${isNan('a')} && (${isNan('b')} || b ${isMax ? '>' : '<'} a))`,
  fin: 's',
});
/** (max, sum of exp(x - max)) merged online; -inf elements contribute nothing. */
export const lseDecl = `
fn lse_acc(s: vec2<f32>, v: f32) -> vec2<f32> {
  if (v == -${INF} || ${isNan('v')}) { return s; }
  if (v > s.x) { return vec2<f32>(v, s.y * exp(s.x - v) + 1.0); }
  return vec2<f32>(s.x, s.y + exp(v - s.x));
}
fn lse_combine(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
  if (a.x == -${INF}) { return b; }
  if (b.x == -${INF}) { return a; }
  let m = max(a.x, b.x);
  return vec2<f32>(m, a.y * exp(a.x - m) + b.y * exp(b.x - m));
}
fn lse_fin(s: vec2<f32>) -> f32 {
  if (s.x == -${INF} || s.x == ${INF}) { return s.x; }
  return s.x + log(s.y);
}`;
const lseFold: Fold = {
  state: 'vec2<f32>', decl: lseDecl, init: `vec2<f32>(-${INF}, 0.0)`, acc: 'lse_acc(s, v)', combine: 'lse_combine(a, b)', fin: 'lse_fin(s)',
};
/** (value, index): the first maximal index, the first NaN beating everything. */
const argmaxFold: Fold = {
  state: 'AM',
  decl: `
struct AM { v: f32, i: u32 };
fn am_better(a: AM, b: AM) -> bool {
  if (${isNan('a.v')}) { return ${isNan('b.v')} && b.i < a.i; }
  if (${isNan('b.v')}) { return true; }
  return b.v > a.v || (b.v == a.v && b.i < a.i);
}
fn am_acc(s: AM, v: f32, r: u32) -> AM { let b = AM(v, r); if (am_better(s, b)) { return b; } return s; }
fn am_combine(a: AM, b: AM) -> AM { if (am_better(a, b)) { return b; } return a; }`,
  init: `AM(-${INF}, 0xffffffffu)`, acc: 'am_acc(s, v, r)', combine: 'am_combine(a, b)', fin: 'i32(s.i)',
};

const FOLDS: Record<string, Fold> = {
  sum: sumFold,
  mean: { ...sumFold, fin: `select(s / f32(n), ${NAN}, n == 0u)` },
  max: extremeFold(true),
  min: extremeFold(false),
  logsumexp: lseFold,
  argmax: argmaxFold,
};

const reduceProgram = memo((op: string, tx: string, ty: string, perThread: boolean, subgroups: boolean): Program => {
  const f = FOLDS[op];
  const ld = (e: string) => (tx === 'f32' ? e : `f32(${e})`);
  const st = (e: string) => (ty === 'f32' || ty === 'i32' ? e : `${ty}(${e})`);
  const header = `${f.decl ?? ''}
fn fold_acc(s: ${f.state}, v: f32, r: u32) -> ${f.state} { return ${f.acc}; }
fn fold_combine(a: ${f.state}, b: ${f.state}) -> ${f.state} { return ${f.combine}; }
fn fold_fin(s: ${f.state}, n: u32) -> ${ty === 'i32' ? 'i32' : 'f32'} { return ${f.fin}; }`;
  const uniforms: Program['uniforms'] = [['rows', 'u32'], ['n', 'u32'], ['inner', 'u32'], ['offX', 'u32'], ['offY', 'u32']];
  const io = { inputs: [{ name: 'X', type: tx as 'f32' }], outputs: [{ name: 'Y', type: ty as 'f32' }], uniforms };
  if (perThread) {
    return {
      name: op, ...io,
      body: `${header}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wg_linear(wid, nwg) * ${WG}u + lid;
  if (row >= P.rows) { return; }
  let o = row / P.inner;
  let i = row % P.inner;
  let base = P.offX + o * P.n * P.inner + i;
  var s: ${f.state} = ${f.init};
  for (var r = 0u; r < P.n; r++) { s = fold_acc(s, ${ld('X[base + r * P.inner]')}, r); }
  Y[P.offY + row] = ${st('fold_fin(s, P.n)')};
}`,
    };
  }
  const useSub = subgroups && !!f.subgroup;
  const tree = useSub
    ? `
  let red = ${f.subgroup!.replace('s', 's')};
  if (sgi == 0u) { sh[lid / sgs] = red; }
  workgroupBarrier();
  if (lid == 0u) {
    var t: ${f.state} = ${f.init};
    for (var k = 0u; k < (${WG}u + sgs - 1u) / sgs; k++) { t = fold_combine(t, sh[k]); }
    Y[P.offY + row] = ${st('fold_fin(t, P.n)')};
  }`
    : `
  sh[lid] = s;
  workgroupBarrier();
  for (var w = ${WG / 2}u; w > 0u; w = w / 2u) {
    if (lid < w) { sh[lid] = fold_combine(sh[lid], sh[lid + w]); }
    workgroupBarrier();
  }
  if (lid == 0u) { Y[P.offY + row] = ${st('fold_fin(sh[0], P.n)')}; }`;
  return {
    name: op, ...io, subgroups: useSub,
    body: `${header}
var<workgroup> sh: array<${f.state}, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32${
  useSub ? ', @builtin(subgroup_invocation_id) sgi: u32, @builtin(subgroup_size) sgs: u32' : ''}) {
  let row = wg_linear(wid, nwg);
  if (row >= P.rows) { return; }
  let o = row / P.inner;
  let i = row % P.inner;
  let base = P.offX + o * P.n * P.inner + i;
  var s: ${f.state} = ${f.init};
  for (var r = lid; r < P.n; r += ${WG}u) { s = fold_acc(s, ${ld('X[base + r * P.inner]')}, r); }
${tree}
}`,
  };
});

function runReduce(be: WebGpuBackend, op: string, x: TensorInfo, y: TensorInfo, outer: number, n: number, inner: number): void {
  const rows = outer * inner;
  const perThread = n <= SHORT_ROW;
  const prog = reduceProgram(op, wgslType(x.dtype), wgslType(y.dtype), perThread, be.hasSubgroups);
  const bx = be.bindView(x), by = be.bindView(y);
  be.dispatch(prog, [bx.ref], [by.ref], [rows, n, inner, bx.elemOffset, by.elemOffset], perThread ? groups(rows, WG) : rows);
}

for (const op of ['sum', 'mean', 'max', 'min', 'logsumexp']) {
  registerKernel<WebGpuBackend>(op, W, (be, [x], [y], attrs) => {
    const g = reduceGeometry(op, x.shape, attrs);
    runReduce(be, op, x, y, g.outer, g.reduced, g.inner);
  });
}

registerKernel<WebGpuBackend>('argmax', W, (be, [x], [y], attrs) => {
  const axis = axisAttr('argmax', attrs, x.shape.length);
  const [outer, n, inner] = splitAxes(x.shape, axis, axis);
  runReduce(be, 'argmax', x, y, outer, n, inner);
});

const softmaxProgram = memo((t: string, log: boolean): Program => {
  const ld = (e: string) => (t === 'f32' ? e : `f32(${e})`);
  const st = (e: string) => (t === 'f32' ? e : `${t}(${e})`);
  return {
    name: log ? 'log_softmax' : 'softmax',
    inputs: [{ name: 'X', type: t as 'f32' }],
    outputs: [{ name: 'Y', type: t as 'f32' }],
    uniforms: [['rows', 'u32'], ['n', 'u32'], ['inner', 'u32'], ['offX', 'u32'], ['offY', 'u32']],
    body: `${lseDecl}
var<workgroup> sh: array<vec2<f32>, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wg_linear(wid, nwg);
  if (row >= P.rows) { return; }
  let o = row / P.inner;
  let i = row % P.inner;
  let bx = P.offX + o * P.n * P.inner + i;
  let by = P.offY + o * P.n * P.inner + i;
  var s = vec2<f32>(-${INF}, 0.0);
  for (var r = lid; r < P.n; r += ${WG}u) { s = lse_acc(s, ${ld('X[bx + r * P.inner]')}); }
  sh[lid] = s;
  workgroupBarrier();
  for (var w = ${WG / 2}u; w > 0u; w = w / 2u) {
    if (lid < w) { sh[lid] = lse_combine(sh[lid], sh[lid + w]); }
    workgroupBarrier();
  }
  let m = sh[0].x;
  let sum = sh[0].y;
  let logSum = log(sum);
  for (var r = lid; r < P.n; r += ${WG}u) {
    let v = ${ld('X[bx + r * P.inner]')};
    Y[by + r * P.inner] = ${st(log ? 'v - m - logSum' : 'exp(v - m) / sum')};
  }
}`,
  };
});

for (const [op, log] of [['softmax', false], ['log_softmax', true]] as const) {
  registerKernel<WebGpuBackend>(op, W, (be, [x], [y], attrs) => {
    const axis = axisAttr(op, attrs, x.shape.length);
    const [outer, n, inner] = splitAxes(x.shape, axis, axis);
    const rows = outer * inner;
    const bx = be.bindView(x), by = be.bindView(y);
    be.dispatch(softmaxProgram(wgslType(x.dtype), log), [bx.ref], [by.ref], [rows, n, inner, bx.elemOffset, by.elemOffset], rows);
  });
}
