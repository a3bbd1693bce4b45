// Reference kernels for src/ops/random.ts: the Philox stream of src/philox.ts.

import { registerKernel } from '../../dispatch.js';
import { philoxNormals, philoxUniforms } from '../../philox.js';
import { type ReferenceBackend, view } from './backend.js';

const R = 'reference';

registerKernel<ReferenceBackend>('random_uniform', R, (_b, _in, [y], attrs) => {
  const yv = view(y);
  const u = philoxUniforms(attrs.seed as number, (attrs.offset as number | undefined) ?? 0, yv.length);
  const low = (attrs.low as number | undefined) ?? 0, high = (attrs.high as number | undefined) ?? 1;
  if (y.dtype === 'f32') {
    // Two separately rounded f32 operations, as every f32 backend computes them.
    const lo = Math.fround(low), width = Math.fround(Math.fround(high) - lo);
    for (let i = 0; i < yv.length; i++) yv[i] = Math.fround(lo + Math.fround(width * u[i]));
  } else {
    for (let i = 0; i < yv.length; i++) yv[i] = low + (high - low) * u[i];
  }
});

registerKernel<ReferenceBackend>('random_normal', R, (_b, _in, [y], attrs) => {
  const yv = view(y);
  const z = philoxNormals(attrs.seed as number, (attrs.offset as number | undefined) ?? 0, yv.length);
  const mean = (attrs.mean as number | undefined) ?? 0, std = (attrs.std as number | undefined) ?? 1;
  for (let i = 0; i < yv.length; i++) yv[i] = mean + std * z[i];
});

registerKernel<ReferenceBackend>('dropout', R, (_b, [x], [y], attrs) => {
  const xv = view(x), yv = view(y);
  const p = attrs.p as number;
  const u = philoxUniforms(attrs.seed as number, (attrs.offset as number | undefined) ?? 0, yv.length);
  const threshold = Math.fround(p);
  const scale = y.dtype === 'f32' ? Math.fround(1 / (1 - p)) : 1 / (1 - p);
  for (let i = 0; i < yv.length; i++) yv[i] = u[i] >= threshold ? xv[i] * scale : 0;
});
