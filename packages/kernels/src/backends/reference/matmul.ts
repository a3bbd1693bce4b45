// Reference kernel for src/ops/matmul.ts: the triple loop with float64 accumulation.

import { registerKernel } from '../../dispatch.js';
import { matmulGeometry } from '../../ops/matmul.js';
import { type ReferenceBackend, view } from './backend.js';
import { forEachBroadcast } from './util.js';

registerKernel<ReferenceBackend>('matmul', 'reference', (_b, [a, b], [y], attrs) => {
  const { transA, transB, M, K, N, batchShape, aBatchShape, bBatchShape } = matmulGeometry(a.shape, b.shape, attrs);
  const av = view(a), bv = view(b), yv = view(y);
  // Element strides of op(a)[m, k] and op(b)[k, n] inside one matrix.
  const [aM, aK] = transA ? [1, M] : [K, 1];
  const [bK, bN] = transB ? [1, K] : [N, 1];
  forEachBroadcast(batchShape, [aBatchShape, bBatchShape], (batch, [ia, ib]) => {
    const aBase = ia * M * K, bBase = ib * K * N, yBase = batch * M * N;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += av[aBase + m * aM + k * aK] * bv[bBase + k * bK + n * bN];
        yv[yBase + m * N + n] = s;
      }
    }
  });
});
