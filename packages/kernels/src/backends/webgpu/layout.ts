// WGSL kernels for src/ops/layout.ts. slice, permute, broadcast_to, concat and the interior of
// pad are one strided copy (source and destination walked with their own strides over collapsed
// dims); pad fills first. gather_rows reads rows by id; scatter_add_rows adds rows with a
// compare-and-swap loop on the f32 bits (WGSL has no float atomics).

import { registerKernel } from '../../dispatch.js';
import { broadcastTarget, concatAxis, numRowsAttr, padsAttr, permAttr, sliceAttrs } from '../../ops/layout.js';
import { broadcastStrides } from '../../shape.js';
import { type TensorInfo, sizeOf, stridesOf } from '../../types.js';
import type { BindRef, WebGpuBackend } from './backend.js';
import { collapse } from './elementwise.js';
import { type Program, groups, memo, wgslType } from './program.js';

const W = 'webgpu';
const WG = 256;

const copyProgram = memo((t: string, rank: number): Program => {
  const uniforms: Program['uniforms'] = [['n', 'u32'], ['offS', 'u32'], ['offD', 'u32']];
  for (let d = 0; d < rank; d++) uniforms.push([`d${d}`, 'u32'], [`ss${d}`, 'u32'], [`sd${d}`, 'u32']);
  const walk: string[] = [];
  for (let d = rank - 1; d >= 0; d--) walk.push(`  { let c = r % P.d${d}; r = r / P.d${d}; s += c * P.ss${d}; dd += c * P.sd${d}; }`);
  return {
    name: 'strided_copy',
    inputs: [{ name: 'S', type: t as 'f32' }],
    outputs: [{ name: 'D', type: t as 'f32' }],
    uniforms,
    body: `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = wg_linear(wid, nwg) * ${WG}u + lid;
  if (i >= P.n) { return; }
  var r = i;
  var s = P.offS;
  var dd = P.offD;
${walk.join('\n')}
  D[dd] = S[s];
}`,
  };
});

/**
 * dst[offD + sum c_d*dstStrides_d] = src[offS + sum c_d*srcStrides_d] over the index space
 * `dims`; offsets are element offsets relative to the two tensors' views.
 */
export function stridedCopy(
  be: WebGpuBackend, src: TensorInfo, srcOff: number, srcStrides: number[], dst: TensorInfo, dstOff: number, dstStrides: number[], dims: number[],
): void {
  const n = sizeOf(dims);
  if (n === 0) return;
  const c = collapse(dims, [srcStrides, dstStrides]);
  const rank = c.shape.length;
  const bs = be.bindView(src), bd = be.bindView(dst);
  const u = [n, bs.elemOffset + srcOff, bd.elemOffset + dstOff];
  for (let d = 0; d < rank; d++) u.push(c.shape[d], c.strides[0][d], c.strides[1][d]);
  be.dispatch(copyProgram(wgslType(src.dtype), rank), [bs.ref], [bd.ref], u, groups(n, WG));
}

const fillProgram = memo((t: string): Program => ({
  name: 'fill_value',
  inputs: [],
  outputs: [{ name: 'Y', type: t as 'f32' }],
  uniforms: [['n', 'u32'], ['offY', 'u32'], ['value', 'f32']],
  body: `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = wg_linear(wid, nwg) * ${WG}u + lid;
  if (i >= P.n) { return; }
  Y[P.offY + i] = ${t}(P.value);
}`,
}));

export function fillView(be: WebGpuBackend, y: TensorInfo, value: number): void {
  const n = sizeOf(y.shape);
  if (n === 0) return;
  const by = be.bindView(y);
  be.dispatch(fillProgram(wgslType(y.dtype)), [], [by.ref], [n, by.elemOffset, value], groups(n, WG));
}

registerKernel<WebGpuBackend>('pad', W, (be, [x], [y], attrs) => {
  const pads = padsAttr(x.shape, attrs);
  fillView(be, y, (attrs.value as number | undefined) ?? 0);
  const ys = stridesOf(y.shape);
  const start = pads.reduce((acc, [before], d) => acc + before * ys[d], 0);
  stridedCopy(be, x, 0, stridesOf(x.shape), y, start, ys, [...x.shape]);
});

registerKernel<WebGpuBackend>('slice', W, (be, [x], [y], attrs) => {
  const { begin, size } = sliceAttrs(x.shape, attrs);
  const xs = stridesOf(x.shape);
  const start = begin.reduce((acc, b, d) => acc + b * xs[d], 0);
  stridedCopy(be, x, start, xs, y, 0, stridesOf(size), size);
});

registerKernel<WebGpuBackend>('permute', W, (be, [x], [y], attrs) => {
  const perm = permAttr(x.shape.length, attrs);
  const xs = stridesOf(x.shape);
  stridedCopy(be, x, 0, perm.map((p) => xs[p]), y, 0, stridesOf(y.shape), [...y.shape]);
});

registerKernel<WebGpuBackend>('broadcast_to', W, (be, [x], [y], attrs) => {
  const shape = broadcastTarget(x.shape, attrs);
  stridedCopy(be, x, 0, broadcastStrides(x.shape, shape), y, 0, stridesOf(shape), shape);
});

registerKernel<WebGpuBackend>('concat', W, (be, xs, [y], attrs) => {
  const axis = concatAxis(xs.map((x) => x.shape), attrs);
  const ys = stridesOf(y.shape);
  let at = 0;
  for (const x of xs) {
    stridedCopy(be, x, 0, stridesOf(x.shape), y, at * ys[axis], ys, [...x.shape]);
    at += x.shape[axis];
  }
});

const gatherProgram = memo((t: string): Program => ({
  name: 'gather_rows',
  inputs: [{ name: 'T', type: t as 'f32' }, { name: 'I', type: 'i32' }],
  outputs: [{ name: 'Y', type: t as 'f32' }],
  uniforms: [['n', 'u32'], ['D', 'u32'], ['V', 'u32'], ['offT', 'u32'], ['offI', 'u32'], ['offY', 'u32']],
  body: `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = wg_linear(wid, nwg) * ${WG}u + lid;
  if (i >= P.n) { return; }
  let row = i / P.D;
  let col = i % P.D;
  let id = I[P.offI + row];
  var v = ${t}(0.0);
  if (id >= 0 && u32(id) < P.V) { v = T[P.offT + u32(id) * P.D + col]; }
  Y[P.offY + i] = v;
}`,
}));

registerKernel<WebGpuBackend>('gather_rows', W, (be, [table, ids], [y]) => {
  const [V, D] = table.shape;
  const n = sizeOf(y.shape);
  const bt = be.bindView(table), bi = be.bindView(ids), by = be.bindView(y);
  be.dispatch(gatherProgram(wgslType(table.dtype)), [bt.ref, bi.ref], [by.ref], [n, D, V, bt.elemOffset, bi.elemOffset, by.elemOffset], groups(n, WG));
});

const scatterProgram = memo((): Program => ({
  name: 'scatter_add_rows',
  inputs: [{ name: 'I', type: 'i32' }, { name: 'S', type: 'f32' }],
  outputs: [{ name: 'Y', type: 'u32', atomic: true }],
  uniforms: [['n', 'u32'], ['D', 'u32'], ['rows', 'u32'], ['offI', 'u32'], ['offS', 'u32'], ['offY', 'u32']],
  body: `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = wg_linear(wid, nwg) * ${WG}u + lid;
  if (i >= P.n) { return; }
  let row = i / P.D;
  let col = i % P.D;
  let id = I[P.offI + row];
  if (id < 0 || u32(id) >= P.rows) { return; }
  let v = S[P.offS + i];
  let at = P.offY + u32(id) * P.D + col;
  var old = atomicLoad(&Y[at]);
  loop {
    let r = atomicCompareExchangeWeak(&Y[at], old, bitcast<u32>(bitcast<f32>(old) + v));
    if (r.exchanged) { break; }
    old = r.old_value;
  }
}`,
}));

registerKernel<WebGpuBackend>('scatter_add_rows', W, (be, [ids, src], [y], attrs) => {
  const rows = numRowsAttr(attrs);
  const D = y.shape[1];
  fillView(be, y, 0);
  const n = sizeOf(src.shape);
  if (n === 0) return;
  const bi = be.bindView(ids), bs = be.bindView(src), by = be.bindView(y);
  be.dispatch(scatterProgram(), [bi.ref, bs.ref], [by.ref as BindRef], [n, D, rows, bi.elemOffset, bs.elemOffset, by.elemOffset], groups(n, WG));
});
