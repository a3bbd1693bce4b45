import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ReferenceBackend } from '@ibq/kernels';
import { dispose, noGrad, setBackend, tensor } from '@ibq/tensor';
import { IBQTokenizer, loadConfig } from '../src/index.js';

const config = loadConfig(fileURLToPath(new URL('../configs/micro_test.yaml', import.meta.url)));

describe('tokenizer scopes', () => {
  it('encode, decode and forward free their intermediates, with and without gradients', async () => {
    const be = new ReferenceBackend();
    setBackend(be);
    const model = new IBQTokenizer(config);
    const x = tensor(new Float32Array(2 * 3 * 8 * 8).map((_, i) => Math.sin(i)), [2, 3, 8, 8]);
    const base = be.memory();
    for (let i = 0; i < 3; i++) {
      const enc = noGrad(() => model.encode(x));
      const grid = enc.indices.reshape([2, 8, 8]);
      const img = noGrad(() => model.decodeIndices(grid));
      const out = noGrad(() => model.forward(x));
      dispose([enc, grid, img, out]);
      expect(be.memory(), `pass ${i}`).toEqual(base);
    }
    model.dispose();
  });
});
