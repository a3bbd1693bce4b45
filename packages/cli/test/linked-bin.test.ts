// The `ibq` command as a user meets it after setup: the bin npm links into the checkout's
// node_modules/.bin (what `npx ibq` runs), in a real child process, and a normal run's stderr
// free of Dawn's native warnings (kept with IBQ_DAWN_VERBOSE=1).
import { spawnSync } from 'node:child_process';
import { existsSync, readlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../../..');
const BIN = join(ROOT, 'node_modules', '.bin', 'ibq');

function ibq(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(BIN, args, { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('the linked ibq bin', () => {
  it('npm linked node_modules/.bin/ibq to the tracked launcher', () => {
    expect(existsSync(BIN), `${BIN} is missing: run npm ci (or npm install) in the repository`).toBe(true);
    expect(readlinkSync(BIN)).toMatch(/@ibq\/cli\/bin\/ibq\.mjs$/);
  });

  it('--help and devices run through it', () => {
    const help = ibq(['--help']);
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/^usage: ibq <command>/);
    const dev = ibq(['devices'], { IBQ_BACKENDS: 'reference' });
    expect(dev.code).toBe(0);
    expect(dev.out).toMatch(/^backends$/m);
    expect(dev.out).toMatch(/^ {2}reference +available/m);
  });

  it('npx ibq finds it without asking the registry', () => {
    const r = spawnSync('npx', ['--no-install', 'ibq', '--help'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
    expect(r.stderr).not.toMatch(/could not determine executable|npm error/);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^usage: ibq <command>/);
  });
});

describe('Dawn native warnings', () => {
  const probe = ibq(['devices'], { IBQ_BACKENDS: 'webgpu', IBQ_DAWN_VERBOSE: '1' });
  const webgpu = probe.code === 0 && /^ {2}webgpu +available/m.test(probe.out);
  it.skipIf(!webgpu)('are absent from a normal run (stderr a pipe), present with IBQ_DAWN_VERBOSE=1', () => {
    // As a user piping the output (`ibq devices 2>&1 | less`): stderr is a pipe, not a socket.
    const r = spawnSync('sh', ['-c', `"${BIN}" devices 2>&1 >/dev/null | cat`], {
      cwd: ROOT, encoding: 'utf8', env: { ...process.env, IBQ_BACKENDS: 'webgpu' }, timeout: 120_000,
    });
    expect(r.status).toBe(0);
    expect(r.stdout).not.toMatch(/artificially reduced/);
    // lavapipe's Vulkan limits make Dawn print them; other drivers may print nothing at all.
    if (/llvmpipe|lavapipe/.test(probe.out)) expect(probe.err).toMatch(/artificially reduced/);
  });
});
