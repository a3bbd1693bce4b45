// Shape helpers shared by the op table and every backend's kernels.

import { OpError } from './types.js';

/** Numpy-style broadcast of several shapes (right-aligned). */
export function broadcastShapes(op: string, ...shapes: (readonly number[])[]): number[] {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const j = rank - s.length + i;
      const d = s[i];
      if (out[j] === 1) out[j] = d;
      else if (d !== 1 && d !== out[j]) {
        throw new OpError(op, `shapes ${shapes.map((x) => `[${x}]`).join(', ')} do not broadcast`);
      }
    }
  }
  return out;
}

/**
 * Strides for reading a tensor of `shape` as if broadcast to `out` (rank-aligned to the right):
 * 0 along broadcast dimensions.
 */
export function broadcastStrides(shape: readonly number[], out: readonly number[]): number[] {
  const strides = new Array<number>(out.length).fill(0);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    const j = out.length - shape.length + i;
    strides[j] = shape[i] === 1 ? 0 : acc;
    acc *= shape[i];
  }
  return strides;
}

/** Normalises a possibly negative axis. */
export function normAxis(op: string, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) throw new OpError(op, `axis ${axis} out of range for rank ${rank}`);
  return a;
}

/**
 * Splits a shape around a contiguous axis range [first, last] into [outer, reduced, inner],
 * the form every reduction kernel works on.
 */
export function splitAxes(shape: readonly number[], first: number, last: number): [number, number, number] {
  let outer = 1, red = 1, inner = 1;
  shape.forEach((d, i) => {
    if (i < first) outer *= d;
    else if (i <= last) red *= d;
    else inner *= d;
  });
  return [outer, red, inner];
}

/** Reads `attrs[name]` as a number or throws naming it. */
export function numAttr(op: string, attrs: Record<string, unknown>, name: string, dflt?: number): number {
  const v = attrs[name] ?? dflt;
  if (typeof v !== 'number' || Number.isNaN(v)) throw new OpError(op, `attribute '${name}' must be a number, got ${String(v)}`);
  return v;
}

export function intArrayAttr(op: string, attrs: Record<string, unknown>, name: string, dflt?: number[]): number[] {
  const v = attrs[name] ?? dflt;
  if (!Array.isArray(v) || v.some((x) => !Number.isInteger(x))) {
    throw new OpError(op, `attribute '${name}' must be an array of integers, got ${JSON.stringify(v)}`);
  }
  return v as number[];
}

export function boolAttr(op: string, attrs: Record<string, unknown>, name: string, dflt?: boolean): boolean {
  const v = attrs[name] ?? dflt;
  if (typeof v !== 'boolean') throw new OpError(op, `attribute '${name}' must be a boolean, got ${String(v)}`);
  return v;
}
