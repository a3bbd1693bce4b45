// cpu kernel for src/ops/sample.ts: the reference's row routine (float64) over the wasm memory,
// on the calling thread (one row of logits per sample and step: small beside the model step).

import { registerKernel } from '../../../dispatch.js';
import { sampleAttrs } from '../../../ops/sample.js';
import { sampleRow } from '../../reference/sample.js';
import type { CpuBackend } from '../backend.js';

registerKernel<CpuBackend>('sample_logits', 'cpu', (b, [logits, u], [y], attrs) => {
  const o = sampleAttrs('sample_logits', attrs);
  const [R, V] = logits.shape;
  const m = b.mem();
  const lp = b.addr(logits) / 4, up = b.addr(u) / 4, yp = b.addr(y) / 4;
  for (let r = 0; r < R; r++) m.i32[yp + r] = sampleRow(m.f32, lp + r * V, V, m.f32[up + r], o);
});
