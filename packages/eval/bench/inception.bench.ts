// Inception feature extraction benchmark (`npm run bench -w @ibq/eval -- [--backend cpu,webgpu]
// [--batch 8] [--runs 3]`): pool3 features of a [B, 3, 299, 299] batch (already resized and
// scaled), on each backend, beside PyTorch 1.13 (bench/torch_peer.py: torchvision's
// inception_v3 with the same synthetic weights) in the same run; ratio = PyTorch ms / our ms
// (above 1: we are faster). One JSON line per figure.

import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { type BackendName, createBackend } from '@ibq/kernels';
import { dispose, setBackend, tensor } from '@ibq/tensor';
import { InceptionV3, syntheticImage, syntheticInceptionState } from '../src/index.js';

const args = process.argv.slice(2);
const get = (k: string) => (args.includes(`--${k}`) ? args[args.indexOf(`--${k}`) + 1] : undefined);
const batch = Number(get('batch') ?? 8);
const runs = Math.max(1, Number(get('runs') ?? 3));
const backends = (get('backend') ?? 'cpu,webgpu').split(',') as BackendName[];
const emit = (o: Record<string, unknown>) => console.log(JSON.stringify(o));

function findPeer(): string {
  for (let d = resolve(process.cwd()); ; d = dirname(d)) {
    const p = join(d, 'packages', 'eval', 'bench', 'torch_peer.py');
    if (existsSync(p)) return p;
    if (existsSync(join(d, 'bench', 'torch_peer.py'))) return join(d, 'bench', 'torch_peer.py');
    if (dirname(d) === d) throw new Error('bench/torch_peer.py not found: run from the repository');
  }
}

function torchPeer(): Record<string, unknown> | string {
  const py = '/usr/bin/python3';
  if (spawnSync(py, ['-c', 'import torch, torchvision'], { encoding: 'utf8' }).status !== 0) return 'python3-torch / python3-torchvision are not installed';
  const out = execFileSync(py, [findPeer(), '--batch', String(batch), '--runs', String(runs)], { encoding: 'utf8', env: { ...process.env, IBQ_THREADS: process.env.IBQ_THREADS ?? '' } });
  return JSON.parse(out.trim().split('\n').pop()!);
}

const state = syntheticInceptionState();
const peer = torchPeer();
for (const name of backends) {
  let be;
  try {
    be = await createBackend(name);
  } catch (e) {
    emit({ bench: 'inception_pool3', backend: name, skipped: (e as Error).message });
    continue;
  }
  setBackend(be);
  const net = new InceptionV3(state, { backend: be });
  const x = tensor(syntheticImage('bench', [batch, 3, 299, 299]).map((v) => 2 * v - 1), [batch, 3, 299, 299], { backend: be });
  const once = async () => {
    const out = net.forward(x, ['pool2048']);
    await out.pool2048!.data();
    dispose([out.pool2048!]);
  };
  await once();
  const ts: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await once();
    ts.push(performance.now() - t);
  }
  ts.sort((a, b) => a - b);
  const ms = ts[Math.floor(ts.length / 2)];
  const ours = { bench: 'inception_pool3', backend: name, batch, ms: +ms.toFixed(1), images_per_s: +((batch * 1000) / ms).toFixed(2) };
  emit(ours);
  if (typeof peer === 'string') emit({ bench: 'inception_pool3', peer: 'pytorch', skipped: peer });
  else emit({ ...peer, vs: name, ratio: +((peer.ms as number) / ms).toFixed(3) });
  dispose([x]);
  net.dispose();
  be.destroy();
}
process.exit(0);
