// Normalisation family: GroupNorm (alone and fused with the SiLU that follows it), BatchNorm
// (train and eval), LayerNorm, RMSNorm, with PyTorch semantics (biased variance inside the
// normalisation). The forward ops also return their saved statistics (mean, rstd or var), which
// carry no gradient; the fused *_grad kernels take them back.

import { defineOps, type Domain, type OpCase, type ShapeDtype, type VjpContext } from '../op.js';
import { numAttr } from '../shape.js';
import { OpError, type TensorInfo } from '../types.js';

/**
 * The `eps` attribute; every backend reads it through this. Defaults to 1e-5 (PyTorch's default for
 * GroupNorm, BatchNorm and LayerNorm); `required` for rms_norm, whose PyTorch default depends on the dtype.
 */
export function normEps(op: string, attrs: Record<string, unknown>, required = false): number {
  const eps = numAttr(op, attrs, 'eps', required ? undefined : 1e-5);
  if (!(eps >= 0) || !Number.isFinite(eps)) throw new OpError(op, `attribute 'eps' must be finite and >= 0, got ${eps}`);
  return eps;
}

/** The `groups` attribute of group_norm / group_norm_grad, checked against the channel count. */
export function normGroups(op: string, attrs: Record<string, unknown>, channels: number): number {
  const groups = attrs.groups;
  if (typeof groups !== 'number' || !Number.isInteger(groups) || groups < 1) {
    throw new OpError(op, `attribute 'groups' must be an integer >= 1, got ${String(groups)}`);
  }
  if (channels % groups !== 0) throw new OpError(op, `attribute 'groups' (${groups}) must divide the ${channels} channels`);
  return groups;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function expectShape(op: string, name: string, t: ShapeDtype | undefined, shape: readonly number[]): void {
  if (!t || !sameShape(t.shape, shape)) throw new OpError(op, `input '${name}' must be [${shape}], got [${t?.shape ?? ''}]`);
}

/** x of a channel norm: [N, C, ...] with rank >= 2; returns C. */
function channelsOf(op: string, x: ShapeDtype): number {
  if (x.shape.length < 2) throw new OpError(op, `input 'x' must be [N, C, ...] (rank >= 2), got [${x.shape}]`);
  return x.shape[1];
}

/** x of a last-dim norm: rank >= 1; returns [leading dims, D]. */
function lastDimOf(op: string, x: ShapeDtype): [number[], number] {
  if (x.shape.length < 1) throw new OpError(op, `input 'x' must have rank >= 1, got a scalar`);
  return [x.shape.slice(0, -1), x.shape[x.shape.length - 1]];
}

/** Sums an [N, C, ...] tensor to [C], one contiguous axis range at a time. */
function sumToChannels(ctx: VjpContext, t: TensorInfo): TensorInfo {
  const rank = t.shape.length;
  let s = t;
  if (rank > 2) s = ctx.run('sum', [s], { axes: Array.from({ length: rank - 2 }, (_, i) => i + 2), keepDims: false })[0];
  return ctx.run('sum', [s], { axes: [0], keepDims: false })[0];
}

/** Output shapes of a GroupNorm forward (group_norm, group_norm_silu): y like x, mean and rstd [N, groups]. */
function groupNormInfer(op: string, x: ShapeDtype, w: ShapeDtype, b: ShapeDtype, attrs: Record<string, unknown>): ShapeDtype[] {
  const C = channelsOf(op, x);
  const G = normGroups(op, attrs, C);
  normEps(op, attrs);
  expectShape(op, 'weight', w, [C]);
  expectShape(op, 'bias', b, [C]);
  return [{ shape: x.shape, dtype: x.dtype }, { shape: [x.shape[0], G], dtype: x.dtype }, { shape: [x.shape[0], G], dtype: x.dtype }];
}

const POSITIVE: Domain = { kind: 'uniform', lo: 0.25, hi: 2 };
const WIDE: Domain = { kind: 'uniform', lo: -40, hi: 40 };
const STATS_DOMAINS: (Domain | undefined)[] = [undefined, undefined, undefined, undefined, POSITIVE];

const groupCases: OpCase[] = [
  { name: 'regular', shapes: [[2, 8, 4, 4], [8], [8]], attrs: { groups: 4, eps: 1e-5 } },
  { name: 'odd', shapes: [[2, 5, 7, 11], [5], [5]], attrs: { groups: 5, eps: 1e-5 } },
  { name: 'odd-3-groups', shapes: [[2, 6, 7, 11], [6], [6]], attrs: { groups: 3, eps: 1e-6 } },
  { name: 'one-group', shapes: [[2, 4, 3, 5], [4], [4]], attrs: { groups: 1, eps: 1e-5 } },
  { name: 'rank-3', shapes: [[3, 4, 10], [4], [4]], attrs: { groups: 2, eps: 1e-5 } },
  { name: 'rank-2', shapes: [[4, 6], [6], [6]], attrs: { groups: 3, eps: 1e-5 } },
  { name: 'size-1', shapes: [[1, 4, 1, 3], [4], [4]], attrs: { groups: 2, eps: 1e-5 } }, // two-element groups make dx an f32 cancellation: keep 6
  { name: 'one-element-groups', shapes: [[2, 4, 1, 1], [4], [4]], attrs: { groups: 4, eps: 1e-5 } },
  { name: 'empty-batch', shapes: [[0, 4, 3, 3], [4], [4]], attrs: { groups: 2, eps: 1e-5 } },
];

/** group_norm_silu's extra case: weight and bias large enough that h reaches both flat ends of sigmoid (exp's clamps on cpu). */
const SATURATING: OpCase = { name: 'saturating', shapes: [[2, 8, 3, 5], [8], [8]], attrs: { groups: 4, eps: 1e-5 } };

const batchCases: OpCase[] = [
  { name: 'regular', shapes: [[4, 4, 5, 5], [4], [4]], attrs: { eps: 1e-5 } },
  { name: 'odd', shapes: [[2, 5, 7, 11], [5], [5]], attrs: { eps: 1e-5 } },
  { name: 'rank-2', shapes: [[8, 6], [6], [6]], attrs: { eps: 1e-5 } },
  { name: 'rank-3', shapes: [[3, 4, 9], [4], [4]], attrs: { eps: 1e-3 } },
  { name: 'size-1', shapes: [[1, 3, 1, 5], [3], [3]], attrs: { eps: 1e-5 } },
  { name: 'one-element-channels', shapes: [[1, 3, 1, 1], [3], [3]], attrs: { eps: 1e-5 } },
  { name: 'empty-batch', shapes: [[0, 3, 4, 4], [3], [3]], attrs: { eps: 1e-5 } },
];

const lastDimCases = (withBias: boolean): OpCase[] => {
  const p = (x: number[]) => (withBias ? [x, [x[x.length - 1]], [x[x.length - 1]]] : [x, [x[x.length - 1]]]);
  return [
    { name: 'regular', shapes: p([4, 33]), attrs: { eps: 1e-5 } },
    { name: 'odd', shapes: p([5, 7, 11]), attrs: { eps: 1e-6 } },
    { name: 'rank-1', shapes: p([13]), attrs: { eps: 1e-5 } },
    { name: 'size-1', shapes: p([1, 1, 8]), attrs: { eps: 1e-5 } },
    { name: 'dim-1', shapes: p([3, 1]), attrs: { eps: 1e-5 } },
    { name: 'empty-batch', shapes: p([0, 6]), attrs: { eps: 1e-5 } },
  ];
};

/** Cases of a *_grad row: each forward case's sizes rebuilt as the grad kernel's inputs, with the attributes it takes. */
function gradCases(forward: OpCase[], build: (c: OpCase) => number[][], keep: (a: Record<string, unknown>) => Record<string, unknown>): OpCase[] {
  return forward.map((c) => ({ name: c.name, shapes: build(c), attrs: keep(c.attrs ?? {}) }));
}

defineOps([
  {
    name: 'group_norm',
    autocast: 'f32',
    doc: 'GroupNorm over x [N, C, ...]: the C channels split into `groups` consecutive groups; each (sample, group) is normalised by its '
      + 'mean and rstd = 1/sqrt(biased variance + eps), then y = xhat*weight[c] + bias[c] (F.group_norm). Also returns mean and rstd, '
      + 'both [N, groups], which carry no gradient. eps defaults to 1e-5; a group with no elements has mean 0, rstd 1/sqrt(eps).',
    inputs: [{ name: 'x', kind: 'float' }, { name: 'weight', kind: 'float' }, { name: 'bias', kind: 'float' }],
    outputs: ['y', 'mean', 'rstd'],
    infer: ([x, w, b], attrs) => groupNormInfer('group_norm', x, w, b, attrs),
    tolerance: 'accumulate',
    cases: groupCases,
    gradOutputs: [0],
    vjp: (ctx, [x, w], [, mean, rstd], [dy], attrs) => {
      if (!dy) return [null, null, null];
      return ctx.run('group_norm_grad', [dy, x, w, mean, rstd], { groups: attrs.groups });
    },
  },
  {
    name: 'group_norm_grad',
    doc: 'Gradients of group_norm from dy, x, weight and the saved mean and rstd [N, groups]: with g = dy*weight[c] and M elements '
      + 'per group, dx = rstd*(g - mean_M(g) - xhat*mean_M(g*xhat)); dweight[c] = sum over n and space of dy*xhat; dbias[c] = sum of dy.',
    inputs: [
      { name: 'dy', kind: 'float' }, { name: 'x', kind: 'float' }, { name: 'weight', kind: 'float' },
      { name: 'mean', kind: 'float' }, { name: 'rstd', kind: 'float' },
    ],
    outputs: ['dx', 'dweight', 'dbias'],
    infer: ([dy, x, w, mean, rstd], attrs) => {
      const op = 'group_norm_grad';
      const C = channelsOf(op, x);
      const G = normGroups(op, attrs, C);
      expectShape(op, 'dy', dy, x.shape);
      expectShape(op, 'weight', w, [C]);
      expectShape(op, 'mean', mean, [x.shape[0], G]);
      expectShape(op, 'rstd', rstd, [x.shape[0], G]);
      return [{ shape: x.shape, dtype: x.dtype }, { shape: [C], dtype: x.dtype }, { shape: [C], dtype: x.dtype }];
    },
    domain: STATS_DOMAINS,
    tolerance: 'loose',
    cases: gradCases(groupCases, (c) => {
      const [x, w] = c.shapes;
      const stats = [x[0], c.attrs!.groups as number];
      return [x, x, w, stats, stats];
    }, (a) => ({ groups: a.groups })),
    backwardOf: 'group_norm',
  },
  {
    name: 'group_norm_silu',
    autocast: 'f32',
    doc: 'silu(group_norm(x, weight, bias)) in one op (the tokenizer\'s nonlinearity(norm(x))): h = xhat*weight[c] + bias[c] as group_norm, '
      + 'y = h*sigmoid(h). Also returns mean and rstd [N, groups] of the GroupNorm, which carry no gradient; h is not kept (the backward '
      + 'recomputes it from x and the statistics). eps defaults to 1e-5; a group with no elements has mean 0, rstd 1/sqrt(eps).',
    inputs: [{ name: 'x', kind: 'float' }, { name: 'weight', kind: 'float' }, { name: 'bias', kind: 'float' }],
    outputs: ['y', 'mean', 'rstd'],
    infer: ([x, w, b], attrs) => groupNormInfer('group_norm_silu', x, w, b, attrs),
    tolerance: 'accumulate',
    cases: [...groupCases, { ...SATURATING, domains: [undefined, WIDE, WIDE] }],
    gradOutputs: [0],
    vjp: (ctx, [x, w, b], [, mean, rstd], [dy], attrs) => {
      if (!dy) return [null, null, null];
      return ctx.run('group_norm_silu_grad', [dy, x, w, b, mean, rstd], { groups: attrs.groups });
    },
  },
  {
    name: 'group_norm_silu_grad',
    doc: 'Gradients of group_norm_silu from dy, x, weight, bias and the saved mean and rstd [N, groups]: h = (x - mean)*rstd*weight[c] + bias[c] '
      + 'is recomputed, dh = dy*s*(1 + h*(1-s)) with s = sigmoid(h) (silu_grad), then group_norm_grad of dh: dx, dweight[c] = sum of dh*xhat, '
      + 'dbias[c] = sum of dh.',
    inputs: [
      { name: 'dy', kind: 'float' }, { name: 'x', kind: 'float' }, { name: 'weight', kind: 'float' }, { name: 'bias', kind: 'float' },
      { name: 'mean', kind: 'float' }, { name: 'rstd', kind: 'float' },
    ],
    outputs: ['dx', 'dweight', 'dbias'],
    infer: ([dy, x, w, b, mean, rstd], attrs) => {
      const op = 'group_norm_silu_grad';
      const C = channelsOf(op, x);
      const G = normGroups(op, attrs, C);
      expectShape(op, 'dy', dy, x.shape);
      expectShape(op, 'weight', w, [C]);
      expectShape(op, 'bias', b, [C]);
      expectShape(op, 'mean', mean, [x.shape[0], G]);
      expectShape(op, 'rstd', rstd, [x.shape[0], G]);
      return [{ shape: x.shape, dtype: x.dtype }, { shape: [C], dtype: x.dtype }, { shape: [C], dtype: x.dtype }];
    },
    domain: [undefined, undefined, undefined, undefined, undefined, POSITIVE],
    tolerance: 'loose',
    cases: gradCases(groupCases, (c) => {
      const [x, w] = c.shapes;
      const stats = [x[0], c.attrs!.groups as number];
      return [x, x, w, w, stats, stats];
    }, (a) => ({ groups: a.groups })).concat({
      ...SATURATING, shapes: [[2, 8, 3, 5], [2, 8, 3, 5], [8], [8], [2, 4], [2, 4]], attrs: { groups: 4 },
      domains: [undefined, undefined, WIDE, WIDE],
    }),
    backwardOf: 'group_norm_silu',
  },
  {
    name: 'batch_norm_train',
    autocast: 'f32',
    doc: 'BatchNorm in training mode over x [N, C, ...]: each channel is normalised by its batch mean and biased variance over N and '
      + 'space, y = (x-mean)/sqrt(var+eps)*weight[c] + bias[c]. Also returns mean [C] and var [C] (biased; the caller updates running '
      + 'statistics with the unbiased n/(n-1) factor), which carry no gradient. eps defaults to 1e-5; an empty batch gives mean 0, var 0.',
    inputs: [{ name: 'x', kind: 'float' }, { name: 'weight', kind: 'float' }, { name: 'bias', kind: 'float' }],
    outputs: ['y', 'mean', 'var'],
    infer: ([x, w, b], attrs) => {
      const op = 'batch_norm_train';
      const C = channelsOf(op, x);
      normEps(op, attrs);
      expectShape(op, 'weight', w, [C]);
      expectShape(op, 'bias', b, [C]);
      return [{ shape: x.shape, dtype: x.dtype }, { shape: [C], dtype: x.dtype }, { shape: [C], dtype: x.dtype }];
    },
    tolerance: 'accumulate',
    cases: batchCases,
    gradOutputs: [0],
    vjp: (ctx, [x, w], [, mean, variance], [dy], attrs) => {
      if (!dy) return [null, null, null];
      return ctx.run('batch_norm_train_grad', [dy, x, w, mean, variance], { eps: attrs.eps });
    },
  },
  {
    name: 'batch_norm_train_grad',
    doc: 'Gradients of batch_norm_train from dy, x, weight and the saved mean and biased var [C]: with rstd = 1/sqrt(var+eps) and M = N*space '
      + 'elements per channel, dx = rstd*weight[c]*(dy - mean_M(dy) - xhat*mean_M(dy*xhat)); dweight[c] = sum of dy*xhat; dbias[c] = sum of dy.',
    inputs: [
      { name: 'dy', kind: 'float' }, { name: 'x', kind: 'float' }, { name: 'weight', kind: 'float' },
      { name: 'mean', kind: 'float' }, { name: 'var', kind: 'float' },
    ],
    outputs: ['dx', 'dweight', 'dbias'],
    infer: ([dy, x, w, mean, variance], attrs) => {
      const op = 'batch_norm_train_grad';
      const C = channelsOf(op, x);
      normEps(op, attrs);
      expectShape(op, 'dy', dy, x.shape);
      expectShape(op, 'weight', w, [C]);
      expectShape(op, 'mean', mean, [C]);
      expectShape(op, 'var', variance, [C]);
      return [{ shape: x.shape, dtype: x.dtype }, { shape: [C], dtype: x.dtype }, { shape: [C], dtype: x.dtype }];
    },
    domain: STATS_DOMAINS,
    tolerance: 'loose',
    cases: gradCases(batchCases, (c) => {
      const [x, w] = c.shapes;
      return [x, x, w, w, w];
    }, (a) => ({ eps: a.eps })),
    backwardOf: 'batch_norm_train',
  },
  {
    name: 'batch_norm_eval',
    autocast: 'f32',
    doc: 'BatchNorm in evaluation mode over x [N, C, ...] with running statistics: y = (x - running_mean[c])/sqrt(running_var[c] + eps)*weight[c] '
      + '+ bias[c]. eps defaults to 1e-5. Gradients flow to x, weight and bias (not to the running statistics).',
    inputs: [
      { name: 'x', kind: 'float' }, { name: 'weight', kind: 'float' }, { name: 'bias', kind: 'float' },
      { name: 'running_mean', kind: 'float' }, { name: 'running_var', kind: 'float' },
    ],
    outputs: ['y'],
    infer: ([x, w, b, rm, rv], attrs) => {
      const op = 'batch_norm_eval';
      const C = channelsOf(op, x);
      normEps(op, attrs);
      expectShape(op, 'weight', w, [C]);
      expectShape(op, 'bias', b, [C]);
      expectShape(op, 'running_mean', rm, [C]);
      expectShape(op, 'running_var', rv, [C]);
      return [{ shape: x.shape, dtype: x.dtype }];
    },
    domain: STATS_DOMAINS,
    tolerance: 'accumulate',
    cases: batchCases.map((c) => ({ ...c, shapes: [...c.shapes, c.shapes[1], c.shapes[1]] })),
    gradInputs: [0, 1, 2],
    vjp: (ctx, [x, w, , rm, rv], _outputs, [dy], attrs) => {
      if (!dy) return [null, null, null, null, null];
      const run = (op: string, ins: TensorInfo[], a?: Record<string, unknown>) => ctx.run(op, ins, a)[0];
      // [C] statistics broadcast against [N, C, ...] as [C, 1, ...].
      const perChannel = [x.shape[1], ...x.shape.slice(2).map(() => 1)];
      const rstd = run('rsqrt', [run('scale', [rv], { mul: 1, add: normEps('batch_norm_eval', attrs) })]);
      const dx = run('mul', [dy, ctx.reshape(run('mul', [w, rstd]), perChannel)]);
      const xhat = run('mul', [run('sub', [x, ctx.reshape(rm, perChannel)]), ctx.reshape(rstd, perChannel)]);
      const dw = sumToChannels(ctx, run('mul', [dy, xhat]));
      const db = sumToChannels(ctx, dy);
      return [dx, dw, db, null, null];
    },
  },
  {
    name: 'layer_norm',
    autocast: 'f32',
    doc: 'LayerNorm over the last dimension D of x [..., D]: xhat = (x - mean)*rstd with rstd = 1/sqrt(biased variance + eps), '
      + 'y = xhat*weight + bias (F.layer_norm). Also returns mean and rstd, both [...] (x without its last dim), which carry no gradient. '
      + 'eps defaults to 1e-5; D = 0 gives mean 0, rstd 1/sqrt(eps).',
    inputs: [{ name: 'x', kind: 'float' }, { name: 'weight', kind: 'float' }, { name: 'bias', kind: 'float' }],
    outputs: ['y', 'mean', 'rstd'],
    infer: ([x, w, b], attrs) => {
      const op = 'layer_norm';
      const [lead, D] = lastDimOf(op, x);
      normEps(op, attrs);
      expectShape(op, 'weight', w, [D]);
      expectShape(op, 'bias', b, [D]);
      return [{ shape: x.shape, dtype: x.dtype }, { shape: lead, dtype: x.dtype }, { shape: lead, dtype: x.dtype }];
    },
    tolerance: 'accumulate',
    cases: lastDimCases(true),
    gradOutputs: [0],
    vjp: (ctx, [x, w], [, mean, rstd], [dy]) => {
      if (!dy) return [null, null, null];
      return ctx.run('layer_norm_grad', [dy, x, w, mean, rstd]);
    },
  },
  {
    name: 'layer_norm_grad',
    doc: 'Gradients of layer_norm from dy, x, weight and the saved mean and rstd [...]: with g = dy*weight, dx = rstd*(g - mean_D(g) - '
      + 'xhat*mean_D(g*xhat)); dweight = sum over rows of dy*xhat; dbias = sum over rows of dy.',
    inputs: [
      { name: 'dy', kind: 'float' }, { name: 'x', kind: 'float' }, { name: 'weight', kind: 'float' },
      { name: 'mean', kind: 'float' }, { name: 'rstd', kind: 'float' },
    ],
    outputs: ['dx', 'dweight', 'dbias'],
    infer: ([dy, x, w, mean, rstd]) => {
      const op = 'layer_norm_grad';
      const [lead, D] = lastDimOf(op, x);
      expectShape(op, 'dy', dy, x.shape);
      expectShape(op, 'weight', w, [D]);
      expectShape(op, 'mean', mean, lead);
      expectShape(op, 'rstd', rstd, lead);
      return [{ shape: x.shape, dtype: x.dtype }, { shape: [D], dtype: x.dtype }, { shape: [D], dtype: x.dtype }];
    },
    domain: STATS_DOMAINS,
    tolerance: 'loose',
    cases: gradCases(lastDimCases(true), (c) => {
      const [x, w] = c.shapes;
      return [x, x, w, x.slice(0, -1), x.slice(0, -1)];
    }, () => ({})),
    backwardOf: 'layer_norm',
  },
  {
    name: 'rms_norm',
    autocast: 'f32',
    doc: 'RMSNorm over the last dimension D of x [..., D]: rstd = 1/sqrt(mean_D(x^2) + eps), y = x*rstd*weight (torch.nn.RMSNorm with an '
      + 'explicit eps, which is required). Also returns rstd [...] (x without its last dim), which carries no gradient; D = 0 gives rstd 1/sqrt(eps).',
    inputs: [{ name: 'x', kind: 'float' }, { name: 'weight', kind: 'float' }],
    outputs: ['y', 'rstd'],
    infer: ([x, w], attrs) => {
      const op = 'rms_norm';
      const [lead, D] = lastDimOf(op, x);
      normEps(op, attrs, true);
      expectShape(op, 'weight', w, [D]);
      return [{ shape: x.shape, dtype: x.dtype }, { shape: lead, dtype: x.dtype }];
    },
    tolerance: 'accumulate',
    cases: lastDimCases(false),
    gradOutputs: [0],
    vjp: (ctx, [x, w], [, rstd], [dy]) => {
      if (!dy) return [null, null];
      return ctx.run('rms_norm_grad', [dy, x, w, rstd]);
    },
  },
  {
    name: 'rms_norm_grad',
    doc: 'Gradients of rms_norm from dy, x, weight and the saved rstd [...]: with g = dy*weight, dx = rstd*(g - x*rstd^2*mean_D(g*x)); '
      + 'dweight = sum over rows of dy*x*rstd.',
    inputs: [{ name: 'dy', kind: 'float' }, { name: 'x', kind: 'float' }, { name: 'weight', kind: 'float' }, { name: 'rstd', kind: 'float' }],
    outputs: ['dx', 'dweight'],
    infer: ([dy, x, w, rstd]) => {
      const op = 'rms_norm_grad';
      const [lead, D] = lastDimOf(op, x);
      expectShape(op, 'dy', dy, x.shape);
      expectShape(op, 'weight', w, [D]);
      expectShape(op, 'rstd', rstd, lead);
      return [{ shape: x.shape, dtype: x.dtype }, { shape: [D], dtype: x.dtype }];
    },
    domain: [undefined, undefined, undefined, POSITIVE],
    tolerance: 'loose',
    cases: gradCases(lastDimCases(false), (c) => {
      const [x, w] = c.shapes;
      return [x, x, w, x.slice(0, -1)];
    }, () => ({})),
    backwardOf: 'rms_norm',
  },
]);
