// cpu kernels for src/ops/random.ts: the Philox stream of src/philox.ts, computed in wasm.

import { registerKernel } from '../../../dispatch.js';
import { splitWords } from '../../../philox.js';
import { sizeOf } from '../../../types.js';
import type { CpuBackend } from '../backend.js';
import { ASM } from '../wasm-interface.js';

const { FILL_UNIFORM, FILL_NORMAL, FILL_DROPOUT } = ASM.random;

const C = 'cpu';
const GRAIN = 1 << 14;

function fill(b: CpuBackend, kind: number, x: number, y: number, n: number, attrs: Record<string, unknown>, a: number, bb: number): void {
  const [lo, hi] = splitWords(attrs.seed as number);
  const offset = (attrs.offset as number | undefined) ?? 0;
  splitWords(offset);
  if (n > 0) splitWords(offset + n - 1);
  b.pool.run('philoxFill', b.split(n, GRAIN).map(([i0, i1]) => [kind, x, y, lo, hi, offset, a, bb, i0, i1]));
}

registerKernel<CpuBackend>('random_uniform', C, (b, _in, [y], attrs) => {
  const low = (attrs.low as number | undefined) ?? 0, high = (attrs.high as number | undefined) ?? 1;
  const lo = Math.fround(low), width = Math.fround(Math.fround(high) - lo);
  fill(b, FILL_UNIFORM, 0, b.addr(y), sizeOf(y.shape), attrs, lo, width);
});

registerKernel<CpuBackend>('random_normal', C, (b, _in, [y], attrs) => {
  const mean = (attrs.mean as number | undefined) ?? 0, std = (attrs.std as number | undefined) ?? 1;
  fill(b, FILL_NORMAL, 0, b.addr(y), sizeOf(y.shape), attrs, mean, std);
});

registerKernel<CpuBackend>('dropout', C, (b, [x], [y], attrs) => {
  const p = attrs.p as number;
  fill(b, FILL_DROPOUT, b.addr(x), b.addr(y), sizeOf(y.shape), attrs, Math.fround(p), Math.fround(1 / (1 - p)));
});
