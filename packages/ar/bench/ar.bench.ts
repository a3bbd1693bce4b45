// AR sampling benchmarks (`npm run bench -w @ibq/ar -- [--backend cpu,webgpu] [--only throughput,latency]
// [--classes N] [--steps N]`), one JSON line per figure:
// - throughput: the reference's sample_IBQ work on a GPT of 6 layers, 8 heads, width 512, 1024
//   codes, 64 tokens: N classes (default 10) of 8 images each, CFG 2.0 (16 rows); beside it the
//   same procedure in PyTorch (bench/torch_peer.py, Debian's python3-torch) on the same number of
//   threads, and the ratio (ours tokens/s / PyTorch tokens/s: above 1 means we are faster);
// - latency: preset B (random weights) at batch 1 and 8 with CFG (2 and 16 rows): ms per token
//   (one decode step of the whole batch) and tokens/s over --steps steps after the prefill, with
//   the backend's resident bytes;
// - stream_chunk (--only stream_chunk): one XXL feed-forward matrix (w1, [5120, 1920]) applied to
//   2 rows with its weight streamed from host memory in chunks of 1..64 MiB, beside the same
//   matrix resident (the ratio is streamed / resident time); picks DEFAULT_CHUNK_BYTES;
// - big_token (--only big_token [--preset XL,XXL] [--weights auto|resident|streamed,...] [--steps N]):
//   a random-weight preset with the placement checkFits picks (or the ones given) at batch 1 with CFG (2 rows): seconds per token over N decode steps, the
//   wasm memory (grown size and live bytes) and the host bytes (weights, process RSS).

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { type Backend, type BackendName, createBackend } from '@ibq/kernels';
import { Generator, dispose, matmul, setBackend, tensor } from '@ibq/tensor';
import { GPT, HostMatrix, type WeightPlacement, fillNormal, parameterCount, presets, sampleTokens, streamedMatmulT } from '../src/index.js';

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

/** A random-weight preset (default XXL) producing one token: build, prefill, draw (`--only one_token`, not in the default set: 8 GiB). */
async function oneToken(be: Backend): Promise<void> {
  const name = get('preset') ?? 'XXL';
  const c = presets[name].config;
  const t0 = performance.now();
  const m = new GPT(c, { generator: new Generator(3) }).eval();
  const built = performance.now();
  const p = presets[name].sampling;
  const toks = await sampleTokens(m, { classes: Int32Array.from([207 % c.class_num]), indices: Int32Array.from([0]) },
    { cfgScale: p.cfg_scale, temperature: p.temperature, topK: p.top_k, topP: p.top_p, seed: 0, tokens: 1 });
  const done = performance.now();
  emit({ figure: 'one_token', backend: be.name, preset: name, parameters: parameterCount(c), token: toks[0], build_ms: Math.round(built - t0), first_token_ms: Math.round(done - built), resident_bytes: be.memory().bytes, load: load() });
  m.dispose();
}

/** Seconds per call of fn (after one warm-up), over at least `reps` calls. */
async function timeIt(fn: () => Promise<void>, reps: number): Promise<number> {
  await fn();
  const t = performance.now();
  for (let i = 0; i < reps; i++) await fn();
  return (performance.now() - t) / 1000 / reps;
}

async function streamChunk(be: Backend): Promise<void> {
  const rows = 5120, cols = 1920, M = 2, reps = Math.max(steps, 4);
  const w = new HostMatrix(rows, cols);
  fillNormal(w.host, 1, 0.02);
  const x = tensor(Float32Array.from({ length: M * cols }, (_, i) => Math.sin(i)), [M, cols]);
  const resident = w.upload(0, rows);
  const base = await timeIt(async () => {
    const y = matmul(x, resident, false, true);
    await y.data();
    y.dispose();
  }, reps);
  emit({ figure: 'stream_chunk', backend: be.name, matrix: [rows, cols], rows: M, weights: 'resident', ms: +(base * 1000).toFixed(2), load: load() });
  resident.dispose();
  for (const mib of [1, 4, 16, 64]) {
    const s = await timeIt(async () => {
      const y = streamedMatmulT(x, w, mib * 2 ** 20);
      await y.data();
      y.dispose();
    }, reps);
    emit({ figure: 'stream_chunk', backend: be.name, matrix: [rows, cols], rows: M, chunk_mib: mib, ms: +(s * 1000).toFixed(2), ratio_to_resident: +(s / base).toFixed(2), load: load() });
  }
  x.dispose();
}

async function bigToken(be: Backend): Promise<void> {
  const placements = (get('weights') ?? 'auto').split(',') as ('auto' | WeightPlacement)[];
  for (const name of (get('preset') ?? 'XL,XXL').split(',')) for (const placement of placements) {
    const c = presets[name].config;
    const t0 = performance.now();
    const m = new GPT(c, { generator: new Generator(3), weights: placement === 'auto' ? undefined : placement }).eval();
    const built = performance.now();
    const rows = 2;
    const labels = tensor(Int32Array.from([207 % c.class_num, c.class_num]), [rows], { dtype: 'i32' });
    const { state, logits } = m.prefill(labels);
    await logits.data();
    logits.dispose();
    const n = Math.max(1, Math.min(steps, 4));
    const t = performance.now();
    for (let s = 0; s < n; s++) {
      const toks = tensor(new Int32Array(rows).fill((s * 31) % c.vocab_size), [rows], { dtype: 'i32' });
      const l = m.decodeStep(state, toks);
      await l.data();
      dispose([l, toks]);
    }
    const sec = (performance.now() - t) / 1000 / n;
    const info = (be.describe?.() ?? {}) as { memoryBytes?: number };
    emit({
      figure: 'big_token', backend: be.name, preset: name, parameters: parameterCount(c), weights: m.weights, chunk_mib: m.chunkBytes / 2 ** 20, batch: 1, rows, steps: n,
      s_per_token: +sec.toFixed(2), build_s: +((built - t0) / 1000).toFixed(1), wasm_memory_bytes: info.memoryBytes ?? null, wasm_live_bytes: be.memory().bytes,
      host_weight_bytes: [...m.hostWeights.values()].reduce((a, w) => a + w.rows * w.cols * 4, 0), rss_bytes: process.memoryUsage().rss, load: load(),
    });
    GPT.release(state);
    labels.dispose();
    m.dispose();
  }
}

const ours = new Map<string, number>();
for (const name of backends) {
  const be = await open(name);
  if (!be) continue;
  try {
    if (wanted('throughput')) ours.set(be.name, await throughput(be));
    if (wanted('latency')) await latency(be);
    if (only?.includes('one_token')) await oneToken(be);
    if (only?.includes('stream_chunk')) await streamChunk(be);
    if (only?.includes('big_token')) await bigToken(be);
  } finally {
    be.destroy();
  }
}
if (wanted('throughput') && ours.size) peer(ours);
process.exit(0);
