// `ibq fid PATH1 PATH2 --inception W` (pytorch-fid's command line) and `ibq merge-stats`: FID
// between two image sets or statistics files, statistics written for later (--save-stats), and
// sharded runs (--shard i/n) whose partial statistics merge into the result of one run.

import {
  FeatureStats, type FidSource, type GaussianStats, INCEPTION_DIMS, type InceptionDims, type InceptionMode, TAP_OF_DIMS,
  closeSource, extractFeatures, frechetDistance, loadInception, loadPartialStats, openFidSource, saveGaussianStats,
  savePartialStats, sourceLength,
} from '@ibq/eval';
import type { Backend } from '@ibq/kernels';
import { type Command, EXIT_FAILURE, EXIT_OK, type OptionValues, UsageError } from '../command.js';
import type { Io } from '../io.js';
import { EvalPartial, checkEvalShards } from '../eval-partial.js';
import { parseShard, shardRange } from '../samples.js';
import { mergeSamplesParts, reportSamplesEval } from './eval-samples.js';
import { mergeTokenizerParts, reportTokenizerEval, tokenizerShardOwns } from './eval-tokenizer.js';
import { type StopController, watchStopSignals } from '../stop.js';
import { existingFile, positiveInt, requiredString } from '../options.js';
import { openBackend } from '../tokenizer.js';

type Shard = { index: number; count: number };

function parseDims(values: OptionValues): InceptionDims {
  const v = values.dims ?? '2048';
  const d = Number(v);
  if (!(INCEPTION_DIMS as readonly number[]).includes(d)) throw new UsageError(`--dims: expected one of ${INCEPTION_DIMS.join(', ')}, got '${String(v)}'`);
  return d as InceptionDims;
}

function parseMode(values: OptionValues): InceptionMode {
  const v = values.mode ?? 'pytorch';
  if (v !== 'pytorch' && v !== 'adm') throw new UsageError(`--mode: expected pytorch or adm, got '${String(v)}'`);
  return v;
}

/** Statistics of a source: read from a file, or computed with the network. */
async function statsOf(source: FidSource, ctx: { values: OptionValues; io: Io; shard: Shard; stop: StopController; backend: () => Promise<Backend>; net: () => Promise<import('@ibq/eval').InceptionV3> }): Promise<{ partial: FeatureStats | null; gaussian: GaussianStats | null }> {
  if (source.kind === 'stats') return { partial: null, gaussian: source.stats };
  if (source.kind === 'partial') return { partial: source.stats, gaussian: null };
  const dims = parseDims(ctx.values);
  const mode = parseMode(ctx.values);
  const batchSize = positiveInt(ctx.values, 'batch-size', 50);
  const net = await ctx.net();
  const range = shardRange(sourceLength(source), ctx.shard.index, ctx.shard.count);
  const t0 = Date.now();
  const r = await extractFeatures(source, {
    net, mode, taps: [TAP_OF_DIMS[dims]], batchSize, backend: await ctx.backend(), range,
    boundary: async () => {
      await ctx.stop.boundary();
      return ctx.stop.requested;
    },
    onProgress: (done, total) => {
      const rate = done / Math.max((Date.now() - t0) / 1000, 1e-9);
      ctx.io.status(`${source.path}: ${done}/${total} images  ${rate.toFixed(1)}/s`);
    },
    onSkip: (path, reason) => ctx.io.err(`skipped ${path}: ${reason}`),
  });
  ctx.io.status('');
  if (r.skipped) ctx.io.err(`${source.path}: ${r.skipped} corrupt image(s) skipped, ${r.images} used`);
  const stats = r.stats.get(TAP_OF_DIMS[dims])!;
  return { partial: stats, gaussian: null };
}

function gaussianOf(path: string, s: { partial: FeatureStats | null; gaussian: GaussianStats | null }): GaussianStats {
  if (s.gaussian) return s.gaussian;
  const p = s.partial!;
  if (p.count < 2) throw new Error(`${path}: ${p.count} image(s): a covariance needs at least 2`);
  return { mu: p.mean(), sigma: p.covariance() };
}

export const fidCommand: Command = {
  name: 'fid',
  summary: 'Frechet Inception Distance between two image sets or statistics files (pytorch-fid)',
  usage: `usage: ibq fid PATH1 PATH2 --inception W [options]
       ibq fid --save-stats PATH OUT.npz --inception W [options]

A PATH is a folder of images (bmp jpg jpeg pgm png ppm tif tiff webp, sorted, not recursive),
a .npz of uint8 NHWC images ('arr_0', the ADM sample format), a statistics .npz ('mu',
'sigma', as pytorch-fid writes them) or partial statistics from --shard ('count', 'sum',
'cross'). Prints 'FID: <value>'. Corrupt images are reported, counted and skipped.
  --inception W       pytorch-fid's pt_inception-2015-12-05-6726825d.pth (or a file in its layout)
  --dims N            feature tap: 64, 192, 768 or 2048 (default 2048)
  --mode M            pytorch (default: float images, bilinear resize, 2x-1; pytorch-fid's numbers)
                      or adm (uint8, TF1 resize, (x-128)/128; the ADM evaluator's input pipeline)
  --batch-size N      images per batch (default 50)
  --device D          auto (default), webgpu, cpu or reference
  --save-stats        compute PATH's statistics and write them to OUT.npz (mu, sigma)
  --shard i/n|auto    with --save-stats: only the i-th of n contiguous slices of PATH (auto: as
                      'ibq sample'); OUT gets partial statistics that 'ibq merge-stats' adds
                      up to the one-run result. Ctrl-C / SIGTERM stop at a batch boundary
                      (exit 130 / 143) without writing anything`,
  options: {
    inception: { type: 'string' }, dims: { type: 'string' }, mode: { type: 'string' }, 'batch-size': { type: 'string' },
    device: { type: 'string' }, 'save-stats': { type: 'boolean' }, shard: { type: 'string' },
  },
  positionals: { names: ['PATH1', 'PATH2'], min: 2, max: 2 },
  async run(values, io, [path1, path2]) {
    const sharded = values.shard !== undefined;
    const shard = parseShard(values.shard as string | undefined, io.env);
    if (sharded && !values['save-stats']) throw new UsageError('--shard needs --save-stats (each shard writes partial statistics)');
    parseDims(values);
    parseMode(values);
    positiveInt(values, 'batch-size', 50);
    const sources: FidSource[] = [];
    let backend: Backend | null = null;
    let net: import('@ibq/eval').InceptionV3 | null = null;
    const stop = watchStopSignals(io, 'finishing this batch, then stopping (nothing is written)');
    const stopped = () => {
      io.err(`${stop.reason}: stopped before the statistics were complete; nothing was written`);
      return stop.exitCode();
    };
    try {
      sources.push(openFidSource(path1));
      if (!values['save-stats']) sources.push(openFidSource(path2));
      const needsNet = sources.some((s) => s.kind === 'folder' || s.kind === 'images');
      if (needsNet) existingFile(requiredString(values, 'inception'), 'Inception weights');
      const ctx = {
        values, io, shard, stop,
        backend: async () => (backend ??= await openBackend(values.device as string | undefined)),
        net: async () => {
          if (!net) {
            const be = await ctx.backend();
            const loaded = await loadInception(values.inception as string, { backend: be });
            io.err(loaded.info.note);
            net = loaded.net;
          }
          return net;
        },
      };
      if (values['save-stats']) {
        if (sources[0].kind === 'stats') throw new UsageError(`${path1} holds statistics already`);
        const s = await statsOf(sources[0], ctx);
        if (stop.requested) return stopped();
        if (sharded) {
          savePartialStats(path2, s.partial!);
          io.out(`wrote ${path2}: partial statistics of shard ${shard.index}/${shard.count} (${s.partial!.count} images, ${s.partial!.dim}-d)`);
        } else {
          const g = gaussianOf(path1, s);
          saveGaussianStats(path2, g);
          io.out(`wrote ${path2}: mu and sigma (${g.mu.length}-d)`);
        }
        return EXIT_OK;
      }
      const sa = await statsOf(sources[0], ctx);
      if (stop.requested) return stopped();
      const sb = await statsOf(sources[1], ctx);
      if (stop.requested) return stopped();
      const a = gaussianOf(path1, sa), b = gaussianOf(path2, sb);
      if (a.mu.length !== b.mu.length) {
        io.err(`ibq fid: ${path1} has ${a.mu.length}-d statistics but ${path2} has ${b.mu.length}-d (--dims must match)`);
        return EXIT_FAILURE;
      }
      io.out(`FID: ${frechetDistance(a.mu, a.sigma, b.mu, b.sigma)}`);
      return EXIT_OK;
    } finally {
      stop.dispose();
      for (const s of sources) closeSource(s);
      (net as import('@ibq/eval').InceptionV3 | null)?.dispose();
      (backend as Backend | null)?.destroy();
    }
  },
};

/** `ibq merge-stats` on the partial files of a sharded eval-tokenizer / eval-samples run: their one-run report. */
async function mergeEvalParts(parts: EvalPartial[], values: OptionValues, io: Io): Promise<number> {
  const kind = parts[0].meta.kind;
  const sorted = checkEvalShards(parts, kind === 'eval-tokenizer' ? tokenizerShardOwns : undefined);
  if (kind === 'eval-tokenizer') {
    await reportTokenizerEval(mergeTokenizerParts(sorted), io, values.out, sorted.map((p) => p.path).join(', '));
    return EXIT_OK;
  }
  if (kind !== 'eval-samples') throw new Error(`${parts[0].path}: partial statistics of an unknown command '${String(kind)}'`);
  const inputs = mergeSamplesParts(sorted);
  const backend = await openBackend(values.device as string | undefined);
  try {
    await reportSamplesEval(inputs, backend, io, values.out, sorted.map((p) => p.path).join(', '));
  } finally {
    backend.destroy();
  }
  return EXIT_OK;
}

export const mergeStatsCommand: Command = {
  name: 'merge-stats',
  summary: 'add up partial statistics of sharded fid --save-stats, eval-tokenizer and eval-samples runs',
  usage: `usage: ibq merge-stats PART.npz... --out OUT.npz
       ibq merge-stats PART.npz... [--out REPORT.json] [--device D]

Partial statistics of 'ibq fid --save-stats --shard': adds the counts, sums and cross products
(exact: the result is that of one run over all shards) and writes OUT.npz with them and with
'mu' and 'sigma' (a pytorch-fid statistics file, usable as a PATH of 'ibq fid').
Partial files of 'ibq eval-tokenizer --shard' or 'ibq eval-samples --shard' (recognised by
their 'meta'): checks that they are every shard of one run, once, with the same settings,
and prints the report one run prints (--out: its JSON).
  --out FILE          the merged statistics (fid), or the report as JSON (eval-*)
  --device D          eval-samples: where precision / recall run (auto, webgpu, cpu, reference)`,
  options: { out: { type: 'string' }, device: { type: 'string' } },
  positionals: { names: ['PART.npz...'], min: 1 },
  async run(values, io, parts) {
    for (const p of parts) existingFile(p, 'partial statistics');
    const evalParts = parts.map((p) => EvalPartial.open(p));
    try {
      if (evalParts.some((e) => e)) {
        const plain = parts.filter((_, i) => !evalParts[i]);
        if (plain.length) throw new Error(`${plain[0]}: not a partial file of 'ibq eval-tokenizer' or 'ibq eval-samples', unlike ${parts[evalParts.findIndex((e) => e)]}`);
        return await mergeEvalParts(evalParts as EvalPartial[], values, io);
      }
    } finally {
      for (const e of evalParts) e?.close();
    }
    const out = requiredString(values, 'out');
    let merged: FeatureStats | null = null;
    for (const p of parts) {
      const s = await loadPartialStats(p);
      if (merged && merged.dim !== s.dim) throw new Error(`${p}: ${s.dim}-d statistics, but the files before it are ${merged.dim}-d`);
      merged = merged ? merged.merge(s) : s;
    }
    savePartialStats(out, merged!);
    io.out(`wrote ${out}: ${merged!.count} images from ${parts.length} part(s), ${merged!.dim}-d`);
    return EXIT_OK;
  },
};
