// Reference kernels for src/ops/optim.ts: in-place updates, float64 arithmetic per element,
// in the order of torch.optim's single-tensor Adam / AdamW.

import { registerKernel } from '../../dispatch.js';
import { adamParams, emaDecay } from '../../ops/optim.js';
import { type ReferenceBackend, view } from './backend.js';

const R = 'reference';

registerKernel<ReferenceBackend>('adam_update', R, (_b, [param, grad, m, v], _outputs, attrs) => {
  const p = adamParams(attrs);
  const pv = view(param), gv = view(grad), mv = view(m), vv = view(v);
  const stepSize = p.lr / (1 - p.beta1 ** p.step);
  const bc2Sqrt = Math.sqrt(1 - p.beta2 ** p.step);
  for (let i = 0; i < pv.length; i++) {
    let x = pv[i];
    let g = gv[i];
    if (p.weightDecay !== 0) {
      if (p.decoupled) x *= 1 - p.lr * p.weightDecay;
      else g += p.weightDecay * x;
    }
    const mi = mv[i] + (1 - p.beta1) * (g - mv[i]); // torch: exp_avg.lerp_(grad, 1 - beta1)
    const vi = p.beta2 * vv[i] + (1 - p.beta2) * g * g;
    const denom = Math.sqrt(vi) / bc2Sqrt + p.eps;
    pv[i] = x - stepSize * (mi / denom);
    mv[i] = mi;
    vv[i] = vi;
  }
});

registerKernel<ReferenceBackend>('ema_update', R, (_b, [shadow, param], _outputs, attrs) => {
  const keep = 1 - emaDecay(attrs);
  const sv = view(shadow), pv = view(param);
  for (let i = 0; i < sv.length; i++) sv[i] -= keep * (sv[i] - pv[i]);
});
