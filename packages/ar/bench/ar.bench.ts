// AR sampling benchmarks (`npm run bench -w @ibq/ar -- [--backend cpu,webgpu] [--only throughput,latency]
// [--classes N] [--steps N]`), one JSON line per figure:
// - throughput: the reference's sample_IBQ work on a GPT of 6 layers, 8 heads, width 512, 1024
//   codes, 64 tokens: N classes (default 10) of 8 images each, CFG 2.0 (16 rows); beside it the
//   same procedure in PyTorch (bench/torch_peer.py, Debian's python3-torch) on the same number of
//   threads, and the ratio (ours tokens/s / PyTorch tokens/s: above 1 means we are faster);
// - latency: preset B (random weights) at batch 1 and 8 with CFG (2 and 16 rows): ms per token
//   (one decode step of the whole batch) and tokens/s over --steps steps after the prefill, with
//   the backend's resident bytes.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { type Backend, type BackendName, createBackend } from '@ibq/kernels';
import { Generator, dispose, setBackend, tensor } from '@ibq/tensor';
import { GPT, parameterCount, presets, sampleTokens } from '../src/index.js';

const args = process.argv.slice(2);
const get = (k: string) => (args.includes(`--${k}`) ? args[args.indexOf(`--${k}`) + 1] : undefined);
const backends = (get('backend') ?? 'cpu,webgpu').split(',') as BackendName[];
const only = get('only')?.split(',');
const wanted = (what: string) => !only || only.includes(what);
const classes = Number(get('classes') ?? 10);
const steps = Number(get('steps') ?? 16);
const emit = (o: Record<string, unknown>) => console.log(JSON.stringify(o));
const load = () => (process.platform === 'linux' ? Number(spawnSync('cat', ['/proc/loadavg']).stdout.toString().split(' ')[0]) : null);

function findPeer(): string | null {
  for (let d = resolve(process.cwd()); ; d = dirname(d)) {
    for (const p of [join(d, 'packages', 'ar', 'bench', 'torch_peer.py'), join(d, 'bench', 'torch_peer.py')]) if (existsSync(p)) return p;
    if (dirname(d) === d) return null;
  }
}

async function open(name: BackendName): Promise<Backend | null> {
  try {
    const b = await createBackend(name);
    setBackend(b);
    return b;
  } catch (e) {
    emit({ figure: 'backend', backend: name, skipped: (e as Error).message });
    return null;
  }
}

const cfg = presets.bench.config;
const BATCH = 8, CFG = 2;

async function throughput(be: Backend): Promise<number> {
  const m = new GPT(cfg, { generator: new Generator(1) }).eval();
  const o = { cfgScale: CFG, temperature: 1, topK: 0, topP: 1, seed: 0 };
  const batchOf = (c: number) => ({ classes: new Int32Array(BATCH).fill(c), indices: Int32Array.from({ length: BATCH }, (_, i) => i) });
  await sampleTokens(m, batchOf(0), o); // warm-up (pipelines, pools)
  const t = performance.now();
  for (let c = 0; c < classes; c++) await sampleTokens(m, batchOf(c % cfg.class_num), o);
  const s = (performance.now() - t) / 1000;
  m.dispose();
  const tps = (classes * BATCH * cfg.block_size) / s;
  emit({ figure: 'sample_throughput', backend: be.name, config: '6 layers, 8 heads, width 512, vocab 1024, 64 tokens', classes, batch: BATCH, cfg: CFG, seconds: +s.toFixed(2), tokens_per_s: +tps.toFixed(1), load: load() });
  return tps;
}

function peer(ours: Map<string, number>): void {
  const script = findPeer();
  const threads = Number(process.env.IBQ_THREADS ?? cpus().length);
  const spec = { ...cfg, classes, batch: BATCH, cfg: CFG, threads };
  if (!script) return emit({ figure: 'sample_throughput', backend: 'pytorch', skipped: 'bench/torch_peer.py not found' });
  const r = spawnSync('/usr/bin/python3', [script, JSON.stringify(spec)], { encoding: 'utf8' });
  if (r.status !== 0) return emit({ figure: 'sample_throughput', backend: 'pytorch', skipped: (r.stderr || r.error?.message || 'failed').trim().split('\n').pop() });
  const p = JSON.parse(r.stdout.trim().split('\n').pop()!) as { tokens_per_s: number; seconds: number; torch: string };
  emit({ figure: 'sample_throughput', backend: `pytorch ${p.torch}`, threads, classes, batch: BATCH, cfg: CFG, seconds: +p.seconds.toFixed(2), tokens_per_s: +p.tokens_per_s.toFixed(1), load: load() });
  for (const [name, tps] of ours) emit({ figure: 'sample_throughput_ratio', backend: name, peer: 'pytorch', ratio: +(tps / p.tokens_per_s).toFixed(2) });
}

async function latency(be: Backend): Promise<void> {
  const c = presets.B.config;
  const m = new GPT(c, { generator: new Generator(2) }).eval();
  for (const batch of [1, 8]) {
    const rows = 2 * batch;
    const labels = tensor(Int32Array.from({ length: rows }, (_, i) => (i < batch ? 1 : c.class_num)), [rows], { dtype: 'i32' });
    const { state, logits } = m.prefill(labels);
    await logits.data();
    logits.dispose();
    const t = performance.now();
    for (let s = 0; s < steps; s++) {
      const toks = tensor(new Int32Array(rows).fill(s % c.vocab_size), [rows], { dtype: 'i32' });
      const l = m.decodeStep(state, toks);
      await l.data(); // the sampler reads every step's logits
      dispose([l, toks]);
    }
    const ms = (performance.now() - t) / steps;
    const mem = be.memory();
    emit({
      figure: 'latency_B', backend: be.name, batch, rows, steps, ms_per_token: +ms.toFixed(1), tokens_per_s: +((1000 * batch) / ms).toFixed(2),
      resident_bytes: mem.bytes, weights_bytes: parameterCount(c) * 4, rss_bytes: process.memoryUsage().rss, load: load(),
    });
    GPT.release(state);
    labels.dispose();
  }
  m.dispose();
}

const ours = new Map<string, number>();
for (const name of backends) {
  const be = await open(name);
  if (!be) continue;
  try {
    if (wanted('throughput')) ours.set(be.name, await throughput(be));
    if (wanted('latency')) await latency(be);
  } finally {
    be.destroy();
  }
}
if (wanted('throughput') && ours.size) peer(ours);
process.exit(0);
