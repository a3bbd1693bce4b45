// Reference kernels for src/ops/reduce.ts: float64 accumulation over the [outer, reduced, inner]
// split of the input.

import { registerKernel } from '../../dispatch.js';
import { axisAttr, reduceGeometry } from '../../ops/reduce.js';
import { splitAxes } from '../../shape.js';
import { type ReferenceBackend, view } from './backend.js';

const R = 'reference';

/** Reduces each run x[o, 0..reduced-1, i] to one value; `fold` sees the run as (index -> value). */
function reduceKernel(op: string, fold: (at: (r: number) => number, n: number) => number): void {
  registerKernel<ReferenceBackend>(op, R, (_b, [x], [y], attrs) => {
    const { outer, reduced, inner } = reduceGeometry(op, x.shape, attrs);
    const xv = view(x), yv = view(y);
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < inner; i++) {
        const base = o * reduced * inner + i;
        yv[o * inner + i] = fold((r) => xv[base + r * inner], reduced);
      }
    }
  });
}

function sum(at: (r: number) => number, n: number): number {
  let s = 0;
  for (let r = 0; r < n; r++) s += at(r);
  return s;
}

/** Maximum or minimum of a non-empty run; NaN propagates. */
function extreme(isMax: boolean) {
  return (at: (r: number) => number, n: number): number => {
    let m = at(0);
    for (let r = 1; r < n && !Number.isNaN(m); r++) {
      const v = at(r);
      if (Number.isNaN(v) || (isMax ? v > m : v < m)) m = v;
    }
    return m;
  };
}

function logsumexp(at: (r: number) => number, n: number): number {
  if (n === 0) return -Infinity;
  const m = extreme(true)(at, n);
  // All -inf (m = -inf), any +inf or NaN: the max alone is the answer.
  if (!Number.isFinite(m)) return m;
  let s = 0;
  for (let r = 0; r < n; r++) s += Math.exp(at(r) - m);
  return m + Math.log(s);
}

reduceKernel('sum', sum);
reduceKernel('mean', (at, n) => sum(at, n) / n);
reduceKernel('max', extreme(true));
reduceKernel('min', extreme(false));
reduceKernel('logsumexp', logsumexp);

registerKernel<ReferenceBackend>('argmax', R, (_b, [x], [y], attrs) => {
  const axis = axisAttr('argmax', attrs, x.shape.length);
  const [outer, n, inner] = splitAxes(x.shape, axis, axis);
  const xv = view(x), yv = view(y);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      const base = o * n * inner + i;
      let best = 0, m = xv[base];
      // Strictly greater keeps the first index among ties; the first NaN wins and stops.
      for (let r = 1; r < n && !Number.isNaN(m); r++) {
        const v = xv[base + r * inner];
        if (Number.isNaN(v) || v > m) {
          m = v;
          best = r;
        }
      }
      yv[o * inner + i] = best;
    }
  }
});

/** softmax / log_softmax along one axis, from the maximum-shifted exponentials. */
function softmaxKernel(op: string, log: boolean): void {
  registerKernel<ReferenceBackend>(op, R, (_b, [x], [y], attrs) => {
    const axis = axisAttr(op, attrs, x.shape.length);
    const [outer, n, inner] = splitAxes(x.shape, axis, axis);
    const xv = view(x), yv = view(y);
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < inner; i++) {
        const base = o * n * inner + i;
        let m = -Infinity;
        for (let r = 0; r < n; r++) m = Math.max(m, xv[base + r * inner]);
        let s = 0;
        for (let r = 0; r < n; r++) s += Math.exp(xv[base + r * inner] - m);
        const logS = Math.log(s);
        for (let r = 0; r < n; r++) {
          const k = base + r * inner;
          yv[k] = log ? xv[k] - m - logS : Math.exp(xv[k] - m) / s;
        }
      }
    }
  });
}

softmaxKernel('softmax', false);
softmaxKernel('log_softmax', true);
