// `ibq eval-samples sample.npz --ref REF.npz --inception W`: the ADM evaluation suite's report
// (Inception Score, FID, sFID, precision, recall) of a generator's samples against a reference
// batch in the ADM format (VIRTUAL_imagenet256_labeled.npz: images in arr_0, and mu, sigma,
// mu_s, sigma_s when precomputed). Images stream from the .npz a batch at a time through the
// network in the ADM input mode (uint8, TF1 resize, (x-128)/128); what precision / recall need
// (the 2048-d pool rows of both sets) is kept, as the suite keeps it.

import { resolve } from 'node:path';
import { NpzFile, writeFileAtomic } from '@ibq/data';
import {
  FeatureStats, type FidSource, type GaussianStats, type InceptionTap, type InceptionWeightsInfo, closeSource, extractFeatures,
  frechetDistance, inceptionScore, loadInception, openFidSource, precisionRecall, sourceLength,
} from '@ibq/eval';
import type { Backend } from '@ibq/kernels';
import { type Command, EXIT_OK, UsageError } from '../command.js';
import { type EvalPartial, type EvalPartialMeta, concatRows, statsMembers, writeEvalPartial } from '../eval-partial.js';
import type { Io } from '../io.js';
import { ShardError, parseShard, shardRange } from '../samples.js';
import { watchStopSignals } from '../stop.js';
import { existingFile, positiveInt, requiredString } from '../options.js';
import { openBackend } from '../tokenizer.js';

/** Growing list of float rows, joined at the end. */
class Rows {
  readonly parts: Float32Array[] = [];
  count = 0;
  add(rows: Float32Array, n: number): void {
    this.parts.push(rows);
    this.count += n;
  }
  all(): Float32Array {
    return concatRows(this.parts);
  }
}

function gaussian(s: FeatureStats, what: string): GaussianStats {
  if (s.count < 2) throw new Error(`${what}: ${s.count} image(s): a covariance needs at least 2`);
  return { mu: s.mean(), sigma: s.covariance() };
}

const PRECOMPUTED = ['mu', 'sigma', 'mu_s', 'sigma_s'] as const;

/** What the report is computed from: every sample row's pool features and logits (file order), the reference's pool rows. */
export interface SamplesEvalInputs {
  samples: number;
  sampleLogits: Float32Array;
  samplePoolRows: Float32Array;
  samplePool: FeatureStats;
  sampleSpatial: FeatureStats;
  referenceImages: number;
  refPoolRows: Float32Array;
  refPool: GaussianStats;
  refSpatial: GaussianStats;
  refHasStats: boolean;
  weights: InceptionWeightsInfo;
}

/** Prints the ADM suite's report (and writes --out's JSON), from one run or merged shards. */
export async function reportSamplesEval(r: SamplesEvalInputs, backend: Backend | undefined, io: Io, out: unknown, what: string): Promise<void> {
  const n = r.samples;
  const is = inceptionScore(r.sampleLogits, n);
  io.status('Frechet distances...');
  const samplePool = gaussian(r.samplePool, what);
  const sampleSpatial = gaussian(r.sampleSpatial, what);
  const fid = frechetDistance(samplePool.mu, samplePool.sigma, r.refPool.mu, r.refPool.sigma);
  const sfid = frechetDistance(sampleSpatial.mu, sampleSpatial.sigma, r.refSpatial.mu, r.refSpatial.sigma);
  io.status('precision / recall...');
  const pr = await precisionRecall(r.refPoolRows, r.referenceImages, r.samplePoolRows, n, 2048, backend);
  io.status('');
  io.out(`Inception Score: ${is.mean}`);
  io.out(`FID: ${fid}`);
  io.out(`sFID: ${sfid}`);
  io.out(`Precision: ${pr.precision}`);
  io.out(`Recall: ${pr.recall}`);
  if (typeof out === 'string') {
    const report = {
      protocol: 'ADM evaluation suite (guided-diffusion evaluations/evaluator.py) with pytorch-fid\'s port of the TF Inception weights, ADM input mode',
      weights: r.weights, samples: n, reference_images: r.referenceImages, reference_statistics: r.refHasStats ? 'precomputed (mu, sigma, mu_s, sigma_s)' : 'from the reference images',
      inception_score: is.mean, inception_score_std: is.std, inception_score_splits: is.splits,
      fid, sfid, precision: pr.precision, recall: pr.recall,
    };
    await writeFileAtomic(out, new TextEncoder().encode(`${JSON.stringify(report, null, 2)}\n`));
    io.out(`wrote ${out}`);
  }
}

/**
 * Joins the partial files of a sharded run (checked by checkEvalShards, in shard order): rows
 * in the sample file's order (shards are contiguous), statistics added up, the reference's
 * precomputed statistics from shard 0.
 */
export function mergeSamplesParts(parts: EvalPartial[]): SamplesEvalInputs {
  const first = parts[0];
  const settings = first.meta.settings as { reference_images: number; reference_statistics: boolean };
  const samplePool = new FeatureStats(2048), sampleSpatial = new FeatureStats(first.stats('sample.spatial').dim);
  const pool: Float32Array[] = [], logits: Float32Array[] = [], refRows: Float32Array[] = [];
  const refPool = new FeatureStats(2048), refSpatial = new FeatureStats(sampleSpatial.dim);
  for (const p of parts) {
    const e = p.meta.extra as { ref_start: number; ref_end: number };
    const [a, b] = shardRange(settings.reference_images, p.meta.shard, p.meta.shards);
    if (e.ref_start !== a || e.ref_end !== b) throw new ShardError(`${p.path}: holds reference images [${e.ref_start}, ${e.ref_end}), shard ${p.meta.shard}/${p.meta.shards} owns [${a}, ${b})`);
    samplePool.merge(p.stats('sample.pool'));
    sampleSpatial.merge(p.stats('sample.spatial'));
    const rows = p.f32('sample.pool_rows');
    if (rows.length !== (p.meta.end - p.meta.start) * 2048) throw new ShardError(`${p.path}: ${rows.length / 2048} pool rows for samples [${p.meta.start}, ${p.meta.end})`);
    pool.push(rows);
    logits.push(p.f32('sample.logits_rows'));
    refRows.push(p.f32('ref.pool_rows'));
    if (!settings.reference_statistics) {
      refPool.merge(p.stats('ref.pool'));
      refSpatial.merge(p.stats('ref.spatial'));
    }
  }
  const pre = (k: (typeof PRECOMPUTED)[number]) => Float64Array.from(first.array(`ref.${k}`));
  return {
    samples: first.meta.total, sampleLogits: concatRows(logits), samplePoolRows: concatRows(pool), samplePool, sampleSpatial,
    referenceImages: settings.reference_images, refPoolRows: concatRows(refRows),
    refPool: settings.reference_statistics ? { mu: pre('mu'), sigma: pre('sigma') } : gaussian(refPool, 'reference batch'),
    refSpatial: settings.reference_statistics ? { mu: pre('mu_s'), sigma: pre('sigma_s') } : gaussian(refSpatial, 'reference batch'),
    refHasStats: settings.reference_statistics, weights: (first.meta.extra as { weights: InceptionWeightsInfo }).weights,
  };
}

export const evalSamplesCommand: Command = {
  name: 'eval-samples',
  summary: "the ADM suite's report of a sample .npz against a reference batch (IS, FID, sFID, precision, recall)",
  usage: `usage: ibq eval-samples SAMPLE.npz --ref REF.npz --inception W [options]

SAMPLE.npz holds uint8 NHWC images in 'arr_0' (the output of 'ibq sample'); REF.npz is a
reference batch in the ADM format: images in 'arr_0' (used for precision / recall) and, when
present, the precomputed 'mu', 'sigma' (pool, 2048-d) and 'mu_s', 'sigma_s' (spatial, mixed_6
first 7 channels), which the suite uses instead of the reference images' own statistics.
Images go through the network in the ADM mode (TF1 resize, (x-128)/128). Rows are used in
file order: shuffle a class-sorted file first (IS takes consecutive 5,000-row splits).
  --ref FILE          the reference batch
  --inception W       pytorch-fid's pt_inception-2015-12-05-6726825d.pth (the ported TF graph)
  --batch-size N      images per batch (default 64, the suite's)
  --device D          auto (default), webgpu, cpu or reference
  --out FILE          also write the report as JSON
  --shard i/n|auto    only the i-th of n contiguous slices of the samples and of the reference
                      images (auto: as 'ibq sample'); --out is then required and gets this
                      shard's partial statistics (.npz: statistics, pool and logit rows), which
                      'ibq merge-stats' joins into the one-run report`,
  options: {
    ref: { type: 'string' }, inception: { type: 'string' }, 'batch-size': { type: 'string' }, device: { type: 'string' },
    out: { type: 'string' }, shard: { type: 'string' },
  },
  positionals: { names: ['SAMPLE.npz'], min: 1, max: 1 },
  async run(values, io, [samplePath]) {
    const refPath = existingFile(requiredString(values, 'ref'), 'reference batch');
    existingFile(samplePath, 'sample file');
    const weights = existingFile(requiredString(values, 'inception'), 'Inception weights');
    const batchSize = positiveInt(values, 'batch-size', 64);
    const sharded = values.shard !== undefined;
    const shard = parseShard(values.shard as string | undefined, io.env);
    if (sharded && typeof values.out !== 'string') throw new UsageError('--shard needs --out (the file for this shard\'s partial statistics)');
    const sources: FidSource[] = [];
    let backend: Backend | null = null;
    let net: import('@ibq/eval').InceptionV3 | null = null;
    const stop = watchStopSignals(io, 'finishing this batch, then stopping (no report)');
    try {
      const sample = openFidSource(samplePath);
      sources.push(sample);
      if (sample.kind !== 'images') throw new UsageError(`${samplePath}: expected uint8 images in 'arr_0'`);
      const ref = openFidSource(refPath, { images: true });
      sources.push(ref);
      if (ref.kind !== 'images') throw new UsageError(`${refPath}: expected a reference batch with images in 'arr_0'`);
      // Precomputed reference statistics, as the suite reads them.
      const refFile = NpzFile.open(refPath);
      const pre: Partial<Record<'mu' | 'sigma' | 'mu_s' | 'sigma_s', Float64Array>> = {};
      try {
        for (const k of PRECOMPUTED) {
          if (refFile.keys.includes(k)) pre[k] = Float64Array.from(refFile.get(k).data as ArrayLike<number>);
        }
      } finally {
        refFile.close();
      }
      backend = await openBackend(values.device as string | undefined);
      const loaded = await loadInception(weights, { backend });
      io.err(loaded.info.note);
      net = loaded.net;

      const run = async (source: FidSource, taps: InceptionTap[], what: string, range: [number, number]) => {
        const pool = new Rows(), logits = new Rows();
        const t0 = Date.now();
        const r = await extractFeatures(source, {
          net: net!, mode: 'adm', taps, batchSize, backend: backend!, range,
          boundary: async () => {
            await stop.boundary();
            return stop.requested;
          },
          onRows: (tap, rows, n) => {
            if (tap === 'pool2048') pool.add(rows, n);
            if (tap === 'logitsUnbiased') logits.add(rows, n);
          },
          onProgress: (done, total) => io.status(`${what}: ${done}/${total} images  ${(done / Math.max((Date.now() - t0) / 1000, 1e-9)).toFixed(1)}/s`),
        });
        io.status('');
        return { r, pool, logits };
      };
      const refHasStats = !!(pre.mu && pre.sigma && pre.mu_s && pre.sigma_s);
      const refRange = shardRange(sourceLength(ref), shard.index, shard.count);
      const sampleRange = shardRange(sourceLength(sample), shard.index, shard.count);
      const stopped = () => {
        io.err(`${stop.reason}: stopped before every image was seen; no report`);
        return stop.exitCode();
      };
      const refRun = await run(ref, refHasStats ? ['pool2048'] : ['pool2048', 'spatial'], 'reference batch', refRange);
      if (stop.requested) return stopped();
      const sampleRun = await run(sample, ['pool2048', 'spatial', 'logitsUnbiased'], 'samples', sampleRange);
      if (stop.requested) return stopped();
      const sampleStats = (tap: InceptionTap) => sampleRun.r.stats.get(tap)!;
      if (!sharded) {
        await reportSamplesEval({
          samples: sampleRun.pool.count, sampleLogits: sampleRun.logits.all(), samplePoolRows: sampleRun.pool.all(),
          samplePool: sampleStats('pool2048'), sampleSpatial: sampleStats('spatial'), referenceImages: refRun.pool.count,
          refPoolRows: refRun.pool.all(),
          refPool: refHasStats ? { mu: pre.mu!, sigma: pre.sigma! } : gaussian(refRun.r.stats.get('pool2048')!, refPath),
          refSpatial: refHasStats ? { mu: pre.mu_s!, sigma: pre.sigma_s! } : gaussian(refRun.r.stats.get('spatial')!, refPath),
          refHasStats, weights: loaded.info,
        }, backend, io, values.out, samplePath);
        return EXIT_OK;
      }
      const meta: EvalPartialMeta = {
        format: 'ibq-eval-partial', version: 1, kind: 'eval-samples', shard: shard.index, shards: shard.count,
        start: sampleRange[0], end: sampleRange[1], total: sourceLength(sample),
        settings: {
          samples: resolve(samplePath), reference: resolve(refPath), reference_images: sourceLength(ref),
          reference_statistics: refHasStats, inception_sha256: loaded.info.sha256,
        },
        extra: { ref_start: refRange[0], ref_end: refRange[1], weights: loaded.info },
      };
      const rows = (r: Rows, d: number) => ({ data: r.all(), shape: [r.count, d] });
      writeEvalPartial(values.out as string, meta, {
        ...statsMembers('sample.pool', sampleStats('pool2048')), ...statsMembers('sample.spatial', sampleStats('spatial')),
        'sample.pool_rows': rows(sampleRun.pool, 2048), 'sample.logits_rows': rows(sampleRun.logits, 1008),
        'ref.pool_rows': rows(refRun.pool, 2048),
        ...(refHasStats ? {} : { ...statsMembers('ref.pool', refRun.r.stats.get('pool2048')!), ...statsMembers('ref.spatial', refRun.r.stats.get('spatial')!) }),
        // The precomputed reference statistics travel once, in shard 0.
        ...(refHasStats && shard.index === 0 ? Object.fromEntries(PRECOMPUTED.map((k) => [`ref.${k}`, pre[k]!])) : {}),
      });
      io.out(`wrote ${values.out as string}: partial statistics of shard ${shard.index}/${shard.count} (samples ${sampleRange[0]}..${sampleRange[1] - 1}, reference images ${refRange[0]}..${refRange[1] - 1})`);
      return EXIT_OK;
    } finally {
      stop.dispose();
      for (const s of sources) closeSource(s);
      (net as import('@ibq/eval').InceptionV3 | null)?.dispose();
      (backend as Backend | null)?.destroy();
    }
  },
};
