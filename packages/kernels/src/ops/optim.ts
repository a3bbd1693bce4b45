// Optimizer updates, in place (`mutates`): one step of Adam / AdamW and an EMA of parameters.
// They have no outputs and no gradient.

import { defineOps, type Domain, type OpCase, type ShapeDtype } from '../op.js';
import { boolAttr, numAttr } from '../shape.js';
import { OpError } from '../types.js';

export interface AdamParams {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  decoupled: boolean;
  step: number;
}

/**
 * The attributes of adam_update, validated; every backend's kernels read them through this.
 * lr and step are required; beta1 0.9, beta2 0.999, eps 1e-8, weightDecay 0 and decoupled false are
 * torch.optim.Adam's defaults (AdamW callers pass decoupled: true and their weight decay).
 */
export function adamParams(attrs: Record<string, unknown>): AdamParams {
  const op = 'adam_update';
  const p: AdamParams = {
    lr: numAttr(op, attrs, 'lr'),
    beta1: numAttr(op, attrs, 'beta1', 0.9),
    beta2: numAttr(op, attrs, 'beta2', 0.999),
    eps: numAttr(op, attrs, 'eps', 1e-8),
    weightDecay: numAttr(op, attrs, 'weightDecay', 0),
    decoupled: boolAttr(op, attrs, 'decoupled', false),
    step: numAttr(op, attrs, 'step'),
  };
  if (!(p.lr >= 0)) throw new OpError(op, `attribute 'lr' must be >= 0, got ${p.lr}`);
  for (const k of ['beta1', 'beta2'] as const) {
    if (!(p[k] >= 0 && p[k] < 1)) throw new OpError(op, `attribute '${k}' must be in [0, 1), got ${p[k]}`);
  }
  if (!(p.eps >= 0)) throw new OpError(op, `attribute 'eps' must be >= 0, got ${p.eps}`);
  if (!(p.weightDecay >= 0)) throw new OpError(op, `attribute 'weightDecay' must be >= 0, got ${p.weightDecay}`);
  if (!Number.isInteger(p.step) || p.step < 1) throw new OpError(op, `attribute 'step' must be an integer >= 1 (the step being taken), got ${p.step}`);
  return p;
}

/** The `decay` attribute of ema_update; every backend's kernels read it through this. */
export function emaDecay(attrs: Record<string, unknown>): number {
  const decay = numAttr('ema_update', attrs, 'decay');
  if (!(decay >= 0 && decay <= 1)) throw new OpError('ema_update', `attribute 'decay' must be in [0, 1], got ${decay}`);
  return decay;
}

function sameShapes(op: string, names: string[], inputs: readonly ShapeDtype[]): void {
  const s = inputs[0].shape;
  inputs.forEach((t, i) => {
    if (t.shape.length !== s.length || t.shape.some((d, j) => d !== s[j])) {
      throw new OpError(op, `input '${names[i]}' is [${t.shape}] but '${names[0]}' is [${s}]`);
    }
  });
}

const PARAM_DOMAINS: Domain[] = [
  { kind: 'uniform', lo: -2, hi: 2 },
  { kind: 'uniform', lo: -1, hi: 1 },
  { kind: 'uniform', lo: -0.1, hi: 0.1 },
  { kind: 'uniform', lo: 0, hi: 0.01 }, // v is a running mean of squares: never negative
];

/** param, grad, m and v all of `shape`. */
const adam = (shape: number[]): number[][] => [shape, shape, shape, shape];

const adamCases: OpCase[] = [
  { name: 'adam-first-step', shapes: adam([4, 33]), attrs: { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, decoupled: false, step: 1 } },
  { name: 'adam-weight-decay', shapes: adam([5, 7, 11, 13]), attrs: { lr: 2e-3, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.05, decoupled: false, step: 7 } },
  { name: 'adamw', shapes: adam([5, 7, 11, 13]), attrs: { lr: 1e-4, beta1: 0.5, beta2: 0.9, eps: 1e-6, weightDecay: 0.01, decoupled: true, step: 1000 } },
  { name: 'size-1', shapes: adam([1, 9, 1]), attrs: { lr: 0.1, beta1: 0, beta2: 0.5, eps: 1e-8, weightDecay: 0, decoupled: true, step: 3 } },
  { name: 'scalar', shapes: adam([]), attrs: { lr: 1e-3, step: 2 } },
  { name: 'empty', shapes: adam([0, 3]), attrs: { lr: 1e-3, step: 1 } },
];

defineOps([
  {
    name: 'adam_update',
    doc: 'One step of torch.optim.Adam (decoupled false: g = grad + weightDecay*param) or AdamW (decoupled true: param *= 1 - lr*weightDecay '
      + 'first, g = grad), single-tensor math, in place on param, m and v: m = beta1*m + (1-beta1)*g; v = beta2*v + (1-beta2)*g^2; '
      + 'param -= (lr/(1-beta1^step)) * m / (sqrt(v)/sqrt(1-beta2^step) + eps). step counts from 1.',
    inputs: [{ name: 'param', kind: 'float' }, { name: 'grad', kind: 'float' }, { name: 'm', kind: 'float' }, { name: 'v', kind: 'float' }],
    outputs: [],
    infer: (inputs, attrs) => {
      adamParams(attrs);
      sameShapes('adam_update', ['param', 'grad', 'm', 'v'], inputs);
      return [];
    },
    mutates: [0, 2, 3],
    domain: PARAM_DOMAINS,
    tolerance: 'elementwise',
    cases: adamCases,
  },
  {
    name: 'ema_update',
    doc: 'Exponential moving average of parameters, in place on shadow: shadow -= (1-decay)*(shadow - param).',
    inputs: [{ name: 'shadow', kind: 'float' }, { name: 'param', kind: 'float' }],
    outputs: [],
    infer: (inputs, attrs) => {
      emaDecay(attrs);
      sameShapes('ema_update', ['shadow', 'param'], inputs);
      return [];
    },
    mutates: [0],
    tolerance: 'elementwise',
    cases: [
      { name: 'regular', shapes: [[4, 33], [4, 33]], attrs: { decay: 0.999 } },
      { name: 'odd', shapes: [[5, 7, 11, 13], [5, 7, 11, 13]], attrs: { decay: 0.9 } },
      { name: 'size-1', shapes: [[1, 9, 1], [1, 9, 1]], attrs: { decay: 0 } },
      { name: 'scalar', shapes: [[], []], attrs: { decay: 0.5 } },
      { name: 'empty', shapes: [[0, 3], [0, 3]], attrs: { decay: 0.99 } },
    ],
  },
]);
