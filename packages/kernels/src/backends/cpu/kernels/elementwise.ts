// cpu kernels for src/ops/elementwise.ts.

import { registerKernel } from '../../../dispatch.js';
import { sizeOf } from '../../../types.js';
import type { CpuBackend } from '../backend.js';
import { ASM } from '../wasm-interface.js';
import { asmCode, collapseBroadcast, f32Bits } from './util.js';

const C = 'cpu';

/**
 * Ops served by assembly/elementwise.ts's `unary` and `binary`. Each op's code is the
 * assembly's constant of the same name in upper case (generated into wasm-interface.ts), so a
 * renamed or dropped constant is a type error and a reordered one cannot disagree.
 */
export const UNARY_OPS = ['neg', 'abs', 'sign', 'step', 'exp', 'log', 'sqrt', 'rsqrt', 'square', 'reciprocal', 'sin', 'cos', 'tanh',
  'sigmoid', 'erf', 'relu', 'leaky_relu', 'silu', 'gelu', 'softplus', 'scale', 'pow_scalar', 'clamp'] as const;
export const BINARY_OPS = ['add', 'sub', 'mul', 'div', 'maximum', 'minimum', 'pow', 'greater', 'greater_equal', 'less', 'less_equal', 'equal'] as const;

const UNARY_PARAMS: Record<string, [string, string]> = {
  leaky_relu: ['alpha', ''], scale: ['mul', 'add'], pow_scalar: ['exponent', ''], clamp: ['min', 'max'],
};

/** Elements per thread below which a map runs on the calling thread only. */
const PARALLEL_GRAIN = 1 << 16;

UNARY_OPS.forEach((op) => {
  const code = asmCode(op, ASM.elementwise);
  const params = UNARY_PARAMS[op];
  registerKernel<CpuBackend>(op, C, (b, [x], [y], attrs) => {
    const n = sizeOf(y.shape);
    const p0 = params && params[0] ? (attrs[params[0]] as number) : 0;
    const p1 = params && params[1] ? (attrs[params[1]] as number) : 0;
    const xp = b.addr(x), yp = b.addr(y);
    b.pool.run('unary', b.split(n, PARALLEL_GRAIN).map(([s, e]) => [code, xp, yp, s, e, p0, p1]));
  });
});

registerKernel<CpuBackend>('silu_grad', C, (b, [x, dy], [dx]) => {
  const xp = b.addr(x), gp = b.addr(dy), dp = b.addr(dx);
  b.pool.run('siluGrad', b.split(sizeOf(dx.shape), PARALLEL_GRAIN).map(([s, e]) => [xp, gp, dp, s, e]));
});

/** Calls fn(offsets, dims) for each block of the last `inner` collapsed dims. */
function forEachBlock(outShape: readonly number[], ins: readonly (readonly number[])[], inner: number,
  fn: (offsets: number[], outOffset: number, dims: number[], strides: number[][]) => void): void {
  const c = collapseBroadcast(outShape, ins, Infinity)!;
  let { dims, strides } = c;
  while (dims.length < inner) {
    dims = [1, ...dims];
    strides = strides.map((s) => [0, ...s]);
  }
  const lead = dims.slice(0, dims.length - inner);
  const innerDims = dims.slice(dims.length - inner);
  const innerStrides = strides.map((s) => s.slice(s.length - inner));
  const block = sizeOf(innerDims);
  const count = sizeOf(lead);
  const pos = new Array<number>(lead.length).fill(0);
  for (let i = 0; i < count; i++) {
    const offsets = strides.map((s) => pos.reduce((acc, p, d) => acc + p * s[d], 0));
    fn(offsets, i * block, innerDims, innerStrides);
    for (let d = lead.length - 1; d >= 0; d--) {
      if (++pos[d] < lead[d]) break;
      pos[d] = 0;
    }
  }
}

BINARY_OPS.forEach((op) => {
  const code = asmCode(op, ASM.elementwise);
  registerKernel<CpuBackend>(op, C, (b, [a, bb], [y]) => {
    const ap = b.addr(a), bp = b.addr(bb), yp = b.addr(y);
    forEachBlock(y.shape, [a.shape, bb.shape], 3, ([oa, ob], oy, [n0, n1, n2], [sa, sb]) => {
      const pa = ap + oa * 4, pb = bp + ob * 4, py = yp + oy * 4;
      const grain = Math.max(1, Math.ceil(PARALLEL_GRAIN / (n1 * n2)));
      b.pool.run('binary', b.split(n0, grain).map(([s, e]) =>
        [code, pa, sa[0], sa[1], sa[2], pb, sb[0], sb[1], sb[2], py, n0, n1, n2, s, e]));
    });
  });
});

registerKernel<CpuBackend>('where', C, (b, [c, a, bb], [y]) => {
  const cp = b.addr(c), ap = b.addr(a), bp = b.addr(bb), yp = b.addr(y);
  forEachBlock(y.shape, [c.shape, a.shape, bb.shape], 3, ([oc, oa, ob], oy, [n0, n1, n2], [sc, sa, sb]) => {
    b.x.where(cp + oc * 4, sc[0], sc[1], sc[2], ap + oa * 4, sa[0], sa[1], sa[2], bp + ob * 4, sb[0], sb[1], sb[2], yp + oy * 4, n0, n1, n2);
  });
});

registerKernel<CpuBackend>('fill', C, (b, _in, [y], attrs) => {
  const v = attrs.value as number;
  const bits = y.dtype === 'i32' ? v | 0 : f32Bits(v);
  b.x.fill32(b.addr(y), sizeOf(y.shape), bits);
});

registerKernel<CpuBackend>('cast', C, (b, [x], [y]) => {
  const n = sizeOf(y.shape);
  const xp = b.addr(x), yp = b.addr(y);
  if (x.dtype === 'f32' && y.dtype === 'i32') b.x.castF32I32(xp, yp, n);
  else if (x.dtype === 'i32' && y.dtype === 'f32') b.x.castI32F32(xp, yp, n);
  else b.x.copy32(xp, yp, n);
});

