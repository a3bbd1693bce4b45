// The cpu norms and attention on shapes larger than the op table's cases: several query and
// key blocks (the flash-style tiles are 32 x 64), causal blocks cut mid-tile, rows that span
// several gradient chunks, sizes that split across threads, SIMD bodies with scalar tails; against reference (values and
// gradients), on 1 and 2 threads, and bit-identical between the two.
import { afterAll, describe, expect, it } from 'vitest';
import { type OpCase, type TensorInfo, getOp, runOp } from '../src/index.js';
import { CpuBackend } from '../src/backends/cpu/index.js';
import { caseInputs, checkCase, checkGradParity, upload } from '../src/harness/index.js';

const one = new CpuBackend({ threads: 1 });
const two = new CpuBackend({ threads: 2 });
await one.init();
await two.init();
afterAll(() => {
  one.destroy();
  two.destroy();
});

const cases: Record<string, OpCase[]> = {
  group_norm: [
    { name: 'IBQ-like 32 groups', shapes: [[2, 64, 24, 24], [64], [64]], attrs: { groups: 32, eps: 1e-6 } },
    { name: 'odd spatial', shapes: [[3, 24, 9, 7], [24], [24]], attrs: { groups: 8, eps: 1e-5 } },
  ],
  group_norm_silu: [
    { name: 'config S 32 groups', shapes: [[2, 64, 32, 32], [64], [64]], attrs: { groups: 32, eps: 1e-6 } },
    { name: 'odd spatial', shapes: [[3, 24, 9, 7], [24], [24]], attrs: { groups: 8, eps: 1e-5 } },
  ],
  batch_norm_train: [
    { name: 'regular', shapes: [[8, 16, 24, 23], [16], [16]], attrs: { eps: 1e-5 } },
    { name: 'one channel', shapes: [[3, 1, 21, 5], [1], [1]], attrs: { eps: 1e-5 } },
  ],
  batch_norm_eval: [
    { name: 'regular', shapes: [[8, 16, 24, 23], [16], [16], [16], [16]], attrs: { eps: 1e-5 } },
  ],
  layer_norm: [
    { name: 'many rows', shapes: [[300, 261], [261], [261]], attrs: { eps: 1e-5 } },
    { name: 'wide rows', shapes: [[3, 5, 600], [600], [600]], attrs: { eps: 1e-6 } },
  ],
  rms_norm: [
    { name: 'many rows', shapes: [[300, 261], [261]], attrs: { eps: 1e-6 } },
    { name: 'wide rows', shapes: [[3, 5, 600], [600]], attrs: { eps: 1e-5 } },
  ],
  attention: [
    { name: 'full, several blocks', shapes: [[2, 2, 70, 20], [2, 2, 150, 20], [2, 2, 150, 12]], attrs: { causal: false } },
    { name: 'causal, Lq < Lk', shapes: [[2, 2, 70, 20], [2, 2, 150, 20], [2, 2, 150, 12]], attrs: { causal: true } },
    { name: 'causal self', shapes: [[1, 3, 130, 16], [1, 3, 130, 16], [1, 3, 130, 16]], attrs: { causal: true } },
    { name: 'one head, wide (IBQ mid-block)', shapes: [[2, 1, 64, 96], [2, 1, 64, 96], [2, 1, 64, 96]], attrs: { causal: false } },
    { name: 'decode step', shapes: [[3, 4, 1, 32], [3, 4, 97, 32], [3, 4, 97, 32]], attrs: { causal: true, scale: 0.2 } },
  ],
};

describe('cpu norms and attention, larger shapes', () => {
  for (const [op, list] of Object.entries(cases)) {
    for (const c of list) {
      it(`${op}: ${c.name}`, async () => {
        const def = getOp(op);
        for (const b of [one, two]) {
          const r = await checkCase(b, def, c);
          expect(r.failure, `${b.threads} threads`).toBeNull();
          if (def.vjp) {
            const g = await checkGradParity(b, def, c);
            expect(g.failure, `${b.threads} threads (gradient)`).toBeNull();
          }
        }
      });
    }
  }

  it('gives bit-identical results on 1 and 2 threads', () => {
    const grads: [string, string, (c: OpCase, ins: TensorInfo[], outs: TensorInfo[]) => TensorInfo[]][] = [
      ['group_norm', 'group_norm_grad', (c, [x, w], [y, m, r]) => [y, x, w, m, r]],
      ['group_norm_silu', 'group_norm_silu_grad', (c, [x, w, b], [y, m, r]) => [y, x, w, b, m, r]],
      ['batch_norm_train', 'batch_norm_train_grad', (c, [x, w], [y, m, v]) => [y, x, w, m, v]],
      ['layer_norm', 'layer_norm_grad', (c, [x, w], [y, m, r]) => [y, x, w, m, r]],
      ['rms_norm', 'rms_norm_grad', (c, [x, w], [y, r]) => [y, x, w, r]],
      // dout = out: any upstream gradient does.
      ['attention', 'attention_grad', (c, [q, k, v], [o, l]) => [o, q, k, v, o, l]],
    ];
    for (const [op, grad, gradInputs] of grads) {
      for (const c of cases[op]) {
        const host = caseInputs(getOp(op), c);
        const results = [one, two].map((b) => {
          const ins = host.map((h) => upload(b, h));
          const outs = runOp(b, op, ins, c.attrs);
          const gattrs = op.startsWith('group_norm') ? { groups: c.attrs!.groups } : op.endsWith('norm') && op !== 'batch_norm_train' ? {} : c.attrs;
          const gouts = runOp(b, grad, gradInputs(c, ins, outs), gattrs);
          const all = [...outs, ...gouts].map((t) => Array.from(b.readSync(t.buffer, t.offset, t.shape.reduce((s, d) => s * d, 1))));
          for (const t of [...ins, ...outs, ...gouts]) b.release(t.buffer);
          return all;
        });
        expect(results[1], `${op}: ${c.name}`).toEqual(results[0]);
      }
    }
    expect(one.memory().buffers).toBe(0);
    expect(two.memory().buffers).toBe(0);
  });
});
