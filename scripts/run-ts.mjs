// Runs a TypeScript file of this repository with plain Node 20 (no TS loader): bundles it
// with esbuild into node_modules/.cache/ibq-run/ (workspace code inlined, every other
// package external, so native addons and peers' wasm load from node_modules as usual),
// then runs it with the given arguments.
//
// usage: node scripts/run-ts.mjs <file.ts> [arguments for it...]

import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { basename, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { REPO_ROOT, bundle } from './bundle.mjs';

/**
 * Bundles and runs `file`; returns its exit code.
 * @param {string} file
 * @param {string[]} [args]
 * @param {{ what?: string }} [options]
 */
export async function runTs(file, args = [], { what = 'file' } = {}) {
  const entry = resolve(file);
  if (!existsSync(entry)) {
    console.error(`${what} ${relative(REPO_ROOT, entry)} does not exist`);
    return 1;
  }
  const name = relative(REPO_ROOT, entry).replace(/[\\/]/g, '_').replace(/\.[cm]?[jt]s$/, '');
  // One folder per run (concurrent runs do not clash), removed afterwards.
  const outdir = join(REPO_ROOT, 'node_modules', '.cache', 'ibq-run', `${name}-${process.pid}`);
  try {
    let outfile;
    try {
      ({ outfile } = await bundle({ entry, outdir, name: basename(entry).replace(/\.[cm]?[jt]s$/, ''), externalDependencies: true }));
    } catch (e) {
      console.error(/** @type {Error} */ (e).message);
      return 1;
    }
    return await runBundle(entry, outfile, args);
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

/**
 * Runs the bundle as a child process, forwarding SIGINT/SIGTERM so it never outlives us.
 * @param {string} entry
 * @param {string} outfile
 * @param {string[]} args
 * @returns {Promise<number>}
 */
function runBundle(entry, outfile, args) {
  return new Promise((done) => {
    const child = spawn(process.execPath, ['--enable-source-maps', outfile, ...args], { stdio: 'inherit', cwd: process.cwd() });
    /** @param {NodeJS.Signals} signal */
    const forward = (signal) => child.kill(signal);
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    child.on('error', (e) => {
      console.error(`could not run ${relative(REPO_ROOT, entry)}: ${e.message}`);
      done(1);
    });
    child.on('exit', (code, signal) => {
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
      if (signal) console.error(`${relative(REPO_ROOT, entry)} was killed by ${signal}`);
      done(code ?? 1);
    });
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [file, ...args] = process.argv.slice(2);
  if (!file) {
    console.error('usage: node scripts/run-ts.mjs <file.ts> [arguments...]');
    process.exit(2);
  }
  process.exitCode = await runTs(file, args);
}
