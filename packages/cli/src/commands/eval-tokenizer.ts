// `ibq eval-tokenizer --config C --ckpt W --data DIR --inception W`: the reference's
// evaluation_image.py protocol (spec eval.md §1-4): images in sorted order, SmallestMaxSize +
// centre crop, EMA weights, reconstructions clamped to [-1, 1]; rFID with pytorch-fid's network
// on float images (x+1)/2 (both sets on the fly, streamed statistics), LPIPS-VGG and LPIPS-alex
// (when their weights are given), PSNR, SSIM and codebook usage, as a table and a JSON report.

import { resolve } from 'node:path';
import { ImageFolderDataset, writeFileAtomic } from '@ibq/data';
import {
  CodebookUsageCounter, FeatureStats, type InceptionV3, type InceptionWeightsInfo, type LPIPS, type LpipsAlex, type LpipsWeightsSource,
  ReconstructionMetricsAccumulator, frechetDistance, loadInception, loadLpips, loadLpipsAlex, lpipsPerImage,
} from '@ibq/eval';
import { type Tensor, clamp, dispose, scale, tidy } from '@ibq/tensor';
import { type Command, EXIT_OK, UsageError } from '../command.js';
import { type EvalPartial, type EvalPartialMeta, statsMembers, writeEvalPartial } from '../eval-partial.js';
import { evaluateReconstruction } from '../evaluate.js';
import type { Io } from '../io.js';
import { parseShard, shardRange } from '../samples.js';
import { watchStopSignals } from '../stop.js';
import { existingFile, positiveInt, requiredString } from '../options.js';

/** What the report is made of: sums that shards add up (see mergeTokenizerParts). */
export interface TokenizerEvalSums {
  real: FeatureStats;
  fake: FeatureStats;
  recon: ReconstructionMetricsAccumulator;
  usage: CodebookUsageCounter;
  /** LPIPS-VGG sum and image count, and the LPIPS-alex sum; null when left out. */
  lpipsVgg: { sum: number; count: number } | null;
  lpipsAlex: { sum: number } | null;
  weights: InceptionWeightsInfo;
}

/**
 * Shard k of n owns whole batches ([floor(k B / n), floor((k+1) B / n)) of the B batches), so
 * that every batch mean (PSNR, SSIM) is the one of an unsharded run. Returns images [start, end).
 */
export function tokenizerShardRange(total: number, batchSize: number, k: number, n: number): [number, number] {
  const [a, b] = shardRange(Math.ceil(total / batchSize), k, n);
  return [Math.min(a * batchSize, total), Math.min(b * batchSize, total)];
}

/** Prints the table (and writes --out's JSON) from the sums of one run or of merged shards. */
export async function reportTokenizerEval(s: TokenizerEvalSums, io: Io, out: unknown, what: string): Promise<void> {
  const r = s.recon.result();
  const u = s.usage.result();
  if (r.images < 2) throw new Error(`${what}: ${r.images} image(s): rFID needs at least 2`);
  const rfid = frechetDistance(s.real.mean(), s.real.covariance(), s.fake.mean(), s.fake.covariance());
  const lpipsVgg = s.lpipsVgg ? s.lpipsVgg.sum / s.lpipsVgg.count : null;
  const lpipsAlex = s.lpipsAlex ? s.lpipsAlex.sum / r.images : null;
  const rows: [string, string][] = [
    ['images', String(r.images)], ['rFID', rfid.toFixed(4)], ['LPIPS_ALEX', lpipsAlex === null ? 'n/a' : lpipsAlex.toFixed(4)],
    ['LPIPS_VGG', lpipsVgg === null ? 'n/a' : lpipsVgg.toFixed(4)],
    ['PSNR', r.psnr.toFixed(4)], ['SSIM', r.ssim.toFixed(4)],
    ['codebook usage', `${(100 * u.fraction).toFixed(2)}% (${u.used}/${s.usage.nEmbed})`],
  ];
  for (const [k, v] of rows) io.out(`${k.padEnd(16)}${v}`);
  if (typeof out === 'string') {
    const json = {
      protocol: "evaluation_image.py (rFID: pytorch-fid's network, float images, resize to 299 align_corners=False)",
      weights: s.weights, images: r.images, rfid, lpips_vgg: lpipsVgg, lpips_alex: lpipsAlex, psnr: r.psnr, ssim: r.ssim,
      codebook_usage: u.fraction, codes_used: u.used, n_embed: s.usage.nEmbed,
    };
    await writeFileAtomic(out, new TextEncoder().encode(`${JSON.stringify(json, null, 2)}\n`));
    io.out(`wrote ${out}`);
  }
}

/** Adds up the partial files of a sharded run (checked by checkEvalShards, in shard order). */
export function mergeTokenizerParts(parts: EvalPartial[]): TokenizerEvalSums {
  const extra = parts[0].meta.extra as { weights: InceptionWeightsInfo; n_embed: number };
  const settings = parts[0].meta.settings as { lpips_vgg: boolean; lpips_alex: boolean };
  const s: TokenizerEvalSums = {
    real: new FeatureStats(2048), fake: new FeatureStats(2048), recon: new ReconstructionMetricsAccumulator(),
    usage: new CodebookUsageCounter(extra.n_embed), lpipsVgg: settings.lpips_vgg ? { sum: 0, count: 0 } : null,
    lpipsAlex: settings.lpips_alex ? { sum: 0 } : null, weights: extra.weights,
  };
  for (const p of parts) {
    s.real.merge(p.stats('real'));
    s.fake.merge(p.stats('fake'));
    s.recon.mergeSums(p.array('recon'));
    const lp = p.array('lpips');
    if (s.lpipsVgg) {
      s.lpipsVgg.sum += lp[0];
      s.lpipsVgg.count += lp[1];
    }
    if (s.lpipsAlex) s.lpipsAlex.sum += lp[2];
    s.usage.mergeCounts(p.array('codebook_counts'), Number(p.array('codebook_tokens')[0]));
  }
  return s;
}

/** Which items of the run a tokenizer shard owns, from its metadata (for checkEvalShards). */
export const tokenizerShardOwns = (m: EvalPartialMeta): [number, number] =>
  tokenizerShardRange(m.total, (m.settings as { batch_size: number }).batch_size, m.shard, m.shards);
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
  --shard i/n|auto    only the i-th of n slices of the images (whole batches; auto: as 'ibq
                      sample'); --out is then required and gets this shard's partial statistics
                      (.npz), which 'ibq merge-stats' adds up to the one-run report
${TOKENIZER_USAGE}`,
  options: {
    ...TOKENIZER_OPTIONS, data: { type: 'string' }, inception: { type: 'string' }, 'lpips-vgg': { type: 'string' },
    'lpips-heads': { type: 'string' }, 'lpips-alex': { type: 'string' }, 'lpips-alex-heads': { type: 'string' }, limit: { type: 'string' }, out: { type: 'string' },
    shard: { type: 'string' },
  },
  async run(values, io) {
    const dataDir = requiredString(values, 'data');
    const weights = existingFile(requiredString(values, 'inception'), 'Inception weights');
    const ckpt = requiredString(values, 'ckpt');
    if (!!values['lpips-vgg'] !== !!values['lpips-heads']) throw new UsageError('--lpips-vgg and --lpips-heads go together');
    if (!!values['lpips-alex'] !== !!values['lpips-alex-heads']) throw new UsageError('--lpips-alex and --lpips-alex-heads go together');
    const limit = values.limit === undefined ? Infinity : positiveInt(values, 'limit', 1);
    const batchSize = positiveInt(values, 'batch-size', 4);
    const sharded = values.shard !== undefined;
    const shard = parseShard(values.shard as string | undefined, io.env);
    if (sharded && typeof values.out !== 'string') throw new UsageError('--shard needs --out (the file for this shard\'s partial statistics)');
    const folder = await ImageFolderDataset.open(dataDir).catch((e: Error) => {
      throw new UsageError(e.message);
    });
    const total = Math.min(limit, folder.length);
    const [start, end] = tokenizerShardRange(total, batchSize, shard.index, shard.count);
    const dataset = start === 0 && end === folder.length ? folder : { length: end - start, get: (i: number) => folder.get(start + i), pathOf: (i: number) => folder.pathOf(start + i) };
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
      const sums: TokenizerEvalSums = {
        real, fake, recon: report.accumulator, usage: report.usage, lpipsVgg: lpips ? { sum: lpipsSum, count: lpipsCount } : null,
        lpipsAlex: alex ? { sum: alexSum } : null, weights: loaded.info,
      };
      if (!sharded) {
        await reportTokenizerEval(sums, io, values.out, dataDir);
        return EXIT_OK;
      }
      const meta: EvalPartialMeta = {
        format: 'ibq-eval-partial', version: 1, kind: 'eval-tokenizer', shard: shard.index, shards: shard.count, start, end, total,
        settings: {
          config: resolve(values.config as string), ckpt: resolve(ckpt), data: resolve(dataDir), batch_size: batchSize,
          inception_sha256: loaded.info.sha256, lpips_vgg: !!lpips, lpips_alex: !!alex,
        },
        extra: { weights: loaded.info, n_embed: config.n_embed },
      };
      writeEvalPartial(values.out as string, meta, {
        ...statsMembers('real', real), ...statsMembers('fake', fake), recon: report.accumulator.sums(),
        lpips: Float64Array.of(lpipsSum, lpipsCount, alexSum), codebook_counts: report.usage.counts,
        codebook_tokens: Float64Array.of(report.usage.total),
      });
      io.out(`wrote ${values.out as string}: partial statistics of shard ${shard.index}/${shard.count} (images ${start}..${end - 1} of ${total})`);
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
