// Builds the MPI addon (build/Release/ibq_mpi.node) with node-gyp when the machine has MPI.
// Without an MPI compiler wrapper it says what to install and succeeds: single-process
// training needs no MPI. An addon already built from the same sources and MPI flags is kept.
// usage: node build.mjs [--force]

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mpiFlags, mpiccCommand } from './mpi-flags.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const addon = join(here, 'build/Release/ibq_mpi.node');
const stamp = join(here, 'build/ibq-mpi-stamp.json');
const sources = ['native/mpi_addon.cc', 'binding.gyp', 'mpi-flags.mjs'].map((f) => join(here, f));

const flags = mpiFlags();
if (!flags) {
  console.log(`@ibq/mpi: no MPI found ('${mpiccCommand()} -show' failed): the addon is not built; single-process training is unaffected. ` +
    'For multi-process training install MPI (Debian/Ubuntu: apt-get install mpich libmpich-dev; a cluster: load its MPI module or set MPICC) and build again.');
  process.exit(0);
}

// Rebuild when a source, the MPI flags or the Node version changed.
const want = JSON.stringify({ flags, node: process.versions.modules, sources: sources.map((f) => statSync(f).mtimeMs) });
if (!process.argv.includes('--force') && existsSync(addon) && existsSync(stamp) && readFileSync(stamp, 'utf8') === want) {
  console.log('@ibq/mpi: addon up to date');
  process.exit(0);
}

/** node-gyp: the one npm runs scripts with, else on PATH, else the copy bundled with npm. */
function nodeGyp() {
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) return [process.execPath, fromNpm];
  const bundled = resolve(dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js');
  if (existsSync(bundled)) return [process.execPath, bundled];
  return ['node-gyp'];
}

// Build against the running Node's own headers when it has them (no download).
const prefix = resolve(dirname(process.execPath), '..');
const nodedir = existsSync(join(prefix, 'include/node/node_api.h')) ? [`--nodedir=${prefix}`] : [];
const [cmd, ...pre] = nodeGyp();
const r = spawnSync(cmd, [...pre, 'rebuild', ...nodedir], { cwd: here, stdio: 'inherit' });
if (r.status !== 0) {
  console.error(`@ibq/mpi: node-gyp failed (exit ${r.status ?? r.signal}) building against ${mpiccCommand()}`);
  process.exit(1);
}
mkdirSync(dirname(stamp), { recursive: true });
writeFileSync(stamp, want);
console.log(`@ibq/mpi: built ${addon}`);
