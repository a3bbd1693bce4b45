// AR training benchmark (`npm run bench -w @ibq/ar`, after the sampling one; alone:
// `node scripts/run-ts.mjs packages/ar/bench/train.bench.ts [--backend cpu,webgpu] [--steps N]`, or
// `npm run bench -w @ibq/ar -- --only train`),
// one JSON line per figure: training tokens/s of the GPT of 6 layers, 8 heads, width 512, vocab
// 1024, 64 tokens at batch 16 (one ArTrainer step: forward, chunked cross-entropy, backward,
// clipping, AdamW), beside the same step in PyTorch (bench/torch_train_peer.py, Debian's
// python3-torch) on the same number of threads, and the ratio (ours / PyTorch: above 1 means we
// are faster). The issue measured PyTorch at about 908 tokens/s on this machine's 2 cores.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { type Backend, type BackendName, createBackend } from '@ibq/kernels';
import { setBackend } from '@ibq/tensor';
import { ArTrainer, presets, type TokenMicroBatch } from '../src/index.js';

const args = process.argv.slice(2);
const get = (k: string) => (args.includes(`--${k}`) ? args[args.indexOf(`--${k}`) + 1] : undefined);
const backends = (get('backend') ?? 'cpu,webgpu').split(',') as BackendName[];
const steps = Number(get('steps') ?? 10);
// `--only` is shared with ar.bench.ts (see run.mjs): this file's one figure is 'train'.
const only = get('only')?.split(',');
if (only && !only.includes('train')) process.exit(0);
const emit = (o: Record<string, unknown>) => console.log(JSON.stringify(o));
const load = () => (process.platform === 'linux' ? Number(spawnSync('cat', ['/proc/loadavg']).stdout.toString().split(' ')[0]) : null);
const cfg = presets.bench.config;
const BATCH = 16;
const CONFIG = '6 layers, 8 heads, width 512, vocab 1024, 64 tokens';

function findPeer(): string | null {
  for (let d = resolve(process.cwd()); ; d = dirname(d)) {
    for (const p of [join(d, 'packages', 'ar', 'bench', 'torch_train_peer.py'), join(d, 'bench', 'torch_train_peer.py')]) if (existsSync(p)) return p;
    if (dirname(d) === d) return null;
  }
}

function batch(): TokenMicroBatch {
  const L = cfg.block_size;
  return {
    tokens: Int32Array.from({ length: BATCH * L }, (_, i) => (i * 7919) % cfg.vocab_size),
    labels: Int32Array.from({ length: BATCH }, (_, i) => i % cfg.class_num),
    size: BATCH,
  };
}

async function ours(be: Backend): Promise<number> {
  setBackend(be);
  const recipe = { learning_rate: 3e-4, weight_decay: 0.05, wp: 0, wp0: 0.005, wpe: 1, twde: 0, gradient_clip_val: 1 };
  const t = new ArTrainer({ config: cfg, recipe, backend: be, stepsPerEpoch: 1000, totalSteps: 1000, seed: 0 });
  const b = batch();
  await t.trainStep([b]); // warm-up (pipelines, pools)
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) await t.trainStep([b]);
  const sec = (performance.now() - t0) / 1000;
  const mem = be.memory();
  t.dispose();
  const tps = (steps * BATCH * cfg.block_size) / sec;
  emit({ figure: 'train_throughput', backend: be.name, config: CONFIG, batch: BATCH, steps, seconds: +sec.toFixed(2), tokens_per_s: +tps.toFixed(1), resident_bytes: mem.bytes, load: load() });
  return tps;
}

function peer(results: Map<string, number>): void {
  const script = findPeer();
  const threads = Number(process.env.IBQ_THREADS ?? cpus().length);
  if (!script) return emit({ figure: 'train_throughput', backend: 'pytorch', skipped: 'bench/torch_train_peer.py not found' });
  const spec = { ...cfg, batch: BATCH, steps, threads };
  const r = spawnSync('/usr/bin/python3', [script, JSON.stringify(spec)], { encoding: 'utf8' });
  if (r.status !== 0) return emit({ figure: 'train_throughput', backend: 'pytorch', skipped: (r.stderr || r.error?.message || 'failed').trim().split('\n').pop() });
  const p = JSON.parse(r.stdout.trim().split('\n').pop()!) as { tokens_per_s: number; seconds: number; torch: string };
  emit({ figure: 'train_throughput', backend: `pytorch ${p.torch}`, config: CONFIG, threads, batch: BATCH, steps, seconds: +p.seconds.toFixed(2), tokens_per_s: +p.tokens_per_s.toFixed(1), load: load() });
  for (const [name, tps] of results) emit({ figure: 'train_throughput_ratio', backend: name, peer: 'pytorch', ratio: +(tps / p.tokens_per_s).toFixed(2) });
}

const results = new Map<string, number>();
for (const name of backends) {
  let be: Backend;
  try {
    be = await createBackend(name);
  } catch (e) {
    emit({ figure: 'backend', backend: name, skipped: (e as Error).message });
    continue;
  }
  try {
    results.set(be.name, await ours(be));
  } finally {
    be.destroy();
  }
}
if (results.size) peer(results);
process.exit(0);
