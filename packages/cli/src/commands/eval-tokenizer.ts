// `ibq eval-tokenizer --config C --ckpt W --data DIR --inception W`: the reference's
// evaluation_image.py protocol (spec eval.md §1-4): images in sorted order, SmallestMaxSize +
// centre crop, EMA weights, reconstructions clamped to [-1, 1]; rFID with pytorch-fid's network
// on float images (x+1)/2 (both sets on the fly, streamed statistics), LPIPS-VGG and LPIPS-alex
// (when their weights are given), PSNR, SSIM and codebook usage, as a table and a JSON report.

import { ImageFolderDataset, writeFileAtomic } from '@ibq/data';
import {
  FeatureStats, type InceptionV3, type LPIPS, type LpipsAlex, type LpipsWeightsSource, frechetDistance, loadInception, loadLpips,
  loadLpipsAlex, lpipsPerImage,
} from '@ibq/eval';
import { type Tensor, clamp, dispose, scale, tidy } from '@ibq/tensor';
import { type Command, EXIT_OK, UsageError } from '../command.js';
import { evaluateReconstruction } from '../evaluate.js';
import { watchStopSignals } from '../stop.js';
import { existingFile, positiveInt, requiredString } from '../options.js';
import { TOKENIZER_OPTIONS, TOKENIZER_USAGE, loadTokenizer } from '../tokenizer.js';

export const evalTokenizerCommand: Command = {
  name: 'eval-tokenizer',
  summary: "a tokenizer's rFID, LPIPS, PSNR, SSIM and codebook usage (evaluation_image.py's protocol)",
  usage: `usage: ibq eval-tokenizer --config C.yaml --ckpt W --data DIR --inception W [options]

The reference's evaluation_image.py: the images of DIR in sorted order, resized (shorter
side) and centre-cropped to the configured resolution, reconstructed with the EMA weights
and clamped; rFID with pytorch-fid's Inception on the float images (x+1)/2 of both sets
(statistics streamed, pytorch-fid's input mode), LPIPS-VGG (per-image mean), PSNR and SSIM
through uint8 (batch means averaged), codebook usage. Prints a table; --out writes JSON.
  --data DIR          image folder (class sub-folders or images directly)
  --inception W       pytorch-fid's pt_inception-2015-12-05-6726825d.pth
  --lpips-vgg F       torchvision's vgg16 .pth for LPIPS-VGG, with --lpips-heads (the v0.1 vgg.pth);
                      without them LPIPS-VGG comes from the checkpoint's loss.perceptual_loss.*
                      weights when it has them, else it is left out
  --lpips-heads F     the LPIPS v0.1 VGG heads (lin0..lin4)
  --lpips-alex F      torchvision's alexnet .pth for LPIPS-alex, with --lpips-alex-heads (the v0.1
                      alex.pth, which ships with the pip lpips package: not included here)
  --lpips-alex-heads F
  --limit N           only the first N images
  --out FILE          also write the report as JSON
${TOKENIZER_USAGE}`,
  options: {
    ...TOKENIZER_OPTIONS, data: { type: 'string' }, inception: { type: 'string' }, 'lpips-vgg': { type: 'string' },
    'lpips-heads': { type: 'string' }, 'lpips-alex': { type: 'string' }, 'lpips-alex-heads': { type: 'string' }, limit: { type: 'string' }, out: { type: 'string' },
  },
  async run(values, io) {
    const dataDir = requiredString(values, 'data');
    const weights = existingFile(requiredString(values, 'inception'), 'Inception weights');
    const ckpt = requiredString(values, 'ckpt');
    if (!!values['lpips-vgg'] !== !!values['lpips-heads']) throw new UsageError('--lpips-vgg and --lpips-heads go together');
    if (!!values['lpips-alex'] !== !!values['lpips-alex-heads']) throw new UsageError('--lpips-alex and --lpips-alex-heads go together');
    const limit = values.limit === undefined ? Infinity : positiveInt(values, 'limit', 1);
    const batchSize = positiveInt(values, 'batch-size', 4);
    const folder = await ImageFolderDataset.open(dataDir).catch((e: Error) => {
      throw new UsageError(e.message);
    });
    const dataset = limit < folder.length ? { length: limit, get: (i: number) => folder.get(i), pathOf: (i: number) => folder.pathOf(i) } : folder;
    const { model, config, backend } = await loadTokenizer(values, io);
    let net: InceptionV3 | null = null;
    let lpips: LPIPS | null = null;
    let alex: LpipsAlex | null = null;
    const stop = watchStopSignals(io, 'finishing this batch, then stopping (no report)');
    try {
      const loaded = await loadInception(weights, { backend });
      io.err(loaded.info.note);
      net = loaded.net;
      const source: LpipsWeightsSource = values['lpips-vgg']
        ? { vgg16: values['lpips-vgg'] as string, heads: values['lpips-heads'] as string }
        : { checkpoint: ckpt };
      lpips = await loadLpips(source).catch((e: Error) => {
        if (values['lpips-vgg']) throw e;
        io.err(`LPIPS-VGG left out: the checkpoint has no usable LPIPS weights (${e.message.split('\n')[0]})`);
        return null;
      });
      if (values['lpips-alex']) alex = await loadLpipsAlex(values['lpips-alex'] as string, values['lpips-alex-heads'] as string, backend);
      let alexSum = 0;
      const real = new FeatureStats(2048), fake = new FeatureStats(2048);
      let lpipsSum = 0, lpipsCount = 0;
      const features = async (x: Tensor, into: FeatureStats) => {
        const prepared = net!.prepare(x, 'pytorch');
        const out = net!.forward(prepared, ['pool2048']);
        into.add(Float32Array.from(await out.pool2048!.data()), x.shape[0]);
        dispose([prepared, out.pool2048!]);
      };
      const R = config.ddconfig.resolution;
      const report = await evaluateReconstruction(model, dataset, {
        batchSize, resolution: R, nEmbed: config.n_embed, transform: { resize: R, crop: 'center' },
        stop,
        onBatch: async (x, xrec) => {
          const rec = tidy(() => clamp(xrec, -1, 1));
          // Float images in [0, 1], not quantised (eval.md §2).
          const x01 = tidy(() => scale(x, 0.5, 0.5)), r01 = tidy(() => scale(rec, 0.5, 0.5));
          await features(x01, real);
          await features(r01, fake);
          if (lpips) {
            const d = await lpipsPerImage(lpips, x, rec);
            for (const v of d) lpipsSum += v;
            lpipsCount += d.length;
          }
          if (alex) for (const v of (await alex.forward(x, rec)).total) alexSum += v;
          dispose([rec, x01, r01]);
        },
      }, io);
      if (report.stopped) {
        io.err(`${stop.reason}: stopped after ${report.images} image(s); no report`);
        return stop.exitCode();
      }
      if (report.images < 2) throw new Error(`${dataDir}: ${report.images} image(s): rFID needs at least 2`);
      const rfid = frechetDistance(real.mean(), real.covariance(), fake.mean(), fake.covariance());
      const lpipsVgg = lpips ? lpipsSum / lpipsCount : null;
      const lpipsAlex = alex ? alexSum / report.images : null;
      const rows: [string, string][] = [
        ['images', String(report.images)], ['rFID', rfid.toFixed(4)], ['LPIPS_ALEX', lpipsAlex === null ? 'n/a' : lpipsAlex.toFixed(4)],
        ['LPIPS_VGG', lpipsVgg === null ? 'n/a' : lpipsVgg.toFixed(4)],
        ['PSNR', report.psnr.toFixed(4)], ['SSIM', report.ssim.toFixed(4)],
        ['codebook usage', `${(100 * report.codebookUsage).toFixed(2)}% (${report.codesUsed}/${config.n_embed})`],
      ];
      for (const [k, v] of rows) io.out(`${k.padEnd(16)}${v}`);
      if (typeof values.out === 'string') {
        const json = {
          protocol: "evaluation_image.py (rFID: pytorch-fid's network, float images, resize to 299 align_corners=False)",
          weights: loaded.info, images: report.images, rfid, lpips_vgg: lpipsVgg, lpips_alex: lpipsAlex, psnr: report.psnr, ssim: report.ssim,
          codebook_usage: report.codebookUsage, codes_used: report.codesUsed, n_embed: config.n_embed,
        };
        await writeFileAtomic(values.out, new TextEncoder().encode(`${JSON.stringify(json, null, 2)}\n`));
        io.out(`wrote ${values.out}`);
      }
      return EXIT_OK;
    } finally {
      stop.dispose();
      net?.dispose();
      alex?.dispose();
      lpips?.dispose();
      model.dispose();
      backend.destroy();
    }
  },
};
