// `ibq sample`: class-conditional images from an AR model (the reference's sample.py), into a
// folder: tokens.npy, labels.npy, samples.npz (streamed, rows in a seeded shuffled order),
// grid.png and shard.json; `--shard i/n|auto` splits the run across processes or machines.

import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { NpzWriter, floatToImage, tileImages, writeNpy, writePng, writeFileAtomic, type PixelImage } from '@ibq/data';
import { ArConfigError, GPT, type SamplerOptions, gridSide, loadArConfig, sampleTokens } from '@ibq/ar';
import { IBQTokenizer, configFromInitArgs, latentSize, readTokenizerWeights, readTransformerWeights } from '@ibq/ibq';
import { dispose, nn, noGrad, tensor } from '@ibq/tensor';
import { type Command, type OptionValues, UsageError } from '../command.js';
import { type ShardMeta, SHARD_FILE, SHARD_FORMAT, itemCount, parseShard, shardRange, shardRowOrder } from '../samples.js';
import { watchStopSignals } from '../stop.js';
import { existingFile, positiveInt, requiredString } from '../options.js';
import { openBackend } from '../tokenizer.js';

function numberOpt(values: OptionValues, name: string, dflt: number, ok: (v: number) => boolean, what: string): number {
  const v = values[name];
  if (v === undefined) return dflt;
  const n = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !Number.isFinite(n) || !ok(n)) throw new UsageError(`--${name}: expected ${what}, got '${String(v)}'`);
  return n;
}

/** `all`, or a comma list of class ids and ranges (`1,5,10-19`), in the order given. */
export function parseClasses(v: string, classNum: number): number[] {
  if (v === 'all') return Array.from({ length: classNum }, (_, i) => i);
  const out: number[] = [];
  for (const part of v.split(',')) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) throw new UsageError(`--classes: expected 'all' or a list like 1,5,10-19, got '${part}'`);
    const a = Number(m[1]), b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw new UsageError(`--classes: empty range '${part}'`);
    for (let c = a; c <= b; c++) {
      if (c >= classNum) throw new UsageError(`--classes: class ${c} is outside the model's ${classNum} classes [0, ${classNum})`);
      out.push(c);
    }
  }
  return out;
}

/** The tokenizer's weights: --tokenizer, else the AR .ckpt itself, else the safetensors file or its sibling without `.transformer`. */
function tokenizerSource(values: OptionValues, ckpt: string): string {
  if (typeof values.tokenizer === 'string') return existingFile(values.tokenizer, 'tokenizer weights');
  const ext = extname(ckpt);
  const stem = basename(ckpt, ext);
  if (ext === '.safetensors' && stem.endsWith('.transformer')) {
    const sibling = join(dirname(ckpt), `${stem.slice(0, -'.transformer'.length)}${ext}`);
    if (existsSync(sibling)) return sibling;
  }
  return ckpt;
}

export const sampleCommand: Command = {
  name: 'sample',
  summary: 'class-conditional images from an AR model (tokens.npy, labels.npy, samples.npz, grid.png)',
  usage: `usage: ibq sample --config AR.yaml --ckpt AR.ckpt|W.safetensors --classes LIST|all --per-class N --out DIR [options]

Generates N images for each class with the reference's sampler (CFG on the logits with the
conditional and null-class rows in one batch, temperature after CFG, top-k then top-p, a
multinomial draw) and decodes them with the tokenizer stored in the AR checkpoint.
  --config AR.yaml      the AR config in the reference's schema (imagenet_conditional_llama_*.yaml)
  --ckpt W              an official AR .ckpt (transformer.* and first_stage_model.*), or safetensors
                        (e.g. OUT.transformer.safetensors from ibq convert; the tokenizer is then
                        OUT.safetensors beside it, or --tokenizer)
  --tokenizer W         tokenizer weights, when they are not in --ckpt
  --classes LIST|all    class ids in order, e.g. 1,5,10-19
  --per-class N         samples per class
  --batch B             images per batch (default 8; with CFG the model runs 2B rows)
  --cfg S               guidance scale (> 1 turns CFG on)
  --cfg-interval N      CFG for the first N tokens only (LlamaGen's cfg_interval; default: all)
  --cfg-schedule S      constant (default, the reference) or linear (1 -> S over the tokens)
  --temperature T       applied after CFG
  --top-k K             0: off; 1: greedy
  --top-p P             1: off
                        (defaults of the four: the published settings of the official B/L/XL/XXL
                        shapes; otherwise cfg 1, temperature 1, top-k 0, top-p 1)
  --seed S              sample i of class c draws from the stream (S, c, i): the images do not
                        depend on --batch or on --shard (default 0)
  --shard i/n|auto      this process's share of the classes x samples (auto: Slurm array or
                        Kubernetes indexed Job, auto/n there); merge with ibq merge-samples
  --grid-classes N      classes shown in grid.png, one row each (default 16)
  --grid-columns N      samples per row of grid.png (default 8)
  --device D            auto (default), webgpu, cpu or reference
  --weights W           auto (default: the cpu backend streams XL/XXL weights from host memory,
                        which its 4 GiB wasm memory cannot hold), resident or streamed
  --out DIR             written: tokens.npy (int32 [N, h, w], classes in order then sample index),
                        labels.npy (int64 [N]), samples.npz (arr_0 uint8 [N, H, W, 3], arr_1 labels,
                        rows in a seeded shuffled order), grid.png, shard.json`,
  options: {
    config: { type: 'string' }, ckpt: { type: 'string' }, tokenizer: { type: 'string' }, classes: { type: 'string' },
    'per-class': { type: 'string' }, batch: { type: 'string' }, cfg: { type: 'string' }, 'cfg-interval': { type: 'string' },
    'cfg-schedule': { type: 'string' }, temperature: { type: 'string' }, 'top-k': { type: 'string' }, 'top-p': { type: 'string' },
    seed: { type: 'string' }, shard: { type: 'string' }, 'grid-classes': { type: 'string' }, 'grid-columns': { type: 'string' },
    device: { type: 'string' }, weights: { type: 'string' }, out: { type: 'string' },
  },
  async run(values, io) {
    const configPath = existingFile(requiredString(values, 'config'), 'config');
    const ckptPath = existingFile(requiredString(values, 'ckpt'), 'checkpoint');
    const outDir = requiredString(values, 'out');
    let ar;
    try {
      ar = loadArConfig(readFileSync(configPath, 'utf8'), configPath);
    } catch (e) {
      if (e instanceof ArConfigError) throw new UsageError(e.message);
      throw e;
    }
    if (!ar.firstStage) throw new UsageError(`${configPath}: no 'model.init_args.first_stage_config.params' (the tokenizer)`);
    const tokConfig = configFromInitArgs(ar.firstStage, configPath);
    const gcfg = ar.gpt;
    if (latentSize(tokConfig) !== gridSide(gcfg) || tokConfig.n_embed !== gcfg.vocab_size) {
      throw new UsageError(`${configPath}: the transformer's ${gridSide(gcfg)}x${gridSide(gcfg)} grids of ${gcfg.vocab_size} codes do not match the tokenizer's ${latentSize(tokConfig)}x${latentSize(tokConfig)} grids of ${tokConfig.n_embed}`);
    }
    const pub = ar.sampling ?? { cfg_scale: 1, temperature: 1, top_k: 0, top_p: 1 };
    const schedule = (values['cfg-schedule'] as string | undefined) ?? 'constant';
    if (schedule !== 'constant' && schedule !== 'linear') throw new UsageError(`--cfg-schedule: expected constant or linear, got '${schedule}'`);
    const so: SamplerOptions = {
      cfgScale: numberOpt(values, 'cfg', pub.cfg_scale, (v) => v >= 0, 'a number >= 0'),
      cfgInterval: numberOpt(values, 'cfg-interval', -1, (v) => Number.isInteger(v) && v >= -1, 'an integer >= 0'),
      cfgSchedule: schedule,
      temperature: numberOpt(values, 'temperature', pub.temperature, (v) => v > 0, 'a number > 0'),
      topK: numberOpt(values, 'top-k', pub.top_k, (v) => Number.isInteger(v) && v >= 0, 'an integer >= 0'),
      topP: numberOpt(values, 'top-p', pub.top_p, (v) => v > 0 && v <= 1, 'a number in (0, 1]'),
      seed: numberOpt(values, 'seed', 0, (v) => Number.isSafeInteger(v) && v >= 0, 'a non-negative integer'),
    };
    const classes = parseClasses(requiredString(values, 'classes'), gcfg.class_num);
    const perClass = positiveInt(values, 'per-class', 0);
    if (perClass === 0) throw new UsageError('--per-class is required');
    const batch = positiveInt(values, 'batch', 8);
    const gridClasses = positiveInt(values, 'grid-classes', 16), gridColumns = positiveInt(values, 'grid-columns', 8);
    const { index: shard, count: shards } = parseShard(values.shard as string | undefined, io.env);
    const plan = { classes, perClass };
    const total = itemCount(plan);
    const [start, end] = shardRange(total, shard, shards);
    const n = end - start;

    const placement = (values.weights as string | undefined) ?? 'auto';
    if (placement !== 'auto' && placement !== 'resident' && placement !== 'streamed') throw new UsageError(`--weights: expected auto, resident or streamed, got '${placement}'`);
    const gptWeights = await readTransformerWeights(ckptPath, { notice: (m) => io.err(m) });
    const tokWeights = await readTokenizerWeights(tokenizerSource(values, ckptPath), { notice: (m) => io.err(m) });
    const backend = await openBackend(values.device as string | undefined);
    const gpt = new GPT(gcfg, { init: 'none', weights: placement === 'auto' ? undefined : placement });
    const tok = nn.withoutRandomInit(() => new IBQTokenizer(tokConfig));
    const stop = watchStopSignals(io, 'finishing this batch, then stopping (nothing is written for an unfinished run)');
    try {
      try {
        gpt.loadWeights(gptWeights);
      } catch (e) {
        throw new Error(`checkpoint '${ckptPath}' does not fit config '${configPath}': ${(e as Error).message}`);
      }
      try {
        tok.loadStateDict(tokWeights);
      } catch (e) {
        throw new Error(`tokenizer weights do not fit the tokenizer of '${configPath}': ${(e as Error).message}`);
      }
      gpt.eval();
      tok.eval();
      mkdirSync(outDir, { recursive: true });
      const side = gridSide(gcfg), L = gcfg.block_size, R = tokConfig.ddconfig.resolution;
      const itemClass = (g: number) => classes[Math.floor(g / perClass)];
      const itemIndex = (g: number) => g % perClass;
      io.err(`sampling ${n} of ${total} images (shard ${shard}/${shards}) on ${backend.name}${gpt.weights === 'streamed' ? ' (weights streamed from host memory)' : ''}: cfg ${so.cfgScale}${so.cfgInterval! >= 0 ? ` for ${so.cfgInterval} tokens` : ''} (${so.cfgSchedule}), temperature ${so.temperature}, top-k ${so.topK}, top-p ${so.topP}, seed ${so.seed}`);

      // 1. Tokens, in generation order.
      const tokens = new Int32Array(n * L);
      const t0 = Date.now();
      for (let s = 0; s < n; s += batch) {
        await stop.boundary();
        if (stop.requested) break;
        const e = Math.min(n, s + batch);
        const items = Array.from({ length: e - s }, (_, i) => start + s + i);
        const toks = await sampleTokens(gpt, { classes: Int32Array.from(items, itemClass), indices: Int32Array.from(items, itemIndex) }, so);
        tokens.set(toks, s * L);
        const rate = e / Math.max((Date.now() - t0) / 1000, 1e-9);
        io.status(`sampling ${e}/${n}  ${rate.toFixed(2)} images/s  ETA ${((n - e) / rate).toFixed(0)}s`);
      }
      io.status('');
      if (stop.requested) {
        io.err(`${stop.reason}: nothing written to ${outDir}`);
        return stop.exitCode();
      }
      const labels = BigInt64Array.from({ length: n }, (_, i) => BigInt(itemClass(start + i)));
      await writeNpy(join(outDir, 'tokens.npy'), tokens, [n, side, side], 'int32');
      await writeNpy(join(outDir, 'labels.npy'), labels, [n], 'int64');

      // 2. Images, decoded in the file's (seeded, shuffled) row order and streamed into samples.npz.
      const order = shardRowOrder(so.seed, start, n);
      const gridItems = new Map<number, PixelImage>();
      const gridRows = classes.filter((c, i) => classes.indexOf(c) === i).slice(0, gridClasses);
      const inGrid = (g: number) => gridRows.includes(itemClass(g)) && itemIndex(g) < gridColumns;
      const npz = new NpzWriter(join(outDir, 'samples.npz'));
      try {
        npz.begin('arr_0', 'uint8', [n, R, R, 3]);
        const t1 = Date.now();
        for (let s = 0; s < n; s += batch) {
          await stop.boundary();
          if (stop.requested) break;
          const e = Math.min(n, s + batch);
          const ids = new Int32Array((e - s) * L);
          for (let r = s; r < e; r++) ids.set(tokens.subarray(order[r] * L, (order[r] + 1) * L), (r - s) * L);
          const t = tensor(ids, [e - s, side, side], { dtype: 'i32' });
          const img = noGrad(() => tok.decodeIndices(t));
          const px = await img.data();
          dispose([t, img]);
          for (let r = s; r < e; r++) {
            const im = floatToImage(px, R, R, 'chw', (r - s) * 3 * R * R);
            npz.write(im.data);
            if (inGrid(start + order[r])) gridItems.set(start + order[r], im);
          }
          const rate = e / Math.max((Date.now() - t1) / 1000, 1e-9);
          io.status(`decoding ${e}/${n}  ${rate.toFixed(2)} images/s  ETA ${((n - e) / rate).toFixed(0)}s`);
        }
        io.status('');
        if (stop.requested) {
          npz.abort();
          io.err(`${stop.reason}: tokens.npy and labels.npy are written; samples.npz is not`);
          return stop.exitCode();
        }
        npz.add('arr_1', BigInt64Array.from(order, (i) => labels[i]), [n], 'int64');
        npz.close();
      } catch (e) {
        npz.abort();
        throw e;
      }

      // 3. The grid (one row per class) and the shard's metadata.
      const cells: PixelImage[] = [];
      const blank: PixelImage = { data: new Uint8Array(R * R * 3), height: R, width: R, channels: 3 };
      for (const c of gridRows) {
        const row = [...gridItems.keys()].filter((g) => itemClass(g) === c).sort((a, b) => a - b).map((g) => gridItems.get(g)!);
        if (row.length === 0) continue;
        const cols = Math.min(gridColumns, perClass);
        for (let j = 0; j < cols; j++) cells.push(row[j] ?? blank);
      }
      if (cells.length) await writePng(join(outDir, 'grid.png'), tileImages(cells, { columns: Math.min(gridColumns, perClass) }));
      const meta: ShardMeta = {
        format: SHARD_FORMAT, version: 1, shard, shards, start, end, total,
        settings: {
          config: JSON.stringify(gcfg), checkpoint: basename(ckptPath), classes, per_class: perClass,
          cfg: so.cfgScale, cfg_interval: so.cfgInterval, cfg_schedule: so.cfgSchedule, temperature: so.temperature,
          top_k: so.topK, top_p: so.topP, seed: so.seed, image: [R, R, 3],
        },
      };
      await writeFileAtomic(join(outDir, SHARD_FILE), new TextEncoder().encode(`${JSON.stringify(meta, null, 1)}\n`));
      const secs = (Date.now() - t0) / 1000;
      io.out(`wrote ${n} samples to ${outDir} (tokens.npy, labels.npy, samples.npz, grid.png, shard.json) in ${secs.toFixed(1)}s`);
      return stop.exitCode();
    } finally {
      stop.dispose();
      gpt.dispose();
      tok.dispose();
      backend.destroy();
    }
  },
};
