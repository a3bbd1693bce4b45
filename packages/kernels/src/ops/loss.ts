// Loss family: per-row softmax cross-entropy over a (possibly large) vocabulary, saving the
// row logsumexp for its fused backward.

import { defineOps, type Domain, type OpCase, type ShapeDtype } from '../op.js';
import { numAttr } from '../shape.js';
import { OpError, type Attrs } from '../types.js';

/** The validated `ignoreIndex` attribute (PyTorch's default -100). Every backend uses this. */
export function ignoreIndexAttr(op: string, attrs: Attrs): number {
  const v = numAttr(op, attrs, 'ignoreIndex', -100);
  if (!Number.isInteger(v)) throw new OpError(op, `attribute 'ignoreIndex' must be an integer, got ${v}`);
  return v;
}

/** Checks logits [N,V] and targets [N]; returns [N, V]. */
function lossShapes(op: string, logits: ShapeDtype, targets: ShapeDtype, attrs: Attrs): [number, number] {
  ignoreIndexAttr(op, attrs);
  if (logits.shape.length !== 2) throw new OpError(op, `input 'logits' must be rank 2 [N,V], got [${logits.shape}]`);
  const [N, V] = logits.shape;
  if (targets.shape.length !== 1 || targets.shape[0] !== N) throw new OpError(op, `input 'targets' must be [${N}], got [${targets.shape}]`);
  if (V === 0 && N > 0) throw new OpError(op, `input 'logits' needs at least one class per row, got [${logits.shape}]`);
  return [N, V];
}

const classes = (V: number): Domain => ({ kind: 'int', lo: 0, hi: V });

/** Forward cases as (logits, targets); targets are valid class ids (or the case's ignoreIndex). */
const lossCases: OpCase[] = [
  { name: 'regular', shapes: [[8, 33], [8]], domains: [undefined, classes(33)] },
  { name: 'odd', shapes: [[13, 37], [13]], domains: [undefined, classes(37)] },
  { name: 'wide vocabulary', shapes: [[3, 1000], [3]], domains: [{ kind: 'uniform', lo: -4, hi: 4 }, classes(1000)] },
  // Targets drawn from {0, 1} with ignoreIndex 1: about half the rows are ignored (loss 0, no gradient).
  { name: 'ignored rows', shapes: [[8, 5], [8]], attrs: { ignoreIndex: 1 }, domains: [undefined, classes(2)] },
  { name: 'size-1', shapes: [[1, 1], [1]], domains: [undefined, classes(1)] },
  { name: 'empty', shapes: [[0, 7], [0]], domains: [undefined, classes(7)] },
];

defineOps([
  {
    name: 'cross_entropy',
    autocast: 'f32',
    doc:
      'Per row n of logits [N,V]: lse[n] = logsumexp_v logits[n,v]; loss[n] = lse[n] - logits[n, targets[n]], ' +
      'or 0 where targets[n] == ignoreIndex (default -100). Any other target outside [0,V) gives loss NaN.',
    inputs: [{ name: 'logits', kind: 'float' }, { name: 'targets', kind: 'i32' }],
    outputs: ['loss', 'lse'],
    infer: ([logits, targets], attrs) => {
      const [N] = lossShapes('cross_entropy', logits, targets, attrs);
      return [{ shape: [N], dtype: logits.dtype }, { shape: [N], dtype: logits.dtype }];
    },
    tolerance: ['accumulate', 'accumulate'],
    cases: lossCases,
    gradOutputs: [0],
    vjp: (ctx, [logits, targets], [, lse], [dloss], attrs) => [
      ctx.run('cross_entropy_grad', [dloss!, logits, targets, lse], attrs)[0],
      null,
    ],
  },
  {
    name: 'cross_entropy_grad',
    doc:
      'dlogits[n,v] = dloss[n] * (exp(logits[n,v] - lse[n]) - (v == targets[n])), a zero row where targets[n] == ignoreIndex ' +
      'and a NaN row for any other target outside [0,V).',
    inputs: [{ name: 'dloss', kind: 'float' }, { name: 'logits', kind: 'float' }, { name: 'targets', kind: 'i32' }, { name: 'lse', kind: 'float' }],
    outputs: ['dlogits'],
    infer: ([dloss, logits, targets, lse], attrs) => {
      const [N] = lossShapes('cross_entropy_grad', logits, targets, attrs);
      if (dloss.shape.length !== 1 || dloss.shape[0] !== N) throw new OpError('cross_entropy_grad', `input 'dloss' must be [${N}], got [${dloss.shape}]`);
      if (lse.shape.length !== 1 || lse.shape[0] !== N) throw new OpError('cross_entropy_grad', `input 'lse' must be [${N}], got [${lse.shape}]`);
      return [{ shape: logits.shape, dtype: logits.dtype }];
    },
    tolerance: 'loose',
    cases: lossCases.map((c) => {
      const [logits, targets] = c.shapes;
      const V = logits[1];
      // lse near the logsumexp of V logits drawn from [-2, 2], so exp(logits - lse) looks like a softmax.
      const lse: Domain = { kind: 'uniform', lo: Math.log(Math.max(V, 1)), hi: Math.log(Math.max(V, 1)) + 2 };
      return { ...c, shapes: [[logits[0]], logits, targets, [logits[0]]], domains: [undefined, c.domains?.[0], c.domains?.[1], lse] };
    }),
    backwardOf: 'cross_entropy',
  },
]);
