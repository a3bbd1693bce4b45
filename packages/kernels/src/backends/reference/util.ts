// Index helpers for reference kernels.

import { broadcastStrides } from '../../shape.js';
import { sizeOf } from '../../types.js';

/**
 * Calls fn(outIndex, inIndex0, inIndex1, ...) for every element of `out`, with the flat
 * element index of each input read under numpy broadcasting.
 */
export function forEachBroadcast(out: readonly number[], ins: (readonly number[])[], fn: (o: number, idx: number[]) => void): void {
  const n = sizeOf(out);
  const rank = out.length;
  const strides = ins.map((s) => broadcastStrides(s, out));
  const pos = new Array<number>(rank).fill(0);
  const idx = new Array<number>(ins.length).fill(0);
  for (let o = 0; o < n; o++) {
    fn(o, idx);
    // advance the multi-index and every input's offset
    for (let d = rank - 1; d >= 0; d--) {
      pos[d]++;
      for (let k = 0; k < ins.length; k++) idx[k] += strides[k][d];
      if (pos[d] < out[d]) break;
      for (let k = 0; k < ins.length; k++) idx[k] -= strides[k][d] * out[d];
      pos[d] = 0;
    }
  }
}
