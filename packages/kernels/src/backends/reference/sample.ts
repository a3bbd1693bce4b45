// Reference kernel for src/ops/sample.ts: the row rule in float64, exported for the cpu
// backend, which runs the same routine over its wasm memory (a per-row host loop: sorting and
// scanning one row of logits is negligible beside the model step that produced it).

import { registerKernel } from '../../dispatch.js';
import { type SampleAttrs, sampleAttrs } from '../../ops/sample.js';
import { type ReferenceBackend, view } from './backend.js';

/** The token of one row: logits[from .. from + V), uniform u (see the op's doc). */
export function sampleRow(logits: ArrayLike<number>, from: number, V: number, u: number, o: SampleAttrs): number {
  let m = -Infinity;
  for (let j = 0; j < V; j++) if (logits[from + j] > m) m = logits[from + j];
  const w = (l: number) => Math.exp((l - m) / o.temperature);
  let threshold = -Infinity;
  if (o.topK > 0 && o.topK < V) {
    const sorted = Float64Array.from({ length: V }, (_, j) => logits[from + j]).sort();
    threshold = sorted[V - o.topK];
  }
  if (o.topP < 1) {
    const kept = Float64Array.from({ length: V }, (_, j) => logits[from + j]).filter((l) => l >= threshold).sort().reverse();
    let total = 0;
    for (const l of kept) total += w(l);
    let above = 0;
    for (let i = 0; i < kept.length;) {
      const v = kept[i];
      let mass = 0;
      while (i < kept.length && kept[i] === v) mass += w(kept[i++]);
      if (above > o.topP * total) break;
      threshold = v;
      above += mass;
    }
  }
  let s = 0;
  for (let j = 0; j < V; j++) if (logits[from + j] >= threshold) s += w(logits[from + j]);
  const target = u * s;
  let c = 0, last = -1;
  for (let j = 0; j < V; j++) {
    const l = logits[from + j];
    if (l < threshold) continue;
    c += w(l);
    last = j;
    if (c > target) return j;
  }
  return last;
}

registerKernel<ReferenceBackend>('sample_logits', 'reference', (_b, [logits, u], [y], attrs) => {
  const o = sampleAttrs('sample_logits', attrs);
  const [R, V] = logits.shape;
  const lv = view(logits), uv = view(u), yv = view(y);
  for (let r = 0; r < R; r++) yv[r] = sampleRow(lv, r * V, V, uv[r], o);
});
