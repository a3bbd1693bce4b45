// `npm run stress:webgpu`: bundles packages/kernels/bench/webgpu-stress.ts and runs it in
// fresh processes, one after another, failing on the first crash (signal, non-zero exit) or hang.
//   --runs N (default 20)   --steps N (default 500)   --repro-gc (run the raw-Dawn failure pattern)
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, bundle } from './bundle.mjs';

const argv = process.argv.slice(2);
/** @param {string} name @param {number} dflt */
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};
const runs = opt('--runs', 20);
const steps = opt('--steps', 500);
const repro = argv.includes('--repro-gc');

// Inside the repository so the external 'webgpu' resolves from node_modules.
const outdir = join(REPO_ROOT, 'node_modules', '.cache', 'ibq-stress-webgpu');
const { outfile } = await bundle({
  entry: join(REPO_ROOT, 'packages/kernels/bench/webgpu-stress.ts'),
  outdir,
  external: ['webgpu'],
});
const env = { ...process.env };
if (!env.XDG_RUNTIME_DIR) {
  env.XDG_RUNTIME_DIR = join(tmpdir(), 'xdg-ibq');
  mkdirSync(env.XDG_RUNTIME_DIR, { recursive: true, mode: 0o700 });
}

let failed = 0;
for (let r = 1; r <= runs; r++) {
  const t0 = Date.now();
  const res = spawnSync(process.execPath, [outfile, '--steps', String(steps), ...(repro ? ['--repro-gc'] : [])], {
    cwd: REPO_ROOT, env, encoding: 'utf8', timeout: 600_000,
  });
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  const last = (res.stdout || '').trim().split('\n').pop();
  const errTail = (res.stderr || '').split('\n').filter((l) => l && !l.startsWith('Warning: maxDynamic')).slice(-5).join('\n');
  if (res.status === 0 && !res.signal) {
    console.log(`run ${r}/${runs}: ok in ${secs}s ${last ?? ''}`);
  } else {
    failed++;
    const why = /** @type {NodeJS.ErrnoException | undefined} */ (res.error)?.code === 'ETIMEDOUT' ? 'timed out' : res.signal ? `killed by ${res.signal}` : `exit code ${res.status}`;
    console.log(`run ${r}/${runs}: FAILED (${why}) after ${secs}s\n${errTail}`);
    if (!repro) break;
  }
}
console.log(repro ? `repro: ${failed}/${runs} runs crashed` : failed ? 'stress:webgpu FAILED' : `stress:webgpu: ${runs} runs in a row without a crash`);
process.exit(repro ? 0 : failed ? 1 : 0);
