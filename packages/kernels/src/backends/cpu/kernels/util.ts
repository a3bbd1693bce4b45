// Host-side helpers shared by the cpu kernels.

import { broadcastStrides } from '../../../shape.js';

/**
 * Collapses an output shape and the broadcast strides of its inputs into as few dims as
 * possible (merging dims that stay contiguous for every input), left-padded to `rank`.
 * Returns null if more than `rank` dims remain.
 */
export function collapseBroadcast(out: readonly number[], ins: readonly (readonly number[])[], rank: number): { dims: number[]; strides: number[][] } | null {
  const all = ins.map((s) => broadcastStrides(s, out));
  const dims: number[] = [];
  const strides: number[][] = ins.map(() => []);
  for (let d = 0; d < out.length; d++) {
    if (out[d] === 1) continue;
    const last = dims.length - 1;
    if (last >= 0 && all.every((s, k) => strides[k][last] === s[d] * out[d])) {
      dims[last] *= out[d];
      all.forEach((s, k) => (strides[k][last] = s[d]));
    } else {
      dims.push(out[d]);
      all.forEach((s, k) => strides[k].push(s[d]));
    }
  }
  if (dims.length > rank) return null;
  while (Number.isFinite(rank) && dims.length < rank) {
    dims.unshift(1);
    strides.forEach((s) => s.unshift(0));
  }
  return { dims, strides };
}

/** Float value of an f32 as its 32-bit pattern. */
export function f32Bits(v: number): number {
  const f = new Float32Array([v]);
  return new Int32Array(f.buffer)[0];
}

/**
 * The assembly's code for an op: its constant of the same name in upper case (from the
 * generated wasm-interface.ts). A missing constant is a type error, not a wrong result.
 */
export function asmCode<Op extends string>(op: Op, codes: Record<Uppercase<Op>, number>): number {
  return codes[op.toUpperCase() as Uppercase<Op>];
}
