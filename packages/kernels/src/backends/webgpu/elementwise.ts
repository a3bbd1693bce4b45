// WGSL kernels for src/ops/elementwise.ts. Math runs in f32 (f16 storage converts on load and
// store). Broadcast operands are read through collapsed shape/stride uniforms; the shader is
// specialised by rank and by which operands are read flat, never by sizes.

import { registerKernel } from '../../dispatch.js';
import { broadcastStrides } from '../../shape.js';
import type { Attrs, TensorInfo } from '../../types.js';
import { sizeOf } from '../../types.js';
import type { WebGpuBackend } from './backend.js';
import { MATH_WGSL } from './math.js';
import { type Program, type UniformType, groups, memo, wgslType } from './program.js';

const W = 'webgpu';
const WG = 256;

/** Scalar formulas over `x` (f32), attribute uniforms named as in the op table. */
export const UNARY_WGSL: Record<string, { expr: string; attrs?: string[] }> = {
  neg: { expr: '-x' },
  abs: { expr: 'abs(x)' },
  sign: { expr: 'sign(x)' },
  step: { expr: 'select(0.0, 1.0, x > 0.0)' },
  exp: { expr: 'exp(x)' },
  log: { expr: 'log(x)' },
  sqrt: { expr: 'sqrt(x)' },
  rsqrt: { expr: '1.0 / sqrt(x)' },
  square: { expr: 'x * x' },
  reciprocal: { expr: '1.0 / x' },
  sin: { expr: 'sin(x)' },
  cos: { expr: 'cos(x)' },
  tanh: { expr: 'tanh_acc(x)' },
  sigmoid: { expr: 'sigmoid_acc(x)' },
  erf: { expr: 'erf_acc(x)' },
  relu: { expr: 'select(0.0, x, x > 0.0)' },
  leaky_relu: { expr: 'select(P.alpha * x, x, x > 0.0)', attrs: ['alpha'] },
  silu: { expr: 'silu_acc(x)' },
  gelu: { expr: '0.5 * x * (1.0 + erf_acc(x * 0.70710678118654752))' },
  softplus: { expr: 'select(log1p_acc(exp(x)), x, x > 20.0)' },
  scale: { expr: 'fma(x, P.mul, P.add)', attrs: ['mul', 'add'] },
  pow_scalar: { expr: 'pow_acc(x, P.exponent)', attrs: ['exponent'] },
  clamp: { expr: 'min(max(x, P.min), P.max)', attrs: ['min', 'max'] },
};

export const BINARY_WGSL: Record<string, string> = {
  add: 'a + b',
  sub: 'a - b',
  mul: 'a * b',
  div: 'a / b',
  maximum: 'max(a, b)',
  minimum: 'min(a, b)',
  pow: 'pow_acc(a, b)',
  greater: 'select(0.0, 1.0, a > b)',
  greater_equal: 'select(0.0, 1.0, a >= b)',
  less: 'select(0.0, 1.0, a < b)',
  less_equal: 'select(0.0, 1.0, a <= b)',
  equal: 'select(0.0, 1.0, a == b)',
};

/** Loads an element as f32 / stores an f32 into a storage type. */
const load = (t: string, e: string) => (t === 'f32' ? e : `f32(${e})`);
const store = (t: string, e: string) => (t === 'f32' ? e : `${t}(${e})`);

const unaryProgram = memo((op: string, t: string): Program => {
  const u = UNARY_WGSL[op];
  return {
    name: op,
    inputs: [{ name: 'X', type: t as 'f32' }],
    outputs: [{ name: 'Y', type: t as 'f32' }],
    uniforms: [['n', 'u32'], ['offX', 'u32'], ['offY', 'u32'], ...(u.attrs ?? []).map((a): [string, UniformType] => [a, 'f32'])],
    body: `${MATH_WGSL}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = wg_linear(wid, nwg) * ${WG}u + lid;
  if (i >= P.n) { return; }
  let x = ${load(t, 'X[P.offX + i]')};
  Y[P.offY + i] = ${store(t, u.expr)};
}`,
  };
});

/**
 * Collapses an output shape and the broadcast strides of each operand: drops size-1 dims and
 * merges neighbours that every operand walks contiguously.
 */
export function collapse(out: readonly number[], strides: number[][]): { shape: number[]; strides: number[][] } {
  const dims: number[] = [];
  const st: number[][] = strides.map(() => []);
  for (let d = 0; d < out.length; d++) {
    if (out[d] === 1) continue;
    const last = dims.length - 1;
    if (last >= 0 && strides.every((s, k) => st[k][last] === s[d] * out[d])) {
      dims[last] *= out[d];
      strides.forEach((s, k) => (st[k][last] = s[d]));
    } else {
      dims.push(out[d]);
      strides.forEach((s, k) => st[k].push(s[d]));
    }
  }
  return { shape: dims, strides: st };
}

/**
 * An n-ary broadcast map. Each operand is either read flat (same layout as the output) or
 * through the collapsed strides. Large outputs are processed in chunks that fit one binding.
 */
function broadcastMap(
  be: WebGpuBackend, name: string, expr: string, ins: readonly TensorInfo[], y: TensorInfo, extra: [string, UniformType, number][] = [],
): void {
  const n = sizeOf(y.shape);
  const raw = ins.map((t) => broadcastStrides(t.shape, y.shape));
  const c = collapse(y.shape, raw);
  const rank = c.shape.length;
  const contiguous = (s: number[]) => {
    let acc = 1;
    for (let d = rank - 1; d >= 0; d--) {
      if (s[d] !== acc) return false;
      acc *= c.shape[d];
    }
    return true;
  };
  const flat = c.strides.map((s, k) => contiguous(s) && sizeOf(ins[k].shape) === n);
  const tIn = ins.map((t) => wgslType(t.dtype));
  const tOut = wgslType(y.dtype);
  const prog = naryProgram(name, expr, tIn, tOut, rank, flat, extra.map(([a, t]) => [a, t]));
  const maxElems = be.maxViewElements(y.dtype);
  for (let base = 0; base < n; base += maxElems) {
    const len = Math.min(maxElems, n - base);
    const out = be.bindView({ ...y, offset: y.offset + base, shape: [len] });
    const bound = ins.map((t, k) => (flat[k] ? be.bindView({ ...t, offset: t.offset + base, shape: [len] }) : be.bindView(t)));
    const u: number[] = [len, base, out.elemOffset, ...bound.map((b) => b.elemOffset)];
    for (let d = 0; d < rank; d++) u.push(c.shape[d]);
    c.strides.forEach((s, k) => {
      if (!flat[k]) for (let d = 0; d < rank; d++) u.push(s[d]);
    });
    for (const [, , v] of extra) u.push(v);
    be.dispatch(prog, bound.map((b) => b.ref), [out.ref], u, groups(len, WG));
  }
}

const naryProgram = memo((name: string, expr: string, tIn: string[], tOut: string, rank: number, flat: boolean[], extra: [string, UniformType][]): Program => {
  const uniforms: [string, UniformType][] = [['n', 'u32'], ['base', 'u32'], ['offY', 'u32']];
  tIn.forEach((_, k) => uniforms.push([`off${k}`, 'u32']));
  for (let d = 0; d < rank; d++) uniforms.push([`d${d}`, 'u32']);
  flat.forEach((f, k) => {
    if (!f) for (let d = 0; d < rank; d++) uniforms.push([`s${k}_${d}`, 'u32']);
  });
  uniforms.push(...extra);
  const idx: string[] = [];
  const needsWalk = flat.some((f) => !f);
  if (needsWalk) {
    idx.push('  var r = P.base + i;');
    flat.forEach((f, k) => { if (!f) idx.push(`  var j${k} = P.off${k};`); });
    for (let d = rank - 1; d >= 0; d--) {
      idx.push(`  { let c = r % P.d${d}; r = r / P.d${d};`);
      flat.forEach((f, k) => { if (!f) idx.push(`    j${k} += c * P.s${k}_${d};`); });
      idx.push('  }');
    }
  }
  flat.forEach((f, k) => { if (f) idx.push(`  let j${k} = P.off${k} + i;`); });
  const names = ['a', 'b', 'c', 'd'];
  const loads = tIn.map((t, k) => `  let ${names[k]} = ${load(t, `I${k}[j${k}]`)};`);
  return {
    name,
    inputs: tIn.map((t, k) => ({ name: `I${k}`, type: t as 'f32' })),
    outputs: [{ name: 'Y', type: tOut as 'f32' }],
    uniforms,
    body: `${MATH_WGSL}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = wg_linear(wid, nwg) * ${WG}u + lid;
  if (i >= P.n) { return; }
${idx.join('\n')}
${loads.join('\n')}
  Y[P.offY + i] = ${store(tOut, expr)};
}`,
  };
});

/** Unary map over a contiguous view, chunked to fit bindings. */
function unaryMap(be: WebGpuBackend, op: string, x: TensorInfo, y: TensorInfo, attrs: Attrs): void {
  const n = sizeOf(y.shape);
  const prog = unaryProgram(op, wgslType(x.dtype));
  const attrVals = (UNARY_WGSL[op].attrs ?? []).map((a) => attrs[a] as number);
  const maxElems = be.maxViewElements(y.dtype);
  for (let base = 0; base < n; base += maxElems) {
    const len = Math.min(maxElems, n - base);
    const bx = be.bindView({ ...x, offset: x.offset + base, shape: [len] });
    const by = be.bindView({ ...y, offset: y.offset + base, shape: [len] });
    be.dispatch(prog, [bx.ref], [by.ref], [len, bx.elemOffset, by.elemOffset, ...attrVals], groups(len, WG));
  }
}

for (const op of Object.keys(UNARY_WGSL)) {
  registerKernel<WebGpuBackend>(op, W, (be, [x], [y], attrs) => unaryMap(be, op, x, y, attrs));
}
for (const [op, expr] of Object.entries(BINARY_WGSL)) {
  registerKernel<WebGpuBackend>(op, W, (be, [a, b], [y]) => broadcastMap(be, op, expr, [a, b], y));
}
registerKernel<WebGpuBackend>('where', W, (be, [c, a, b], [y]) => broadcastMap(be, 'where', 'select(c, b, a != 0.0)', [c, a, b], y));
// a = x, b = dy.
registerKernel<WebGpuBackend>('silu_grad', W, (be, [x, dy], [dx]) => broadcastMap(be, 'silu_grad', 'silu_grad_acc(a, b)', [x, dy], dx));

const fillProgram = memo((t: string): Program => ({
  name: 'fill',
  inputs: [],
  outputs: [{ name: 'Y', type: t as 'f32' }],
  uniforms: [['n', 'u32'], ['offY', 'u32'], ['value', t === 'i32' ? 'i32' : 'f32']],
  body: `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = wg_linear(wid, nwg) * ${WG}u + lid;
  if (i >= P.n) { return; }
  Y[P.offY + i] = ${t === 'f16' ? 'f16(P.value)' : 'P.value'};
}`,
}));

registerKernel<WebGpuBackend>('fill', W, (be, _in, [y], attrs) => {
  const n = sizeOf(y.shape);
  const maxElems = be.maxViewElements(y.dtype);
  for (let base = 0; base < n; base += maxElems) {
    const len = Math.min(maxElems, n - base);
    const by = be.bindView({ ...y, offset: y.offset + base, shape: [len] });
    be.dispatch(fillProgram(wgslType(y.dtype)), [], [by.ref], [len, by.elemOffset, attrs.value as number], groups(len, WG));
  }
});

registerKernel<WebGpuBackend>('cast', W, (be, [x], [y]) => {
  const tx = wgslType(x.dtype), ty = wgslType(y.dtype);
  // f32 -> i32 truncates toward zero (WGSL's conversion does); others convert through f32.
  const expr = ty === 'i32' ? (tx === 'i32' ? 'a' : 'i32(a)') : 'a';
  const prog = castProgram(tx, ty, expr);
  const n = sizeOf(y.shape);
  const maxElems = Math.min(be.maxViewElements(x.dtype), be.maxViewElements(y.dtype));
  for (let base = 0; base < n; base += maxElems) {
    const len = Math.min(maxElems, n - base);
    const bx = be.bindView({ ...x, offset: x.offset + base, shape: [len] });
    const by = be.bindView({ ...y, offset: y.offset + base, shape: [len] });
    be.dispatch(prog, [bx.ref], [by.ref], [len, bx.elemOffset, by.elemOffset], groups(len, WG));
  }
});

const castProgram = memo((tx: string, ty: string, expr: string): Program => ({
  name: 'cast',
  inputs: [{ name: 'X', type: tx as 'f32' }],
  outputs: [{ name: 'Y', type: ty as 'f32' }],
  uniforms: [['n', 'u32'], ['offX', 'u32'], ['offY', 'u32']],
  body: `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = wg_linear(wid, nwg) * ${WG}u + lid;
  if (i >= P.n) { return; }
  let a = ${tx === 'i32' || ty === 'i32' ? `X[P.offX + i]` : load(tx, 'X[P.offX + i]')};
  Y[P.offY + i] = ${ty === 'i32' ? (tx === 'i32' ? 'a' : 'i32(a)') : tx === 'i32' ? `${ty}(a)` : store(ty, expr)};
}`,
}));

