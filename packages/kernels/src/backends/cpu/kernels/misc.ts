// cpu kernels for src/ops/optim.ts (in-place updates), rope (src/ops/attention.ts) and
// cross-entropy (src/ops/loss.ts).

import { registerKernel } from '../../../dispatch.js';
import { ignoreIndexAttr } from '../../../ops/loss.js';
import { adamParams, emaDecay } from '../../../ops/optim.js';
import { boolAttr } from '../../../shape.js';
import { sizeOf } from '../../../types.js';
import type { CpuBackend } from '../backend.js';

const C = 'cpu';
const GRAIN = 1 << 15;

registerKernel<CpuBackend>('adam_update', C, (b, [param, grad, m, v], _o, attrs) => {
  const p = adamParams(attrs);
  const n = sizeOf(param.shape);
  const stepSize = p.lr / (1 - p.beta1 ** p.step);
  const bc2Sqrt = Math.sqrt(1 - p.beta2 ** p.step);
  const [pp, gp, mp, vp] = [param, grad, m, v].map((t) => b.addr(t));
  b.pool.run('adamUpdate', b.split(n, GRAIN).map(([i0, i1]) =>
    [pp, gp, mp, vp, i0, i1, p.lr, p.beta1, p.beta2, p.eps, p.weightDecay, p.decoupled ? 1 : 0, stepSize, bc2Sqrt]));
});

registerKernel<CpuBackend>('ema_update', C, (b, [shadow, param], _o, attrs) => {
  const keep = 1 - emaDecay(attrs);
  const sp = b.addr(shadow), pp = b.addr(param);
  b.pool.run('emaUpdate', b.split(sizeOf(shadow.shape), GRAIN).map(([i0, i1]) => [sp, pp, keep, i0, i1]));
});

registerKernel<CpuBackend>('rope', C, (b, [x, cos, sin], [y], attrs) => {
  const [B, L, H, D] = x.shape;
  const sign = boolAttr('rope', attrs, 'inverse', false) ? -1 : 1;
  const [xp, cp, sp, yp] = [x, cos, sin, y].map((t) => b.addr(t));
  b.pool.run('rope', b.split(B * L * H, Math.ceil(GRAIN / Math.max(1, D))).map(([r0, r1]) => [xp, cp, sp, yp, L, H, D, sign, r0, r1]));
});

registerKernel<CpuBackend>('cross_entropy', C, (b, [logits, targets], [loss, lse], attrs) => {
  const [N, V] = logits.shape;
  const ignore = ignoreIndexAttr('cross_entropy', attrs);
  const [xp, tp, lp, sp] = [logits, targets, loss, lse].map((t) => b.addr(t));
  b.pool.run('crossEntropy', b.split(N, Math.ceil(GRAIN / Math.max(1, V))).map(([n0, n1]) => [xp, tp, lp, sp, V, ignore, n0, n1]));
});

registerKernel<CpuBackend>('cross_entropy_grad', C, (b, [dloss, logits, targets, lse], [dlogits], attrs) => {
  const [N, V] = logits.shape;
  const ignore = ignoreIndexAttr('cross_entropy_grad', attrs);
  const [gp, xp, tp, sp, dp] = [dloss, logits, targets, lse, dlogits].map((t) => b.addr(t));
  b.pool.run('crossEntropyGrad', b.split(N, Math.ceil(GRAIN / Math.max(1, V))).map(([n0, n1]) => [gp, xp, tp, sp, dp, V, ignore, n0, n1]));
});
