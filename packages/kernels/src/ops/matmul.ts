// Batched matrix product with optional transposes and numpy-style broadcasting of batch dims.

import { defineOps, type VjpContext } from '../op.js';
import { boolAttr, broadcastShapes } from '../shape.js';
import { type Attrs, OpError, type TensorInfo } from '../types.js';
import { sumToShape } from './grad.js';

/** The sizes of one matmul call: y[batch..., M, N] = op(a)[batch..., M, K] . op(b)[batch..., K, N]. */
export interface MatmulGeometry {
  transA: boolean;
  transB: boolean;
  M: number;
  K: number;
  N: number;
  /** Broadcast batch shape of the output (the dims before the last two). */
  batchShape: number[];
  aBatchShape: number[];
  bBatchShape: number[];
}

export function matmulGeometry(a: readonly number[], b: readonly number[], attrs: Attrs): MatmulGeometry {
  const transA = boolAttr('matmul', attrs, 'transA', false);
  const transB = boolAttr('matmul', attrs, 'transB', false);
  if (a.length < 2) throw new OpError('matmul', `input 'a' must have rank >= 2, got [${a}]`);
  if (b.length < 2) throw new OpError('matmul', `input 'b' must have rank >= 2, got [${b}]`);
  const [a0, a1] = a.slice(-2), [b0, b1] = b.slice(-2);
  const [M, K] = transA ? [a1, a0] : [a0, a1];
  const [Kb, N] = transB ? [b1, b0] : [b0, b1];
  if (K !== Kb) {
    throw new OpError('matmul', `inner sizes differ: a [${a}]${transA ? ' (transA)' : ''} has K=${K}, b [${b}]${transB ? ' (transB)' : ''} has K=${Kb}`);
  }
  const aBatchShape = a.slice(0, -2), bBatchShape = b.slice(0, -2);
  let batchShape: number[];
  try {
    batchShape = broadcastShapes('matmul', aBatchShape, bBatchShape);
  } catch {
    throw new OpError('matmul', `batch dims [${aBatchShape}] of a [${a}] and [${bBatchShape}] of b [${b}] do not broadcast`);
  }
  return { transA, transB, M, K, N, batchShape, aBatchShape, bBatchShape };
}

const mm = (ctx: VjpContext, x: TensorInfo, y: TensorInfo, transA: boolean, transB: boolean) =>
  ctx.run('matmul', [x, y], { transA, transB })[0];

defineOps([
  {
    name: 'matmul',
    autocast: 'low',
    doc: 'y[..., M, N] = sum_k A[..., m, k] * B[..., k, n] with A = a [..., M, K] (or a^T when `transA`, a being [..., K, M]) and '
      + 'B = b [..., K, N] (or b^T when `transB`, b being [..., N, K]); rank >= 2; batch dims broadcast numpy-style (either side may '
      + 'have fewer); K = 0 gives zeros.',
    inputs: [{ name: 'a', kind: 'float' }, { name: 'b', kind: 'float' }],
    outputs: ['y'],
    infer: ([a, b], attrs) => {
      const g = matmulGeometry(a.shape, b.shape, attrs);
      return [{ shape: [...g.batchShape, g.M, g.N], dtype: a.dtype }];
    },
    tolerance: 'accumulate',
    cases: [
      { name: 'regular', shapes: [[16, 32], [32, 24]] },
      { name: 'odd', shapes: [[5, 7, 11, 13], [5, 7, 13, 3]] },
      { name: 'tile-edges', shapes: [[67, 129], [129, 65]] },
      { name: 'transA', shapes: [[3, 13, 11], [3, 13, 5]], attrs: { transA: true } },
      { name: 'transB', shapes: [[3, 11, 13], [3, 5, 13]], attrs: { transB: true } },
      { name: 'transAB', shapes: [[2, 13, 11], [2, 5, 13]], attrs: { transA: true, transB: true } },
      { name: 'broadcast', shapes: [[5, 1, 11, 13], [7, 13, 3]] },
      { name: 'broadcast-transB', shapes: [[4, 9], [3, 6, 9]], attrs: { transB: true } },
      { name: 'broadcast-transA', shapes: [[2, 3, 9, 4], [1, 9, 6]], attrs: { transA: true } },
      { name: '1x1', shapes: [[1, 1], [1, 1]] },
      { name: 'size-1', shapes: [[1, 9, 1], [1, 7]] },
      { name: 'k-zero', shapes: [[3, 0], [0, 4]] },
      { name: 'm-zero', shapes: [[2, 0, 5], [2, 5, 3]] },
      { name: 'batch-zero', shapes: [[0, 4, 5], [5, 3]] },
    ],
    // With A = op(a), B = op(b): dA = dy.B^T, dB = A^T.dy; a transposed input gets the transpose
    // of its gradient, written as one matmul with the flags chosen so nothing is materialised.
    vjp: (c, [a, b], _o, [dy], attrs, needs) => {
      const { transA, transB } = matmulGeometry(a.shape, b.shape, attrs);
      const da = needs[0] ? (transA ? mm(c, b, dy!, transB, true) : mm(c, dy!, b, false, !transB)) : null;
      const db = needs[1] ? (transB ? mm(c, dy!, a, true, transA) : mm(c, a, dy!, !transA, false)) : null;
      return [da && sumToShape(c, da, a.shape), db && sumToShape(c, db, b.shape)];
    },
  },
]);
