// Tokenizer benchmarks (`npm run bench -w @ibq/ibq -- [--backend cpu,webgpu] [--runs N] [--quick]
// [--only encode_decode,quantizer,train_s] [--profile]`):
// encode+decode of one 256x256 image with the official 16384 architecture; the 262144-code
// quantizer on 4x256 tokens, forward and backward, with peak memory; training steps/s for
// config S. Beside each, the same work in PyTorch (bench/torch_peer.py) when Debian's
// python3-torch is installed, and the ratio (PyTorch ms / our ms: above 1 means we are faster).

import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { type Backend, type BackendName, createBackend, observeKernels, runOp, supportsF16 } from '@ibq/kernels';
import { dispose, nn, noGrad, setBackend, tensor } from '@ibq/tensor';
import { IBQTokenizer, IBQTrainer, type Precision, parseConfig } from '../src/index.js';

const args = process.argv.slice(2);
const get = (k: string) => (args.includes(`--${k}`) ? args[args.indexOf(`--${k}`) + 1] : undefined);
const runs = Math.max(5, Number(get('runs') ?? 5));
const backends = (get('backend') ?? 'cpu,webgpu').split(',') as BackendName[];
const quick = args.includes('--quick');
const only = get('only')?.split(',');
const wanted = (what: string) => !only || only.includes(what);
/** The peer script in the source tree (found from the working directory: bundling moves this file). */
function findPeer(): string {
  for (let d = resolve(process.cwd()); ; d = dirname(d)) {
    const p = join(d, 'packages', 'ibq', 'bench', 'torch_peer.py');
    if (existsSync(p)) return p;
    if (existsSync(join(d, 'bench', 'torch_peer.py'))) return join(d, 'bench', 'torch_peer.py');
    if (dirname(d) === d) throw new Error('bench/torch_peer.py not found: run from the repository');
  }
}
const PEER = findPeer();

const emit = (o: Record<string, unknown>) => console.log(JSON.stringify(o));

function officialYaml(nEmbed: number, ch = 128, mult = '[1, 1, 2, 2, 4]', blocks = 4, res = 256, attn = 16, z = 256): string {
  return `model:
  init_args:
    ddconfig: {double_z: false, z_channels: ${z}, resolution: ${res}, in_channels: 3, out_ch: 3, ch: ${ch}, ch_mult: ${mult}, num_res_blocks: ${blocks}, attn_resolutions: [${attn}], dropout: 0.0}
    n_embed: ${nEmbed}
    embed_dim: ${z}
    use_entropy_loss: true
    learning_rate: 1e-4
`;
}

async function medianMs(fn: () => Promise<void>, n = runs): Promise<number> {
  await fn();
  const ts: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn();
    ts.push(performance.now() - t);
  }
  ts.sort((a, b) => a - b);
  return ts[Math.floor(ts.length / 2)];
}

const peerCache = new Map<string, Record<string, unknown> | string>();

/** Runs the PyTorch side once per figure, or says why it cannot. */
function torchPeer(what: string, peerRuns: number): Record<string, unknown> | string {
  if (!peerCache.has(what)) peerCache.set(what, runTorchPeer(what, peerRuns));
  return peerCache.get(what)!;
}

function runTorchPeer(what: string, peerRuns: number): Record<string, unknown> | string {
  const py = '/usr/bin/python3';
  const probe = spawnSync(py, ['-c', 'import torch'], { encoding: 'utf8' });
  if (probe.status !== 0) return 'python3-torch is not installed (apt-get install python3-torch libopenblas0)';
  const blas = spawnSync('sh', ['-c', 'ldconfig -p | grep -q libopenblas'], { encoding: 'utf8' });
  if (blas.status !== 0) return 'libopenblas0 is not installed: PyTorch would use the generic BLAS, 25x slower (apt-get install libopenblas0)';
  const out = execFileSync(py, [PEER, what, '--runs', String(peerRuns)], { encoding: 'utf8', env: { ...process.env, IBQ_THREADS: process.env.IBQ_THREADS ?? '' } });
  return JSON.parse(out.trim().split('\n').pop()!);
}

function withPeer(ours: Record<string, unknown>, what: string, peerRuns = runs): void {
  emit(ours);
  const p = torchPeer(what, peerRuns);
  if (typeof p === 'string') emit({ bench: ours.bench, peer: 'pytorch', skipped: p });
  else emit({ ...p, ratio: +((p.ms as number) / (ours.ms as number)).toFixed(3) });
}

function memoryBytes(b: Backend): number | undefined {
  const d = b.describe?.() as { memoryBytes?: number } | undefined;
  return d?.memoryBytes;
}

async function encodeDecode(b: Backend): Promise<Record<string, unknown>> {
  const model = nn.withoutRandomInit(() => new IBQTokenizer(parseConfig(officialYaml(16384))));
  const x = tensor(new Float32Array(3 * 256 * 256).map((_, i) => Math.sin(i * 0.01)), [1, 3, 256, 256]);
  const ms = await medianMs(async () => {
    const { indices, zq, losses, z } = noGrad(() => model.encode(x));
    const img = noGrad(() => model.decode(zq));
    await img.data();
    dispose([indices, zq, losses, z, img]);
  }, quick ? 1 : runs);
  dispose([x]);
  model.dispose();
  return { bench: 'encode+decode', config: 'official 16384, 1x3x256x256', backend: b.name, ms: +ms.toFixed(1) };
}

/** On a backend of its own, so that its memory figure is this work's alone (wasm memory never shrinks). */
async function quantizer(name: BackendName): Promise<Record<string, unknown>> {
  const b = await createBackend(name);
  setBackend(b);
  const T = 1024, N = 262144, D = 256;
  const rand = (n: number, s: number) => new Float32Array(n).map((_, i) => Math.sin(i * 12.9898 + s) * s);
  const z = tensor(rand(T * D, 0.1), [T, D]);
  const E = tensor(rand(N * D, 0.05), [N, D]);
  const rss0 = process.memoryUsage().rss;
  let peakRss = rss0;
  const ms = await medianMs(async () => {
    const [idx, zq, losses, lse, lseT, avgP] = runOp(b, 'ibq_quantize', [z.info, E.info], { beta: 0.25, temperature: 0.01 });
    const dzq = runOp(b, 'fill', [], { shape: [T, D], value: 1, dtype: 'f32' })[0];
    const dl = runOp(b, 'fill', [], { shape: [4], value: 1, dtype: 'f32' })[0];
    const [dz, dE] = runOp(b, 'ibq_quantize_grad', [dzq, dl, z.info, E.info, idx, lse, lseT, avgP], { beta: 0.25, temperature: 0.01 });
    await b.read(dz.buffer, 0, 1);
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
    for (const t of [idx, zq, losses, lse, lseT, avgP, dzq, dl, dz, dE]) b.release(t.buffer);
  }, quick ? 1 : Math.min(runs, 5));
  dispose([z, E]);
  const device = memoryBytes(b);
  b.destroy();
  return {
    bench: 'quantizer fwd+bwd', shape: `${T} tokens x ${N} codes x ${D}`, backend: name, ms: +ms.toFixed(1),
    peak_rss_bytes: peakRss, device_memory_bytes: device,
  };
}

async function trainS(b: Backend, precision: Precision = '32'): Promise<Record<string, unknown>> {
  const cfg = parseConfig(officialYaml(1024, 64, '[1, 2, 2]', 2, 32, 8, 64));
  const t = new IBQTrainer({ config: { ...cfg, use_ema: false }, backend: b, gan: false, precision });
  const x = tensor(new Float32Array(16 * 3 * 32 * 32).map((_, i) => Math.sin(i * 0.37)), [16, 3, 32, 32]);
  const perOp = new Map<string, { ms: number; calls: number }>();
  // --profile: where a step's time goes, op by op (kernel wall time: the work itself on cpu, only the encoding on webgpu).
  if (args.includes('--profile')) {
    observeKernels((op, _inputs, ms) => {
      const e = perOp.get(op) ?? { ms: 0, calls: 0 };
      e.ms += ms;
      e.calls++;
      perOp.set(op, e);
    });
  }
  let steps = 0;
  const ms = await medianMs(async () => {
    await t.trainStep([x]);
    steps++;
  }, quick ? 1 : runs);
  observeKernels(null);
  for (const [op, e] of [...perOp].sort((a, b) => b[1].ms - a[1].ms).slice(0, 12)) {
    emit({ bench: 'train step profile', backend: b.name, precision, op, ms_per_step: +(e.ms / steps).toFixed(1), calls_per_step: e.calls / steps });
  }
  if (perOp.size > 0) {
    // Every kernel together (a mean over the steps, the warm-up included): the rest of a step
    // (the train step line's ms minus this) is the time between kernels.
    const all = [...perOp.values()].reduce((a, e) => ({ ms: a.ms + e.ms, calls: a.calls + e.calls }), { ms: 0, calls: 0 });
    emit({ bench: 'train step profile', backend: b.name, precision, op: '(all kernels)', ms_per_step: +(all.ms / steps).toFixed(1), calls_per_step: all.calls / steps });
  }
  dispose([x]);
  t.dispose();
  return {
    bench: 'train step', config: 'S (ch 64, [1,2,2], 2 blocks, attn 8, 32px, 1024 codes), batch 16, L1+quant+0.05 entropy, Adam',
    backend: b.name, precision, ms: +ms.toFixed(1), images_per_s: +(16000 / ms).toFixed(2),
  };
}

for (const name of backends) {
  let b: Backend;
  try {
    b = await createBackend(name, name === 'webgpu' ? { f16: true } : {});
  } catch (e) {
    emit({ backend: name, skipped: (e as Error).message });
    continue;
  }
  setBackend(b);
  if (wanted('encode_decode')) withPeer(await encodeDecode(b), 'encode_decode');
  if (!wanted('quantizer')) {
    // left out by --only
  } else if (name === 'cpu' || args.includes('--heavy')) {
    withPeer(await quantizer(name), 'quantizer', 1);
    setBackend(b);
  } else emit({ bench: 'quantizer fwd+bwd', backend: name, skipped: 'several minutes on a software adapter: pass --heavy' });
  if (!wanted('train_s')) {
    b.destroy();
    continue;
  }
  const f32 = await trainS(b);
  withPeer(f32, 'train_s');
  if (supportsF16(b) === true) {
    // The same step in 16-mixed; its peer is our own f32 step on the same device.
    const mixed = await trainS(b, '16-mixed');
    emit({ ...mixed, vs: 'the f32 step above', ratio: +((f32.ms as number) / (mixed.ms as number)).toFixed(3) });
  }
  b.destroy();
}
process.exit(0);
