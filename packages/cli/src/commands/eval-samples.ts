// `ibq eval-samples sample.npz --ref REF.npz --inception W`: the ADM evaluation suite's report
// (Inception Score, FID, sFID, precision, recall) of a generator's samples against a reference
// batch in the ADM format (VIRTUAL_imagenet256_labeled.npz: images in arr_0, and mu, sigma,
// mu_s, sigma_s when precomputed). Images stream from the .npz a batch at a time through the
// network in the ADM input mode (uint8, TF1 resize, (x-128)/128); what precision / recall need
// (the 2048-d pool rows of both sets) is kept, as the suite keeps it.

import { NpzFile, writeFileAtomic } from '@ibq/data';
import {
  type FeatureStats, type FidSource, type GaussianStats, type InceptionTap, closeSource, extractFeatures, frechetDistance,
  inceptionScore, loadInception, openFidSource, precisionRecall,
} from '@ibq/eval';
import type { Backend } from '@ibq/kernels';
import { type Command, EXIT_OK, UsageError } from '../command.js';
import { watchStopSignals } from '../stop.js';
import { existingFile, positiveInt, requiredString } from '../options.js';
import { openBackend } from '../tokenizer.js';

/** Growing list of float rows, joined at the end. */
class Rows {
  private readonly parts: Float32Array[] = [];
  count = 0;
  add(rows: Float32Array, n: number): void {
    this.parts.push(rows);
    this.count += n;
  }
  all(): Float32Array {
    const out = new Float32Array(this.parts.reduce((a, p) => a + p.length, 0));
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

function gaussian(s: FeatureStats, what: string): GaussianStats {
  if (s.count < 2) throw new Error(`${what}: ${s.count} image(s): a covariance needs at least 2`);
  return { mu: s.mean(), sigma: s.covariance() };
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
  --out FILE          also write the report as JSON`,
  options: {
    ref: { type: 'string' }, inception: { type: 'string' }, 'batch-size': { type: 'string' }, device: { type: 'string' },
    out: { type: 'string' },
  },
  positionals: { names: ['SAMPLE.npz'], min: 1, max: 1 },
  async run(values, io, [samplePath]) {
    const refPath = existingFile(requiredString(values, 'ref'), 'reference batch');
    existingFile(samplePath, 'sample file');
    const weights = existingFile(requiredString(values, 'inception'), 'Inception weights');
    const batchSize = positiveInt(values, 'batch-size', 64);
    const sources: FidSource[] = [];
    let backend: Backend | null = null;
    let net: import('@ibq/eval').InceptionV3 | null = null;
    const stop = watchStopSignals(io, 'finishing this batch, then stopping (no report)');
    try {
      const sample = openFidSource(samplePath);
      sources.push(sample);
      if (sample.kind !== 'images') throw new UsageError(`${samplePath}: expected uint8 images in 'arr_0'`);
      const ref = openFidSource(refPath);
      sources.push(ref);
      if (ref.kind !== 'images') throw new UsageError(`${refPath}: expected a reference batch with images in 'arr_0'`);
      // Precomputed reference statistics, as the suite reads them.
      const refFile = NpzFile.open(refPath);
      const pre: Partial<Record<'mu' | 'sigma' | 'mu_s' | 'sigma_s', Float64Array>> = {};
      try {
        for (const k of ['mu', 'sigma', 'mu_s', 'sigma_s'] as const) {
          if (refFile.keys.includes(k)) pre[k] = Float64Array.from(refFile.get(k).data as ArrayLike<number>);
        }
      } finally {
        refFile.close();
      }
      backend = await openBackend(values.device as string | undefined);
      const loaded = await loadInception(weights, { backend });
      io.err(loaded.info.note);
      net = loaded.net;

      const run = async (source: FidSource, taps: InceptionTap[], what: string) => {
        const pool = new Rows(), logits = new Rows();
        const t0 = Date.now();
        const r = await extractFeatures(source, {
          net: net!, mode: 'adm', taps, batchSize, backend: backend!,
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
      const refHasStats = pre.mu && pre.sigma && pre.mu_s && pre.sigma_s;
      const stopped = () => {
        io.err(`${stop.reason}: stopped before every image was seen; no report`);
        return stop.exitCode();
      };
      const refRun = await run(ref, refHasStats ? ['pool2048'] : ['pool2048', 'spatial'], 'reference batch');
      if (stop.requested) return stopped();
      const refPool = refHasStats ? { mu: pre.mu!, sigma: pre.sigma! } : gaussian(refRun.r.stats.get('pool2048')!, refPath);
      const refSpatial = refHasStats ? { mu: pre.mu_s!, sigma: pre.sigma_s! } : gaussian(refRun.r.stats.get('spatial')!, refPath);
      const sampleRun = await run(sample, ['pool2048', 'spatial', 'logitsUnbiased'], 'samples');
      if (stop.requested) return stopped();
      const n = sampleRun.pool.count;
      const is = inceptionScore(sampleRun.logits.all(), n);
      io.status('Frechet distances...');
      const samplePool = gaussian(sampleRun.r.stats.get('pool2048')!, samplePath);
      const sampleSpatial = gaussian(sampleRun.r.stats.get('spatial')!, samplePath);
      const fid = frechetDistance(samplePool.mu, samplePool.sigma, refPool.mu, refPool.sigma);
      const sfid = frechetDistance(sampleSpatial.mu, sampleSpatial.sigma, refSpatial.mu, refSpatial.sigma);
      io.status('precision / recall...');
      const pr = await precisionRecall(refRun.pool.all(), refRun.pool.count, sampleRun.pool.all(), n, 2048, backend);
      io.status('');
      io.out(`Inception Score: ${is.mean}`);
      io.out(`FID: ${fid}`);
      io.out(`sFID: ${sfid}`);
      io.out(`Precision: ${pr.precision}`);
      io.out(`Recall: ${pr.recall}`);
      if (typeof values.out === 'string') {
        const report = {
          protocol: 'ADM evaluation suite (guided-diffusion evaluations/evaluator.py) with pytorch-fid\'s port of the TF Inception weights, ADM input mode',
          weights: loaded.info, samples: n, reference_images: refRun.pool.count, reference_statistics: refHasStats ? 'precomputed (mu, sigma, mu_s, sigma_s)' : 'from the reference images',
          inception_score: is.mean, inception_score_std: is.std, inception_score_splits: is.splits,
          fid, sfid, precision: pr.precision, recall: pr.recall,
        };
        await writeFileAtomic(values.out, new TextEncoder().encode(`${JSON.stringify(report, null, 2)}\n`));
        io.out(`wrote ${values.out}`);
      }
      return EXIT_OK;
    } finally {
      stop.dispose();
      for (const s of sources) closeSource(s);
      (net as import('@ibq/eval').InceptionV3 | null)?.dispose();
      (backend as Backend | null)?.destroy();
    }
  },
};
