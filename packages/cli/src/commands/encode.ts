// `ibq encode --config C --ckpt W IMAGES... --out tokens.npy`: images -> token grids.

import { readImageForModel, writeNpy } from '@ibq/data';
import { latentSize } from '@ibq/ibq';
import { dispose, noGrad, tensor } from '@ibq/tensor';
import { type Command, EXIT_OK } from '../command.js';
import { existingFile, positiveInt, requiredString } from '../options.js';
import { concatF32 } from '../reconstruction.js';
import { TOKENIZER_OPTIONS, TOKENIZER_USAGE, inBatches, loadTokenizer } from '../tokenizer.js';

export const encodeCommand: Command = {
  name: 'encode',
  summary: 'images -> token grids (int32 .npy [N, h, w])',
  usage: `usage: ibq encode --config C.yaml --ckpt W IMAGES... --out tokens.npy [options]

Each image is resized (shorter side, bilinear) and centre-cropped to the configured
resolution as the reference's evaluation does, encoded, and quantized by maximum inner
product; the token grids land in one int32 .npy [N, h, w], in the order given.
  --out FILE          the .npy to write
${TOKENIZER_USAGE}`,
  options: { ...TOKENIZER_OPTIONS, out: { type: 'string' } },
  positionals: { names: ['IMAGES...'], min: 1 },
  async run(values, io, images) {
    const out = requiredString(values, 'out');
    for (const p of images) existingFile(p, 'image');
    const batch = positiveInt(values, 'batch-size', 4);
    const { model, config, backend } = await loadTokenizer(values, io);
    try {
      const R = config.ddconfig.resolution;
      const h = latentSize(config);
      const tokens = new Int32Array(images.length * h * h);
      await inBatches(images.length, batch, io, 'encoding', async (s, e) => {
        const inputs = await Promise.all(images.slice(s, e).map((p) => readImageForModel(p, { size: R })));
        const x = tensor(concatF32(inputs.map((i) => i.data)), [e - s, 3, R, R]);
        const { indices, zq, losses, z } = noGrad(() => model.encode(x));
        tokens.set((await indices.data()) as Int32Array, s * h * h);
        dispose([x, indices, zq, losses, z]);
      });
      await writeNpy(out, tokens, [images.length, h, h]);
      io.out(`wrote ${out}: ${images.length} x ${h} x ${h} tokens (${config.n_embed} codes)`);
      return EXIT_OK;
    } finally {
      model.dispose();
      backend.destroy();
    }
  },
};
