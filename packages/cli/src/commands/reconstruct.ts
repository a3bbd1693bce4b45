// `ibq reconstruct --config C --ckpt W IMAGES... --out DIR`: images through the tokenizer and
// back, with a side-by-side grid and per-image PSNR / SSIM as the reference evaluates them.

import { mkdirSync } from 'node:fs';
import { writeFileAtomicSync } from '@ibq/formats';
import { basename, extname, join } from 'node:path';
import { floatToImage, type PixelImage, readImageForModel, tileImages, writePng } from '@ibq/data';
import { ReconstructionMetricsAccumulator, reconstructionMetrics } from '@ibq/eval';
import { type Command, EXIT_OK, UsageError } from '../command.js';
import { existingFile, positiveInt, requiredString } from '../options.js';
import { concatF32, reconstructBatch, reconstructionTiles } from '../reconstruction.js';
import { TOKENIZER_OPTIONS, TOKENIZER_USAGE, inBatches, loadTokenizer } from '../tokenizer.js';

export const reconstructCommand: Command = {
  name: 'reconstruct',
  summary: 'images -> tokens -> images, with a comparison grid and PSNR / SSIM',
  usage: `usage: ibq reconstruct --config C.yaml --ckpt W IMAGES... --out DIR [options]

Writes DIR/<name>.png for each reconstruction, DIR/grid.png (each input beside its
reconstruction) and DIR/metrics.json, and prints per-image PSNR and SSIM (computed as
the reference's evaluation does: both images through uint8, data range 1).
  --out DIR           the folder to write (created if missing)
${TOKENIZER_USAGE}`,
  options: { ...TOKENIZER_OPTIONS, out: { type: 'string' } },
  positionals: { names: ['IMAGES...'], min: 1 },
  async run(values, io, images) {
    const dir = requiredString(values, 'out');
    for (const p of images) existingFile(p, 'image');
    const names = images.map((p) => basename(p, extname(p)));
    const dup = names.find((n, i) => names.indexOf(n) !== i);
    if (dup) throw new UsageError(`two inputs are named '${dup}': their reconstructions would overwrite each other`);
    const batch = positiveInt(values, 'batch-size', 4);
    const { model, config, backend } = await loadTokenizer(values, io);
    try {
      mkdirSync(dir, { recursive: true });
      const R = config.ddconfig.resolution;
      const acc = new ReconstructionMetricsAccumulator();
      const rows: { image: string; psnr: number; ssim: number }[] = [];
      const tiles: PixelImage[] = [];
      await inBatches(images.length, batch, io, 'reconstructing', async (s, e) => {
        const inputs = await Promise.all(images.slice(s, e).map((p) => readImageForModel(p, { size: R })));
        const xs = concatF32(inputs.map((i) => i.data));
        const rec = await reconstructBatch(model, xs, e - s, R, R);
        const m = reconstructionMetrics(xs, rec, e - s, R, R);
        acc.addValues(m.psnr, m.ssim);
        tiles.push(...reconstructionTiles(xs, rec, e - s, R, R));
        for (let i = 0; i < e - s; i++) {
          await writePng(join(dir, `${names[s + i]}.png`), floatToImage(rec, R, R, 'chw', i * 3 * R * R));
          rows.push({ image: images[s + i], psnr: m.psnr[i], ssim: m.ssim[i] });
        }
      });
      await writePng(join(dir, 'grid.png'), tileImages(tiles, { columns: 2 }));
      const summary = acc.result();
      writeFileAtomicSync(join(dir, 'metrics.json'), `${JSON.stringify({ images: rows, mean: summary }, null, 2)}\n`);
      const w = Math.max(5, ...rows.map((r) => r.image.length));
      io.out(`${'image'.padEnd(w)}  PSNR (dB)  SSIM`);
      for (const r of rows) io.out(`${r.image.padEnd(w)}  ${r.psnr.toFixed(3).padStart(9)}  ${r.ssim.toFixed(4)}`);
      io.out(`${'mean'.padEnd(w)}  ${summary.psnr.toFixed(3).padStart(9)}  ${summary.ssim.toFixed(4)}`);
      io.out(`wrote ${rows.length} reconstructions, grid.png and metrics.json to ${dir}`);
      return EXIT_OK;
    } finally {
      model.dispose();
      backend.destroy();
    }
  },
};
