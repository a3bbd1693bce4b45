// cpu kernels for src/ops/reduce.ts: rows of the [outer, reduced, inner] split go to threads.

import { registerKernel } from '../../../dispatch.js';
import { axisAttr, reduceGeometry } from '../../../ops/reduce.js';
import { splitAxes } from '../../../shape.js';
import type { CpuBackend } from '../backend.js';
import { ASM } from '../wasm-interface.js';
import { asmCode } from './util.js';

const C = 'cpu';
/** Reductions served by assembly/reduce.ts's `reduce`; codes are its constants of the same name. */
const REDUCE_OPS = ['sum', 'mean', 'max', 'min', 'logsumexp'] as const;
/** Elements per thread below which a reduction stays on the calling thread. */
const GRAIN = 1 << 15;

REDUCE_OPS.forEach((op) => {
  const code = asmCode(op, ASM.reduce);
  registerKernel<CpuBackend>(op, C, (b, [x], [y], attrs) => {
    const { outer, reduced, inner } = reduceGeometry(op, x.shape, attrs);
    const xp = b.addr(x), yp = b.addr(y);
    const grain = Math.ceil(GRAIN / Math.max(1, reduced * inner));
    b.pool.run('reduce', b.split(outer, grain).map(([o0, o1]) => [code, xp, yp, reduced, inner, o0, o1]));
  });
});

registerKernel<CpuBackend>('argmax', C, (b, [x], [y], attrs) => {
  const axis = axisAttr('argmax', attrs, x.shape.length);
  const [outer, n, inner] = splitAxes(x.shape, axis, axis);
  const xp = b.addr(x), yp = b.addr(y);
  b.pool.run('argmax', b.split(outer, Math.ceil(GRAIN / Math.max(1, n * inner))).map(([o0, o1]) => [xp, yp, n, inner, o0, o1]));
});

for (const op of ['softmax', 'log_softmax']) {
  registerKernel<CpuBackend>(op, C, (b, [x], [y], attrs) => {
    const axis = axisAttr(op, attrs, x.shape.length);
    const [outer, n, inner] = splitAxes(x.shape, axis, axis);
    const xp = b.addr(x), yp = b.addr(y);
    const log = op === 'log_softmax' ? 1 : 0;
    b.pool.run('softmax', b.split(outer, Math.ceil(GRAIN / Math.max(1, n * inner))).map(([o0, o1]) => [xp, yp, n, inner, log, o0, o1]));
  });
}
