// `npm run bench -w @ibq/mpi [-- --only allreduce|train_s] [--runs N] [--bytes B]`: bundles
// bench/mpi.bench.ts once and runs it under mpiexec: the all-reduce on 2 ranks; the config-S
// step on 1 rank (all cores) and on 2 ranks (half the cores each), then their ratio.
// JSON lines on stdout.

import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { REPO_ROOT, bundle } from '../../../scripts/bundle.mjs';

const here = resolve(fileURLToPath(new URL('.', import.meta.url)));
const args = process.argv.slice(2);
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
const pass = args.filter((a, i) => a !== '--only' && args[i - 1] !== '--only');
const outdir = join(REPO_ROOT, 'node_modules/.cache', `ibq-mpi-bench-${process.pid}`);
const { outfile } = await bundle({ entry: join(here, 'mpi.bench.ts'), outdir, name: 'mpi-bench', externalDependencies: true });

/** @param {number} ranks @param {string[]} rest @param {number} threads */
function mpi(ranks, rest, threads) {
  const r = spawnSync('mpiexec', ['-n', String(ranks), process.execPath, outfile, ...rest], {
    cwd: REPO_ROOT, encoding: 'utf8', env: { ...process.env, IBQ_THREADS: String(threads) }, stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (r.status !== 0) throw new Error(`mpiexec -n ${ranks} failed (exit ${r.status ?? r.signal})`);
  process.stdout.write(r.stdout);
  return r.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

try {
  const cores = availableParallelism();
  if (!only || only === 'allreduce') mpi(2, ['allreduce', ...pass], Math.max(1, cores >> 1));
  if (!only || only === 'train_s') {
    const [one] = mpi(1, ['train_s', ...pass], cores);
    const [two] = mpi(2, ['train_s', ...pass], Math.max(1, cores >> 1));
    console.log(JSON.stringify({ bench: 'train step scaling', config: 'S', from: '1 rank', to: '2 ranks', images_per_s_ratio: +(two.images_per_s / one.images_per_s).toFixed(3) }));
  }
} finally {
  rmSync(outdir, { recursive: true, force: true });
}
