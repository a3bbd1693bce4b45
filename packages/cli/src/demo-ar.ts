// The demo's second stage (`ibq demo --stage ar|all`): tokenize part of Fashion-MNIST with the
// demo tokenizer, train the demo classifier, train a small class-conditional GPT on the 8x8
// token grids, then sample every class with CFG and judge the samples with the classifier
// (the share in the intended class, and a Frechet distance of classifier features, which is
// not the ImageNet FID). Every figure lands in the report.

import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { floatToImage, type IdxImageDataset, imageToFloat, openMnist, tileImages, TokenShardDataset, writePng } from '@ibq/data';
import { loadArConfig } from '@ibq/ar';
import { accuracy, classifyImages, frechetDistance, trainDemoClassifier } from '@ibq/eval';
import { DEMO_CONFIG_YAML, type IBQTokenizer, demoConfig } from '@ibq/ibq';
import type { Backend } from '@ibq/kernels';
import { decodeSamples, runArTraining, validationLoss } from './ar-training.js';
import { sha256File, TokenFolderMismatchError, tokenizeToShards } from './commands/tokenize.js';
import type { Io } from './io.js';
import type { StopController } from './stop.js';

/**
 * The demo's GPT over the demo tokenizer's 8x8 grids of 1024 codes, Fashion-MNIST's 10
 * classes, in the official schema. Small (4 layers of width 128) so that a few minutes on two
 * CPU cores move it; no dropout (a run this short underfits; label dropout stays, CFG needs it);
 * LR 2e-3 after a 20-step warm-up, held constant (wpe 1) since the run ends by time.
 */
export const DEMO_AR_YAML = `# ibq demo: class-conditional GPT on the demo tokenizer's 8x8 tokens (official schema)
trainer:
  max_epochs: 1
  gradient_clip_val: 1.0
model:
  class_path: src.IBQ.models.cond_transformer_llama.Net2NetTransformer
  init_args:
    learning_rate: 2e-3
    weight_decay: 5e-2
    wp: 0
    wp0: 0.005
    wpe: 1.0
    twde: 0
    transformer_config:
      target: src.IBQ.modules.transformer.llama.GPT
      params:
        vocab_size: 1024
        block_size: 64
        n_layer: 4
        n_head: 4
        n_embd: 128
        cond_dim: 128
        multiple_of: 32
        resid_dropout_p: 0.0
        ffn_dropout_p: 0.0
        token_drop: 0.0
        drop_path_rate: 0.0
        alng: 1e-3
        class_num: 10
data:
  init_args:
    batch_size: 32
`;

export interface DemoArOptions {
  out: string;
  backend: Backend;
  tokenizer: IBQTokenizer;
  /** The tokenizer's checkpoint (its hash keys the token folders). */
  tokenizerCheckpoint: string;
  seconds: number;
  maxSteps: number;
  trainImages: number;
  testImages: number;
  samplesPerClass: number;
  cfgScale: number;
  classifierSeconds: number;
  stop: StopController;
}

export interface DemoArReport {
  tokens: { trainImages: number; testImages: number; seconds: number };
  classifier: { steps: number; seconds: number; testAccuracy: number; testImages: number };
  ar: {
    parameters: number; trainSteps: number; trainSeconds: number; tokensPerSecond: number; batchSize: number;
    /** Mean cross-entropy (nats per token) and perplexity on the test images' tokens. */
    testLoss: number; testPerplexity: number; checkpoint: string;
  };
  generation: {
    samplesPerClass: number; cfgScale: number; temperature: number;
    /** Share of the samples the classifier puts in the class they were drawn for; per class too. */
    intendedClassShare: number; perClass: number[];
    /** Frechet distance between the classifier's 64-d features of the samples and of the test images. */
    classifierFrechetDistance: number;
    /** Says what the distance is and is not. */
    note: string;
    grid: string;
    seconds: number;
  };
}

/** Images of an in-memory dataset, [s, e), as float CHW in [-1, 1] with labels. */
async function floats(ds: IdxImageDataset, s: number, e: number): Promise<{ images: Float32Array; labels: Int32Array }> {
  const per = 3 * 32 * 32;
  const images = new Float32Array((e - s) * per);
  const labels = new Int32Array(e - s);
  for (let i = s; i < e; i++) {
    const it = await ds.get(i);
    images.set(imageToFloat({ data: it.image, height: it.height, width: it.width, channels: 3 }, 'chw'), (i - s) * per);
    labels[i - s] = it.label ?? -1;
  }
  return { images, labels };
}

/** The first `n` items of a dataset. */
function head(ds: IdxImageDataset, n: number) {
  return { length: Math.min(n, ds.length), get: (i: number) => ds.get(i), labelOf: (i: number) => ds.labelOf?.(i), classes: ds.classes };
}

export async function runDemoAr(o: DemoArOptions, io: Io): Promise<DemoArReport | null> {
  const { stop } = o;
  const R = o.tokenizer.config.ddconfig.resolution;
  // --- 1. tokens of the first N training and test images (native 28x28, resized to R as the demo's training saw them)
  const t0 = Date.now();
  const ckptSha256 = await sha256File(o.tokenizerCheckpoint);
  const configSha256 = createHash('sha256').update(DEMO_CONFIG_YAML).digest('hex');
  const folders: Record<'train' | 'test', string> = { train: join(o.out, 'tokens', 'train'), test: join(o.out, 'tokens', 'test') };
  for (const split of ['train', 'test'] as const) {
    const ds = head(await openMnist('fashion-mnist', split), split === 'train' ? o.trainImages : o.testImages);
    const run = () => tokenizeToShards({
      model: o.tokenizer, config: demoConfig(), configPath: '<demo config>', configSha256, ckptPath: o.tokenizerCheckpoint, ckptSha256,
      dataset: ds, source: 'fashion-mnist', split, out: folders[split], kind: 'none', batchSize: 100, shardItems: 5000, part: 0, parts: 1, stop,
      deviceName: o.backend.name,
    }, io);
    io.out(`tokenizing ${ds.length} ${split} images -> ${folders[split]}`);
    try {
      await run();
    } catch (e) {
      if (!(e instanceof TokenFolderMismatchError)) throw e;
      // Tokens of an earlier tokenizer: this one replaces them.
      rmSync(folders[split], { recursive: true, force: true });
      await run();
    }
    if (stop.requested) return null;
  }
  const tokenSeconds = (Date.now() - t0) / 1000;

  // --- 2. the classifier that judges the samples
  const trainImgs = await openMnist('fashion-mnist', 'train', { size: 32 });
  const testImgs = await openMnist('fashion-mnist', 'test', { size: 32 });
  io.out(`training the demo classifier (small CNN) for up to ${o.classifierSeconds} s`);
  const cls = await trainDemoClassifier({ length: trainImgs.length, batch: (s, e) => floats(trainImgs, s, e) }, {
    seconds: o.classifierSeconds, onStep: (s, l) => io.status(`classifier step ${s}  loss ${l.toFixed(3)}`),
  });
  io.status('');
  const test = await floats(testImgs, 0, testImgs.length);
  const testSet = await classifyImages(cls.classifier, test.images, testImgs.length);
  const testAccuracy = accuracy(testSet.predictions, test.labels);
  io.out(`classifier: ${cls.steps} steps in ${cls.seconds.toFixed(0)} s, test accuracy ${(100 * testAccuracy).toFixed(1)}% (${testImgs.length} images)`);
  if (stop.requested) return null;

  // --- 3. the GPT
  const { gpt, train: recipe } = loadArConfig(DEMO_AR_YAML, '<demo AR config>');
  const trainTokens = await TokenShardDataset.open(folders.train);
  const testTokens = await TokenShardDataset.open(folders.test);
  const arOut = join(o.out, 'ar');
  const batchSize = recipe.batch_size;
  const perEpoch = Math.floor(trainTokens.length / batchSize);
  io.out(`training the class-conditional GPT (${gpt.n_layer} layers, width ${gpt.n_embd}) on ${trainTokens.length} token grids for ${(o.seconds / 60).toFixed(1)} min`);
  try {
    const run = await runArTraining({
      config: gpt, recipe: { ...recipe, wp: 20 / perEpoch, gradient_clip_val: recipe.gradient_clip_val ?? 1 }, configText: DEMO_AR_YAML,
      data: { kind: 'tokens', train: trainTokens }, backend: o.backend, out: arOut, resume: false, seed: 0, batchSize, accumulate: 1,
      steps: o.maxSteps, scheduleSteps: 1_000_000, seconds: o.seconds, checkpointEvery: 500, sampleEvery: 0, logEvery: 10, ema: null, precision: '32',
      tokenizer: o.tokenizer, cfgScale: o.cfgScale, stop,
    }, io);
    const trainer = run.trainer;
    const tokensPerSecond = (run.stepsThisSession * batchSize * gpt.block_size) / run.seconds;
    io.out(`trained ${run.stepsThisSession} steps (${tokensPerSecond.toFixed(0)} tokens/s) in ${run.seconds.toFixed(0)} s; last loss ${run.lastLog?.loss.toFixed(3)}; checkpoint ${run.checkpoint}`);
    if (run.interrupted) {
      trainer.dispose();
      return null;
    }
    trainer.model.eval();
    const testLoss = await validationLoss(trainer, testTokens, 250, stop);
    io.out(`test tokens (${testTokens.length} images): loss ${testLoss.toFixed(4)} nats/token, perplexity ${Math.exp(testLoss).toFixed(1)}`);

    // --- 4. samples of every class, judged by the classifier
    const g0 = Date.now();
    const K = gpt.class_num, n = o.samplesPerClass;
    const per = 3 * R * R;
    const samples = new Float32Array(K * n * per);
    const chunk = 100;
    for (let s = 0; s < K * n; s += chunk) {
      const e = Math.min(K * n, s + chunk);
      const classes = Int32Array.from({ length: e - s }, (_, i) => Math.floor((s + i) / n));
      const indices = Int32Array.from({ length: e - s }, (_, i) => (s + i) % n);
      const imgs = await decodeSamples(trainer.model, o.tokenizer, classes, indices, { cfgScale: o.cfgScale, seed: 0, temperature: 1 });
      // Through uint8 as a saved image would be (clamp, truncate), then back to [-1, 1].
      for (let i = 0; i < e - s; i++) samples.set(imageToFloat(floatToImage(imgs, R, R, 'chw', i * per), 'chw'), (s + i) * per);
      io.status(`sampling ${e}/${K * n} (CFG ${o.cfgScale})`);
      await stop.boundary();
      if (stop.requested) {
        trainer.dispose();
        return null;
      }
    }
    io.status('');
    const gen = await classifyImages(cls.classifier, samples, K * n);
    const intended = Int32Array.from({ length: K * n }, (_, i) => Math.floor(i / n));
    const perClass = Array.from({ length: K }, (_, c) => accuracy(gen.predictions.subarray(c * n, (c + 1) * n), intended.subarray(c * n, (c + 1) * n)));
    const share = accuracy(gen.predictions, intended);
    const fd = frechetDistance(gen.stats.mean(), gen.stats.covariance(), testSet.stats.mean(), testSet.stats.covariance());
    const grid = join(o.out, 'samples.png');
    const tiles = [];
    for (let c = 0; c < K; c++) for (let i = 0; i < Math.min(n, 10); i++) tiles.push(floatToImage(samples, R, R, 'chw', (c * n + i) * per));
    await writePng(grid, tileImages(tiles, { columns: Math.min(n, 10) }));
    const report: DemoArReport = {
      tokens: { trainImages: trainTokens.length, testImages: testTokens.length, seconds: tokenSeconds },
      classifier: { steps: cls.steps, seconds: cls.seconds, testAccuracy, testImages: testImgs.length },
      ar: {
        parameters: trainer.model.parameters().reduce((a, p) => a + p.size, 0), trainSteps: trainer.step, trainSeconds: run.seconds, tokensPerSecond, batchSize,
        testLoss, testPerplexity: Math.exp(testLoss), checkpoint: run.checkpoint,
      },
      generation: {
        samplesPerClass: n, cfgScale: o.cfgScale, temperature: 1, intendedClassShare: share, perClass, classifierFrechetDistance: fd,
        note: "classifierFrechetDistance uses the demo classifier's 64-d features on Fashion-MNIST; it is NOT the ImageNet FID (InceptionV3) and compares only demo runs with each other",
        grid, seconds: (Date.now() - g0) / 1000,
      },
    };
    trainer.dispose();
    return report;
  } finally {
    cls.classifier.dispose();
    await trainTokens.close();
    await testTokens.close();
  }
}

