// `ibq demo`: the first-run job, the whole pipeline on Fashion-MNIST on the best device found:
// the demo tokenizer (PSNR, SSIM, codebook usage on the 10k test images), then tokens, a
// class-conditional GPT and its samples judged by a small classifier (demo-ar.ts), with the
// checkpoints, grids and one report.json in runs/demo.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { floatToImage, openMnist, tileImages, writePng } from '@ibq/data';
import { DEMO_CONFIG_YAML, demoConfig, type IBQTokenizer } from '@ibq/ibq';
import { dispose, noGrad, tensor } from '@ibq/tensor';
import { type Command, EXIT_OK, type OptionValues, UsageError } from '../command.js';
import { runDemoAr } from '../demo-ar.js';
import { evaluateReconstruction } from '../evaluate.js';
import { watchStopSignals } from '../stop.js';
import { buildTokenizer, DEVICE_OPTION, openBackend, positiveInt } from '../tokenizer.js';
import { runTraining } from '../training.js';

const STAGES = ['tokenizer', 'ar', 'all'] as const;

function minutesOption(values: OptionValues, name: string, dflt: number): number {
  const v = values[name];
  if (v === undefined) return dflt;
  const m = Number(v);
  if (!(m > 0)) throw new UsageError(`--${name}: expected a positive number, got '${String(v)}'`);
  return m;
}

/** report.json: the sections of the stages run so far (a later stage adds its own). */
function updateReport(path: string, patch: Record<string, unknown>): void {
  const old = existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>) : {};
  writeFileSync(path, `${JSON.stringify({ ...old, ...patch }, null, 2)}\n`);
}

export const demoCommand: Command = {
  name: 'demo',
  summary: 'the whole pipeline on Fashion-MNIST: tokenizer, tokens, class-conditional GPT, samples, figures',
  usage: `usage: ibq demo [--stage tokenizer|ar|all] [--out DIR] [--device D] [--minutes M] [options]

The whole IBQ pipeline on Debian's Fashion-MNIST, on the best device found:
  tokenizer  trains the demo IBQ tokenizer (32x32, 8x8 tokens, 1024 codes) for M minutes,
             reconstructs the test images: PSNR, SSIM, codebook usage, reconstructions.png
  ar         tokenizes part of the training and test sets with that tokenizer, trains a small
             classifier (its test accuracy is reported), trains a class-conditional GPT on the
             8x8 token grids for M minutes (its loss and perplexity on the test tokens are
             reported), samples every class with classifier-free guidance (samples.png) and
             reports the share of samples the classifier puts in their intended class and a
             Frechet distance of classifier features (NOT the ImageNet FID)
  all        both (default)
Writes checkpoint.safetensors (tokenizer), ar/ (the GPT's run folder), tokens/, metrics,
TensorBoard events, reconstructions.png, samples.png and report.json (every figure) into the
output folder. Ctrl-C (SIGINT) or SIGTERM stops after the current step or batch: the
checkpoint is written, the rest skipped, and the exit code is 130 (SIGINT) or 143 (SIGTERM);
a second signal quits at once.
  --stage S          tokenizer, ar or all (default all); ar needs the tokenizer stage's checkpoint in --out
  --out DIR          (default runs/demo)
  --device D         auto (default), webgpu, cpu or reference
  --minutes M        training time of each stage (default 4 for the tokenizer, 3 for the GPT)
  --steps N          stop the tokenizer after N steps (whichever comes first)
  --ar-steps N       stop the GPT after N steps (whichever comes first)
  --test-images N    test images to reconstruct (default all 10000)
  --batch-size N     tokenizer batch (default 16)
  --ar-train-images N  training images tokenized for the GPT (default 12000)
  --ar-test-images N   test images tokenized for its test loss (default 2000)
  --samples-per-class N  samples judged per class (default 100)
  --cfg-scale S      classifier-free guidance of the samples (default 3)
  --classifier-seconds S  the classifier's training budget (default 45)`,
  options: {
    ...DEVICE_OPTION, out: { type: 'string' }, minutes: { type: 'string' }, steps: { type: 'string' }, 'test-images': { type: 'string' },
    'batch-size': { type: 'string' }, stage: { type: 'string' }, 'ar-steps': { type: 'string' }, 'ar-train-images': { type: 'string' },
    'ar-test-images': { type: 'string' }, 'samples-per-class': { type: 'string' }, 'cfg-scale': { type: 'string' }, 'classifier-seconds': { type: 'string' },
  },
  async run(values, io) {
    const stage = (values.stage ?? 'all') as (typeof STAGES)[number];
    if (!STAGES.includes(stage)) throw new UsageError(`--stage: expected tokenizer, ar or all, got '${String(values.stage)}'`);
    const config = demoConfig();
    const out = typeof values.out === 'string' ? values.out : join('runs', 'demo');
    const tokMinutes = minutesOption(values, 'minutes', 4);
    const arMinutes = minutesOption(values, 'minutes', 3);
    const steps = positiveInt(values, 'steps', 1_000_000);
    const batchSize = positiveInt(values, 'batch-size', config.batch_size);
    const cfgScale = values['cfg-scale'] === undefined ? 3 : Number(values['cfg-scale']);
    if (!(cfgScale >= 1)) throw new UsageError(`--cfg-scale: expected a number >= 1, got '${String(values['cfg-scale'])}'`);
    const classifierSeconds = positiveInt(values, 'classifier-seconds', 45);
    const R = config.ddconfig.resolution;
    const checkpoint = join(out, 'checkpoint.safetensors');
    const reportPath = join(out, 'report.json');
    if (stage === 'ar' && !existsSync(checkpoint)) throw new UsageError(`--stage ar: no tokenizer checkpoint in ${out} (run --stage tokenizer first)`);
    const backend = await openBackend(values.device as string | undefined);
    const stop = watchStopSignals(io, 'finishing this step, then writing a checkpoint');
    let tokenizer: IBQTokenizer | null = null;
    let dispose_: (() => void) | null = null;
    try {
      mkdirSync(out, { recursive: true });
      if (stage !== 'ar') {
        const train = await openMnist('fashion-mnist', 'train', { size: R });
        const test = await openMnist('fashion-mnist', 'test', { size: R });
        const testCount = Math.min(test.length, positiveInt(values, 'test-images', test.length));
        io.out(`ibq demo: training a ${config.n_embed}-code IBQ tokenizer on Fashion-MNIST (${train.length} images, ${R}x${R}) on ${backend.name} for ${tokMinutes} min`);
        const run = await runTraining({
          config, configText: DEMO_CONFIG_YAML, dataset: train, backend, out, resume: false, seed: 0, batchSize, accumulate: 1,
          steps, seconds: tokMinutes * 60, checkpointEvery: 200, imageEvery: 100, logEvery: 10, perceptual: null, gan: false, stop,
        }, io);
        dispose_ = () => run.trainer.dispose();
        io.out(`trained ${run.stepsThisSession} steps (${(run.stepsThisSession * batchSize / run.seconds).toFixed(1)} images/s) in ${run.seconds.toFixed(0)} s; checkpoint ${run.checkpoint}`);
        if (run.interrupted) {
          io.out(`${stop.reason}: the test-set evaluation was skipped`);
          return stop.exitCode();
        }
        const model = run.trainer.model.eval();
        const subset = testCount < test.length ? { length: testCount, get: (i: number) => test.get(i) } : test;
        const report = await evaluateReconstruction(model, subset, { batchSize: 50, resolution: R, nEmbed: config.n_embed, stop }, io);
        if (report.stopped) {
          io.out(`${stop.reason} after reconstructing ${report.images} of ${subset.length} test images: no report written; checkpoint ${run.checkpoint}`);
          return stop.exitCode();
        }
        await writeGrid(model, subset, join(out, 'reconstructions.png'), R);
        updateReport(reportPath, { device: backend.name, trainSteps: run.trainer.step, trainSeconds: run.seconds, test: report });
        io.out(`test set (${report.images} images, ${report.seconds.toFixed(0)} s): PSNR ${report.psnr.toFixed(2)} dB  SSIM ${report.ssim.toFixed(4)}  codebook usage ${(100 * report.codebookUsage).toFixed(1)}% (${report.codesUsed}/${config.n_embed})`);
        io.out(`wrote ${join(out, 'reconstructions.png')} and ${reportPath}`);
        tokenizer = model;
      }
      if (stage !== 'tokenizer') {
        if (!tokenizer) {
          tokenizer = await buildTokenizer(config, checkpoint, { configPath: '<demo config>' }, io);
          const t = tokenizer;
          dispose_ = () => t.dispose();
        }
        const r = await runDemoAr({
          out, backend, tokenizer, tokenizerCheckpoint: checkpoint, seconds: arMinutes * 60, maxSteps: positiveInt(values, 'ar-steps', 1_000_000),
          trainImages: positiveInt(values, 'ar-train-images', 12000), testImages: positiveInt(values, 'ar-test-images', 2000),
          samplesPerClass: positiveInt(values, 'samples-per-class', 100), cfgScale, classifierSeconds, stop,
        }, io);
        if (!r) {
          io.out(`${stop.reason}: the AR stage stopped; its checkpoint (if any) is in ${join(out, 'ar')}`);
          return stop.exitCode();
        }
        updateReport(reportPath, { device: backend.name, ...r });
        const g = r.generation;
        io.out(`generation: ${(100 * g.intendedClassShare).toFixed(1)}% of ${g.samplesPerClass} samples per class classified as their intended class `
          + `(classifier test accuracy ${(100 * r.classifier.testAccuracy).toFixed(1)}%); per class ${g.perClass.map((v) => (100 * v).toFixed(0)).join(' ')}`);
        io.out(`classifier-feature Frechet distance (samples vs test images; NOT the ImageNet FID) ${g.classifierFrechetDistance.toFixed(2)}; `
          + `GPT test loss ${r.ar.testLoss.toFixed(3)} nats/token, perplexity ${r.ar.testPerplexity.toFixed(1)}`);
        io.out(`wrote ${g.grid} (one row per class, CFG ${g.cfgScale}) and ${reportPath}`);
      }
      return EXIT_OK;
    } finally {
      dispose_?.();
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
