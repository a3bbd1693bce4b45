// `ibq demo`: the first-run job. Trains the demo tokenizer on Fashion-MNIST for a few minutes
// on the best device found, reconstructs the 10k test images and reports PSNR, SSIM and
// codebook usage, with the checkpoint, a grid and a report in runs/demo.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { floatToImage, openMnist, tileImages, writePng } from '@ibq/data';
import { DEMO_CONFIG_YAML, demoConfig } from '@ibq/ibq';
import { dispose, noGrad, tensor } from '@ibq/tensor';
import { type Command, EXIT_OK } from '../command.js';
import { evaluateReconstruction } from '../evaluate.js';
import { watchStopSignals } from '../stop.js';
import { DEVICE_OPTION, openBackend, positiveInt } from '../tokenizer.js';
import { runTraining } from '../training.js';

export const demoCommand: Command = {
  name: 'demo',
  summary: 'train a small tokenizer on Fashion-MNIST, then report PSNR, SSIM and codebook usage',
  usage: `usage: ibq demo [--out DIR] [--device D] [--minutes M | --steps N] [--test-images N]

Trains the demo IBQ tokenizer (32x32, 8x8 tokens, 1024 codes) on Debian's Fashion-MNIST
for a time budget on the best device found, then reconstructs the test images and prints
PSNR, SSIM and codebook usage. Writes checkpoint.safetensors, metrics.jsonl, TensorBoard
events, reconstructions.png and report.json into the output folder. Ctrl-C (SIGINT) or
SIGTERM stops after the current step or batch: the checkpoint is written, the rest skipped,
and the exit code is 130 (SIGINT) or 143 (SIGTERM); a second signal quits at once.
  --out DIR          (default runs/demo)
  --device D         auto (default), webgpu, cpu or reference
  --minutes M        training time budget (default 4)
  --steps N          stop after N steps instead (whichever comes first)
  --test-images N    test images to reconstruct (default all 10000)
  --batch-size N     (default 16)`,
  options: { ...DEVICE_OPTION, out: { type: 'string' }, minutes: { type: 'string' }, steps: { type: 'string' }, 'test-images': { type: 'string' }, 'batch-size': { type: 'string' } },
  async run(values, io) {
    const config = demoConfig();
    const out = typeof values.out === 'string' ? values.out : join('runs', 'demo');
    const minutes = values.minutes === undefined ? 4 : Number(values.minutes);
    if (!(minutes > 0)) throw new Error(`--minutes: expected a positive number, got '${String(values.minutes)}'`);
    const steps = positiveInt(values, 'steps', 1_000_000);
    const batchSize = positiveInt(values, 'batch-size', config.batch_size);
    const R = config.ddconfig.resolution;
    const train = await openMnist('fashion-mnist', 'train', { size: R });
    const test = await openMnist('fashion-mnist', 'test', { size: R });
    const testCount = Math.min(test.length, positiveInt(values, 'test-images', test.length));
    const backend = await openBackend(values.device as string | undefined);
    io.out(`ibq demo: training a ${config.n_embed}-code IBQ tokenizer on Fashion-MNIST (${train.length} images, ${R}x${R}) on ${backend.name} for ${minutes} min`);
    const stop = watchStopSignals(io, 'finishing this step, then writing a checkpoint');
    try {
      const run = await runTraining({
        config, configText: DEMO_CONFIG_YAML, dataset: train, backend, out, resume: false, seed: 0, batchSize, accumulate: 1,
        steps, seconds: minutes * 60, checkpointEvery: 200, imageEvery: 100, logEvery: 10, perceptual: null, gan: false, stop,
      }, io);
      io.out(`trained ${run.stepsThisSession} steps (${(run.stepsThisSession * batchSize / run.seconds).toFixed(1)} images/s) in ${run.seconds.toFixed(0)} s; checkpoint ${run.checkpoint}`);
      if (run.interrupted) {
        io.out(`${stop.reason}: the test-set evaluation was skipped`);
        run.trainer.dispose();
        return stop.exitCode();
      }
      const model = run.trainer.model.eval();
      const subset = testCount < test.length ? { length: testCount, get: (i: number) => test.get(i) } : test;
      const report = await evaluateReconstruction(model, subset, { batchSize: 50, resolution: R, nEmbed: config.n_embed, stop }, io);
      if (report.stopped) {
        io.out(`${stop.reason} after reconstructing ${report.images} of ${subset.length} test images: no report written; checkpoint ${run.checkpoint}`);
        run.trainer.dispose();
        return stop.exitCode();
      }
      await writeGrid(model, subset, join(out, 'reconstructions.png'), R);
      writeFileSync(join(out, 'report.json'), `${JSON.stringify({ device: backend.name, trainSteps: run.trainer.step, trainSeconds: run.seconds, test: report }, null, 2)}\n`);
      io.out(`test set (${report.images} images, ${report.seconds.toFixed(0)} s): PSNR ${report.psnr.toFixed(2)} dB  SSIM ${report.ssim.toFixed(4)}  codebook usage ${(100 * report.codebookUsage).toFixed(1)}% (${report.codesUsed}/${config.n_embed})`);
      io.out(`wrote ${join(out, 'reconstructions.png')} and ${join(out, 'report.json')}`);
      run.trainer.dispose();
      return EXIT_OK;
    } finally {
      stop.dispose();
      backend.destroy();
    }
  },
};

/** The first 16 test images (left) beside their reconstructions (right). */
async function writeGrid(model: import('@ibq/ibq').IBQTokenizer, ds: { get(i: number): Promise<{ image: Uint8Array }> | { image: Uint8Array } }, path: string, R: number): Promise<void> {
  const n = 16;
  const imgs = await Promise.all(Array.from({ length: n }, async (_, i) => (await ds.get(i)).image));
  const xs = new Float32Array(n * 3 * R * R);
  imgs.forEach((im, i) => {
    for (let c = 0; c < 3; c++) for (let p = 0; p < R * R; p++) xs[i * 3 * R * R + c * R * R + p] = im[p * 3 + c] / 127.5 - 1;
  });
  const x = tensor(xs, [n, 3, R, R]);
  const { xrec, indices, losses } = noGrad(() => model.forward(x));
  const rec = await xrec.data();
  dispose([x, xrec, indices, losses]);
  const tiles = [];
  for (let i = 0; i < n; i++) tiles.push(floatToImage(xs, R, R, 'chw', i * 3 * R * R), floatToImage(rec, R, R, 'chw', i * 3 * R * R));
  await writePng(path, tileImages(tiles, { columns: 4 }));
}
