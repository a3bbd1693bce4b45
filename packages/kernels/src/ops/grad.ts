// Helpers for backward rules, written with ops only.

import type { VjpContext } from '../op.js';
import type { TensorInfo } from '../types.js';
import { sizeOf } from '../types.js';

/** Sums a gradient of a broadcast result back to the shape of the input that was broadcast. */
export function sumToShape(ctx: VjpContext, g: TensorInfo, shape: readonly number[]): TensorInfo {
  if (g.shape.length === shape.length && g.shape.every((d, i) => d === shape[i])) return g;
  const lead = g.shape.length - shape.length;
  let t = g;
  for (let i = 0; i < g.shape.length; i++) {
    const want = i < lead ? 1 : shape[i - lead];
    if (t.shape[i] !== want) t = ctx.run('sum', [t], { axes: [i], keepDims: true })[0];
  }
  return ctx.reshape(t, shape);
}

/** A one-element tensor holding `value` (broadcasts against anything). */
export function scalar(ctx: VjpContext, like: TensorInfo, value: number): TensorInfo {
  return ctx.run('fill', [], { shape: [1], value, dtype: like.dtype })[0];
}

/** An all-zero gradient of `shape`. */
export function zeros(ctx: VjpContext, like: TensorInfo, shape: readonly number[] = like.shape): TensorInfo {
  return ctx.run('fill', [], { shape: [...shape], value: 0, dtype: like.dtype })[0];
}

export function isEmpty(t: TensorInfo): boolean {
  return sizeOf(t.shape) === 0;
}
