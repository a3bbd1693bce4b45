// Reference kernels for src/ops/layout.ts: index arithmetic, one element at a time.

import { registerKernel } from '../../dispatch.js';
import { concatAxis, padsAttr, permAttr, sliceAttrs } from '../../ops/layout.js';
import { type TypedArray, sizeOf, stridesOf } from '../../types.js';
import { type ReferenceBackend, view } from './backend.js';
import { forEachBroadcast } from './util.js';

const R = 'reference';

/**
 * Copies a block of `shape` elements: element at multi-index p is read from
 * src[srcBase + p.srcStrides] and written to dst[dstBase + p.dstStrides].
 */
function copyBlock(
  shape: readonly number[],
  src: TypedArray, srcBase: number, srcStrides: readonly number[],
  dst: TypedArray, dstBase: number, dstStrides: readonly number[],
): void {
  const n = sizeOf(shape);
  const rank = shape.length;
  const pos = new Array<number>(rank).fill(0);
  let s = srcBase, d = dstBase;
  for (let k = 0; k < n; k++) {
    dst[d] = src[s];
    for (let i = rank - 1; i >= 0; i--) {
      pos[i]++;
      s += srcStrides[i];
      d += dstStrides[i];
      if (pos[i] < shape[i]) break;
      s -= srcStrides[i] * shape[i];
      d -= dstStrides[i] * shape[i];
      pos[i] = 0;
    }
  }
}

/** Flat offset of a multi-index under `strides`. */
const dot = (idx: readonly number[], strides: readonly number[]) => idx.reduce((acc, v, i) => acc + v * strides[i], 0);

registerKernel<ReferenceBackend>('pad', R, (_b, [x], [y], attrs) => {
  const pads = padsAttr(x.shape, attrs);
  const xv = view(x), yv = view(y);
  yv.fill((attrs.value as number | undefined) ?? 0);
  const yStrides = stridesOf(y.shape);
  copyBlock(x.shape, xv, 0, stridesOf(x.shape), yv, dot(pads.map((p) => p[0]), yStrides), yStrides);
});

registerKernel<ReferenceBackend>('slice', R, (_b, [x], [y], attrs) => {
  const { begin, size } = sliceAttrs(x.shape, attrs);
  const xStrides = stridesOf(x.shape);
  copyBlock(size, view(x), dot(begin, xStrides), xStrides, view(y), 0, stridesOf(size));
});

registerKernel<ReferenceBackend>('concat', R, (_b, xs, [y], attrs) => {
  const axis = concatAxis(xs.map((x) => x.shape), attrs);
  const yv = view(y), yStrides = stridesOf(y.shape);
  let start = 0;
  for (const x of xs) {
    copyBlock(x.shape, view(x), 0, stridesOf(x.shape), yv, start * yStrides[axis], yStrides);
    start += x.shape[axis];
  }
});

registerKernel<ReferenceBackend>('permute', R, (_b, [x], [y], attrs) => {
  const perm = permAttr(x.shape.length, attrs);
  const xStrides = stridesOf(x.shape);
  // Walk y in order; moving along y's dim i moves along x's dim perm[i].
  copyBlock(y.shape, view(x), 0, perm.map((p) => xStrides[p]), view(y), 0, stridesOf(y.shape));
});

registerKernel<ReferenceBackend>('broadcast_to', R, (_b, [x], [y]) => {
  const xv = view(x), yv = view(y);
  forEachBroadcast(y.shape, [x.shape], (o, [i]) => {
    yv[o] = xv[i];
  });
});

registerKernel<ReferenceBackend>('gather_rows', R, (_b, [table, ids], [y]) => {
  const [V, D] = table.shape;
  const tv = view(table), iv = view(ids), yv = view(y);
  for (let r = 0; r < iv.length; r++) {
    const id = iv[r];
    for (let d = 0; d < D; d++) yv[r * D + d] = id >= 0 && id < V ? tv[id * D + d] : 0;
  }
});

registerKernel<ReferenceBackend>('scatter_add_rows', R, (_b, [ids, src], [y]) => {
  const [numRows, D] = y.shape;
  const iv = view(ids), sv = view(src), yv = view(y);
  const acc = new Float64Array(numRows * D);
  for (let r = 0; r < iv.length; r++) {
    const id = iv[r];
    if (id < 0 || id >= numRows) continue;
    for (let d = 0; d < D; d++) acc[id * D + d] += sv[r * D + d];
  }
  yv.set(acc);
});
