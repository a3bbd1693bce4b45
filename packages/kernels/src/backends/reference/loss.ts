// Reference kernels for src/ops/loss.ts: cross-entropy one row at a time in float64.

import { registerKernel } from '../../dispatch.js';
import { ignoreIndexAttr } from '../../ops/loss.js';
import { type ReferenceBackend, view } from './backend.js';

const R = 'reference';

registerKernel<ReferenceBackend>('cross_entropy', R, (_b, [logits, targets], [loss, lse], attrs) => {
  const [N, V] = logits.shape;
  const ignore = ignoreIndexAttr('cross_entropy', attrs);
  const xv = view(logits), tv = view(targets), lossv = view(loss), lsev = view(lse);
  for (let n = 0; n < N; n++) {
    const row = n * V;
    let max = -Infinity;
    for (let c = 0; c < V; c++) if (xv[row + c] > max) max = xv[row + c];
    let sum = 0;
    for (let c = 0; c < V; c++) sum += Math.exp(xv[row + c] - max);
    const rowLse = max + Math.log(sum);
    const t = tv[n];
    lsev[n] = rowLse;
    lossv[n] = t === ignore ? 0 : t >= 0 && t < V ? rowLse - xv[row + t] : NaN;
  }
});

registerKernel<ReferenceBackend>('cross_entropy_grad', R, (_b, [dloss, logits, targets, lse], [dlogits], attrs) => {
  const [N, V] = logits.shape;
  const ignore = ignoreIndexAttr('cross_entropy_grad', attrs);
  const gv = view(dloss), xv = view(logits), tv = view(targets), lsev = view(lse), dv = view(dlogits);
  for (let n = 0; n < N; n++) {
    const row = n * V;
    const t = tv[n];
    if (t === ignore) {
      dv.fill(0, row, row + V);
      continue;
    }
    if (!(t >= 0 && t < V)) {
      dv.fill(NaN, row, row + V);
      continue;
    }
    for (let c = 0; c < V; c++) dv[row + c] = gv[n] * (Math.exp(xv[row + c] - lsev[n]) - (c === t ? 1 : 0));
  }
});
