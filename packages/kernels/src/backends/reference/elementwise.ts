// Reference kernels for src/ops/elementwise.ts: each op's scalar formula in float64.

import { registerKernel } from '../../dispatch.js';
import type { Attrs } from '../../types.js';
import { type ReferenceBackend, view } from './backend.js';
import { forEachBroadcast } from './util.js';

const R = 'reference';

function erf(x: number): number {
  // Abramowitz-Stegun 7.1.26 is too coarse for an oracle; use the series / continued fraction.
  const ax = Math.abs(x);
  if (ax < 2.5) {
    // Maclaurin series: converges fast for |x| < 2.5 in float64.
    let sum = ax, term = ax;
    for (let n = 1; n < 100; n++) {
      term *= (-ax * ax) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    const r = (2 / Math.sqrt(Math.PI)) * sum;
    return x < 0 ? -r : r;
  }
  // erfc continued fraction (Lentz) for the tail.
  let f = ax, C = ax, D = 0;
  for (let n = 1; n < 200; n++) {
    const an = n / 2;
    D = ax + an * D;
    D = D === 0 ? 1e-300 : 1 / D;
    C = ax + an / C;
    if (C === 0) C = 1e-300;
    const delta = C * D;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-ax * ax) / (f * Math.sqrt(Math.PI));
  return x < 0 ? erfc - 1 : 1 - erfc;
}

/** Scalar semantics of every unary op (the ones named in ops/elementwise.ts). */
export const UNARY_FN: Record<string, (x: number, a: Attrs) => number> = {
  neg: (x) => -x,
  abs: (x) => Math.abs(x),
  sign: (x) => (x > 0 ? 1 : x < 0 ? -1 : 0),
  step: (x) => (x > 0 ? 1 : 0),
  exp: (x) => Math.exp(x),
  log: (x) => Math.log(x),
  sqrt: (x) => Math.sqrt(x),
  rsqrt: (x) => 1 / Math.sqrt(x),
  square: (x) => x * x,
  reciprocal: (x) => 1 / x,
  sin: (x) => Math.sin(x),
  cos: (x) => Math.cos(x),
  tanh: (x) => Math.tanh(x),
  sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  erf: (x) => erf(x),
  relu: (x) => (x > 0 ? x : 0),
  leaky_relu: (x, a) => (x > 0 ? x : (a.alpha as number) * x),
  silu: (x) => x / (1 + Math.exp(-x)),
  gelu: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
  softplus: (x) => (x > 20 ? x : Math.log1p(Math.exp(x))),
  scale: (x, a) => x * (a.mul as number) + (a.add as number),
  pow_scalar: (x, a) => Math.pow(x, a.exponent as number),
  clamp: (x, a) => Math.min(Math.max(x, a.min as number), a.max as number),
};

export const BINARY_FN: Record<string, (a: number, b: number) => number> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  maximum: (a, b) => Math.max(a, b),
  minimum: (a, b) => Math.min(a, b),
  pow: (a, b) => Math.pow(a, b),
  greater: (a, b) => (a > b ? 1 : 0),
  greater_equal: (a, b) => (a >= b ? 1 : 0),
  less: (a, b) => (a < b ? 1 : 0),
  less_equal: (a, b) => (a <= b ? 1 : 0),
  equal: (a, b) => (a === b ? 1 : 0),
};

for (const [op, f] of Object.entries(UNARY_FN)) {
  registerKernel<ReferenceBackend>(op, R, (_b, [x], [y], attrs) => {
    const xv = view(x), yv = view(y);
    for (let i = 0; i < yv.length; i++) yv[i] = f(xv[i], attrs);
  });
}

for (const [op, f] of Object.entries(BINARY_FN)) {
  registerKernel<ReferenceBackend>(op, R, (_b, [a, b], [y]) => {
    const av = view(a), bv = view(b), yv = view(y);
    forEachBroadcast(y.shape, [a.shape, b.shape], (o, [i, j]) => {
      yv[o] = f(av[i], bv[j]);
    });
  });
}

/** silu's backward at one element: dy*s*(1 + x*(1-s)), s = sigmoid(x) (also group_norm_silu_grad's). */
export function siluGrad(x: number, dy: number): number {
  const s = 1 / (1 + Math.exp(-x));
  return dy * s * (1 + x * (1 - s));
}

registerKernel<ReferenceBackend>('silu_grad', R, (_b, [x, dy], [dx]) => {
  const xv = view(x), gv = view(dy), out = view(dx);
  for (let i = 0; i < out.length; i++) out[i] = siluGrad(xv[i], gv[i]);
});

registerKernel<ReferenceBackend>('where', R, (_b, [c, a, b], [y]) => {
  const cv = view(c), av = view(a), bv = view(b), yv = view(y);
  forEachBroadcast(y.shape, [c.shape, a.shape, b.shape], (o, [i, j, k]) => {
    yv[o] = cv[i] !== 0 ? av[j] : bv[k];
  });
});

registerKernel<ReferenceBackend>('fill', R, (_b, _in, [y], attrs) => {
  view(y).fill(attrs.value as number);
});

registerKernel<ReferenceBackend>('cast', R, (_b, [x], [y]) => {
  const xv = view(x), yv = view(y);
  if (y.dtype === 'i32') for (let i = 0; i < yv.length; i++) yv[i] = Math.trunc(xv[i]);
  else yv.set(xv);
});
