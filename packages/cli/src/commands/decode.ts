// `ibq decode --config C --ckpt W tokens.npy --out DIR`: token grids -> PNG files.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { floatToImage, readNpy, writePng } from '@ibq/data';
import { latentSize } from '@ibq/ibq';
import { dispose, noGrad, tensor } from '@ibq/tensor';
import { type Command, EXIT_OK, UsageError } from '../command.js';
import { existingFile, positiveInt, requiredString } from '../options.js';
import { TOKENIZER_OPTIONS, TOKENIZER_USAGE, inBatches, loadTokenizer } from '../tokenizer.js';

export const decodeCommand: Command = {
  name: 'decode',
  summary: 'token grids (.npy) -> PNG images',
  usage: `usage: ibq decode --config C.yaml --ckpt W tokens.npy --out DIR [options]

Looks the tokens up in the codebook, decodes them, clamps to [-1, 1] and writes
DIR/000000.png, DIR/000001.png... (pixels (x+1)*127.5, truncated, as the reference).
  --out DIR           the folder to write (created if missing)
${TOKENIZER_USAGE}`,
  options: { ...TOKENIZER_OPTIONS, out: { type: 'string' } },
  positionals: { names: ['tokens.npy'], min: 1, max: 1 },
  async run(values, io, [file]) {
    const dir = requiredString(values, 'out');
    existingFile(file, 'token file');
    const batch = positiveInt(values, 'batch-size', 4);
    const arr = await readNpy(file);
    if (arr.shape.length !== 3 || !['<i4', '<i8', 'int32', 'int64'].includes(String(arr.dtype)) && !(arr.data instanceof Int32Array || arr.data instanceof BigInt64Array)) {
      throw new UsageError(`${file}: expected an integer array [N, h, w], got ${String(arr.dtype)} [${arr.shape}]`);
    }
    const { model, config, backend } = await loadTokenizer(values, io);
    try {
      const [n, h, w] = arr.shape;
      const side = latentSize(config);
      if (h !== side || w !== side) throw new UsageError(`${file}: token grids are ${h}x${w}, the config's latent grid is ${side}x${side}`);
      const ids = Int32Array.from(arr.data as ArrayLike<number | bigint>, Number);
      const bad = ids.findIndex((v) => v < 0 || v >= config.n_embed);
      if (bad >= 0) throw new UsageError(`${file}: token ${ids[bad]} at flat index ${bad} is outside the codebook [0, ${config.n_embed})`);
      mkdirSync(dir, { recursive: true });
      const R = config.ddconfig.resolution;
      await inBatches(n, batch, io, 'decoding', async (s, e) => {
        const t = tensor(ids.subarray(s * h * w, e * h * w), [e - s, h, w], { dtype: 'i32' });
        const img = noGrad(() => model.decodeIndices(t));
        const px = await img.data();
        for (let i = 0; i < e - s; i++) {
          await writePng(join(dir, `${String(s + i).padStart(6, '0')}.png`), floatToImage(px, R, R, 'chw', i * 3 * R * R));
        }
        dispose([t, img]);
      });
      io.out(`wrote ${n} images to ${dir}`);
      return EXIT_OK;
    } finally {
      model.dispose();
      backend.destroy();
    }
  },
};
