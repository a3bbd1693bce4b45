// Reconstruction metrics of a tokenizer over a dataset, as the reference's evaluation_image.py
// computes them: PSNR and SSIM per image (through uint8), averaged per batch, and codebook usage.

import { BatchLoader, type ImageDataset } from '@ibq/data';
import { CodebookUsageCounter, ReconstructionMetricsAccumulator, reconstructionMetrics } from '@ibq/eval';
import type { IBQTokenizer } from '@ibq/ibq';
import { type Tensor, dispose, noGrad, tensor } from '@ibq/tensor';
import type { Io } from './io.js';
import type { StopController } from './stop.js';

export interface ReconstructionReport {
  images: number;
  psnr: number;
  ssim: number;
  codebookUsage: number;
  codesUsed: number;
  seconds: number;
  /** A signal ended the pass early: the figures cover only `images` images. */
  stopped: boolean;
  /** The running sums behind psnr, ssim and the usage (what a shard's partial statistics keep). */
  accumulator: ReconstructionMetricsAccumulator;
  usage: CodebookUsageCounter;
}

export async function evaluateReconstruction(
  model: IBQTokenizer, dataset: ImageDataset,
  o: {
    batchSize: number; resolution: number; nEmbed: number; transform?: { resize: number; crop: 'center' }; stop?: StopController;
    /** More metrics of each batch (originals and raw reconstructions, NCHW in [-1, 1]; clamp the latter). */
    onBatch?: (x: Tensor, xrec: Tensor) => Promise<void>;
  },
  io: Io,
): Promise<ReconstructionReport> {
  if (o.stop) o.stop.stopping = 'finishing this batch, then stopping the evaluation';
  const loader = new BatchLoader(dataset, { batchSize: o.batchSize, shuffle: false, dropLast: false, transform: o.transform, onSkip: (s) => io.err(`skipped ${s.path ?? `item ${s.index}`}: ${s.reason}`) });
  const acc = new ReconstructionMetricsAccumulator();
  const usage = new CodebookUsageCounter(o.nEmbed);
  const t0 = Date.now();
  let seen = 0;
  try {
    for await (const batch of loader.epoch(0)) {
      const x = tensor(batch.images, [batch.size, 3, batch.height, batch.width]);
      const { xrec, indices, losses } = noGrad(() => model.forward(x));
      if (o.onBatch) await o.onBatch(x, xrec);
      const m = reconstructionMetrics(batch.images, await xrec.data(), batch.size, batch.height, batch.width);
      acc.addValues(m.psnr, m.ssim);
      usage.add(await indices.data());
      dispose([x, xrec, indices, losses]);
      seen += batch.size;
      const rate = seen / ((Date.now() - t0) / 1000);
      io.status(`reconstructing ${seen}/${dataset.length}  ${rate.toFixed(1)} images/s  ETA ${((dataset.length - seen) / rate).toFixed(0)}s`);
      await o.stop?.boundary();
      if (o.stop?.requested) break;
    }
  } finally {
    await loader.close();
    io.status('');
  }
  const r = acc.result();
  const u = usage.result();
  return { images: r.images, psnr: r.psnr, ssim: r.ssim, codebookUsage: u.fraction, codesUsed: u.used, seconds: (Date.now() - t0) / 1000, stopped: o.stop?.requested ?? false, accumulator: acc, usage };
}
