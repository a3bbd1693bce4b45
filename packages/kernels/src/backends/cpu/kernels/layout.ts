// cpu kernels for src/ops/layout.ts: every copy is one strided block copy (copy4) over
// collapsed dims.

import { registerKernel } from '../../../dispatch.js';
import { concatAxis, padsAttr, permAttr, sliceAttrs } from '../../../ops/layout.js';
import { broadcastStrides } from '../../../shape.js';
import { sizeOf, stridesOf } from '../../../types.js';
import type { CpuBackend } from '../backend.js';
import { f32Bits } from './util.js';

const C = 'cpu';
const GRAIN = 1 << 15;

/**
 * Copies a block of `shape` from src (byte address, element strides) to dst, merging dims
 * that are contiguous in both and looping on the host over any beyond four.
 */
export function copyBlock(b: CpuBackend, shape: readonly number[], src: number, srcStrides: readonly number[], dst: number, dstStrides: readonly number[]): void {
  if (sizeOf(shape) === 0) return;
  const n: number[] = [], ss: number[] = [], ds: number[] = [];
  shape.forEach((d, i) => {
    if (d === 1) return;
    const k = n.length - 1;
    if (k >= 0 && ss[k] === srcStrides[i] * d && ds[k] === dstStrides[i] * d) {
      n[k] *= d;
      ss[k] = srcStrides[i];
      ds[k] = dstStrides[i];
    } else {
      n.push(d);
      ss.push(srcStrides[i]);
      ds.push(dstStrides[i]);
    }
  });
  while (n.length < 4) {
    n.unshift(1);
    ss.unshift(0);
    ds.unshift(0);
  }
  const lead = n.length - 4;
  const leadCount = sizeOf(n.slice(0, lead));
  const pos = new Array<number>(lead).fill(0);
  const [n0, n1, n2, n3] = n.slice(lead);
  const [s0, s1, s2, s3] = ss.slice(lead);
  const [d0, d1, d2, d3] = ds.slice(lead);
  for (let l = 0; l < leadCount; l++) {
    let so = 0, dof = 0;
    for (let i = 0; i < lead; i++) {
      so += pos[i] * ss[i];
      dof += pos[i] * ds[i];
    }
    const ps = src + so * 4, pd = dst + dof * 4;
    const grain = Math.ceil(GRAIN / (n1 * n2 * n3));
    b.pool.run('copy4', b.split(n0, grain).map(([b0, b1]) => [ps, s0, s1, s2, s3, pd, d0, d1, d2, d3, n1, n2, n3, b0, b1]));
    for (let i = lead - 1; i >= 0; i--) {
      if (++pos[i] < n[i]) break;
      pos[i] = 0;
    }
  }
}

const dot = (idx: readonly number[], strides: readonly number[]) => idx.reduce((acc, v, i) => acc + v * strides[i], 0);

registerKernel<CpuBackend>('pad', C, (b, [x], [y], attrs) => {
  const pads = padsAttr(x.shape, attrs);
  const value = (attrs.value as number | undefined) ?? 0;
  b.x.fill32(b.addr(y), sizeOf(y.shape), f32Bits(value));
  const yStrides = stridesOf(y.shape);
  copyBlock(b, x.shape, b.addr(x), stridesOf(x.shape), b.addr(y) + 4 * dot(pads.map((p) => p[0]), yStrides), yStrides);
});

registerKernel<CpuBackend>('slice', C, (b, [x], [y], attrs) => {
  const { begin, size } = sliceAttrs(x.shape, attrs);
  const xStrides = stridesOf(x.shape);
  copyBlock(b, size, b.addr(x) + 4 * dot(begin, xStrides), xStrides, b.addr(y), stridesOf(size));
});

registerKernel<CpuBackend>('concat', C, (b, xs, [y], attrs) => {
  const axis = concatAxis(xs.map((x) => x.shape), attrs);
  const yStrides = stridesOf(y.shape);
  let start = 0;
  for (const x of xs) {
    copyBlock(b, x.shape, b.addr(x), stridesOf(x.shape), b.addr(y) + 4 * start * yStrides[axis], yStrides);
    start += x.shape[axis];
  }
});

registerKernel<CpuBackend>('permute', C, (b, [x], [y], attrs) => {
  const perm = permAttr(x.shape.length, attrs);
  const xStrides = stridesOf(x.shape);
  copyBlock(b, y.shape, b.addr(x), perm.map((p) => xStrides[p]), b.addr(y), stridesOf(y.shape));
});

registerKernel<CpuBackend>('broadcast_to', C, (b, [x], [y]) => {
  copyBlock(b, y.shape, b.addr(x), broadcastStrides(x.shape, y.shape), b.addr(y), stridesOf(y.shape));
});

registerKernel<CpuBackend>('gather_rows', C, (b, [table, ids], [y]) => {
  const [V, D] = table.shape;
  const rows = sizeOf(ids.shape);
  const tp = b.addr(table), ip = b.addr(ids), yp = b.addr(y);
  b.pool.run('gatherRows', b.split(rows, Math.ceil(GRAIN / Math.max(1, D))).map(([r0, r1]) => [tp, V, D, ip, yp, r0, r1]));
});

registerKernel<CpuBackend>('scatter_add_rows', C, (b, [ids, src], [y]) => {
  const [numRows, D] = y.shape;
  const yp = b.addr(y), ip = b.addr(ids), sp = b.addr(src);
  const n = sizeOf(ids.shape);
  b.x.fill32(yp, numRows * D, 0);
  // Columns in multiples of 4 per thread: no element is written by two threads.
  const groups = Math.ceil(D / 4);
  b.pool.run('scatterAddRows', b.split(groups, Math.ceil(GRAIN / Math.max(1, 4 * n))).map(([g0, g1]) =>
    [ip, n, sp, D, yp, numRows, g0 * 4, Math.min(D, g1 * 4)]));
});
