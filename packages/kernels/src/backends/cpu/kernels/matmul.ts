// cpu kernels for src/ops/matmul.ts: every batch of a broadcast batched matmul is one GEMM
// over strided operands (a transpose is a stride swap, absorbed by the packing).

import { registerKernel } from '../../../dispatch.js';
import { matmulGeometry } from '../../../ops/matmul.js';
import { broadcastStrides } from '../../../shape.js';
import { sizeOf } from '../../../types.js';
import type { CpuBackend } from '../backend.js';
import { B_MATRIX, runGemm } from './gemm.js';

/** Byte offsets [a, b, y] of every batch of the output's batch shape. */
export function batchOffsets(batchShape: readonly number[], aBatch: readonly number[], bBatch: readonly number[],
  aMat: number, bMat: number, yMat: number): [number, number, number][] {
  const sa = broadcastStrides(aBatch, batchShape), sb = broadcastStrides(bBatch, batchShape);
  const n = sizeOf(batchShape);
  const out: [number, number, number][] = [];
  const pos = new Array<number>(batchShape.length).fill(0);
  for (let i = 0; i < n; i++) {
    let oa = 0, ob = 0;
    for (let d = 0; d < pos.length; d++) {
      oa += pos[d] * sa[d];
      ob += pos[d] * sb[d];
    }
    out.push([oa * aMat * 4, ob * bMat * 4, i * yMat * 4]);
    for (let d = pos.length - 1; d >= 0; d--) {
      if (++pos[d] < batchShape[d]) break;
      pos[d] = 0;
    }
  }
  return out;
}

registerKernel<CpuBackend>('matmul', 'cpu', (b, [a, bm], [y], attrs) => {
  const g = matmulGeometry(a.shape, bm.shape, attrs);
  const { M, N, K } = g;
  runGemm(b, {
    M, N, K,
    a: b.addr(a), sAm: g.transA ? 1 : K, sAk: g.transA ? M : 1,
    bKind: B_MATRIX, b: b.addr(bm), sBk: g.transB ? 1 : N, sBn: g.transB ? K : 1,
    c: b.addr(y), ldc: N,
    batches: batchOffsets(g.batchShape, g.aBatchShape, g.bBatchShape, M * K, K * N, M * N),
  });
});
