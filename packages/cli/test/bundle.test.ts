// The built executable: bundled by build.mjs into a scratch folder, run as `node ibq.mjs`.
// Checks what only a real process shows: the bundle is complete, `webgpu` stays external
// and lazy, exit codes, and that the process exits although Dawn was started.
import { execFile } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { allOps } from '@ibq/kernels';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const CLI_DIR = resolve(fileURLToPath(new URL('..', import.meta.url)));
const REPO = resolve(CLI_DIR, '../..');
// Inside the repository, so that `webgpu` resolves from node_modules as it does for dist/;
// one folder per run, so that concurrent runs do not overwrite each other's bundle.
const OUT = join(REPO, `node_modules/.cache/ibq-cli-test-${process.pid}`);

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function node(args: string[], env: NodeJS.ProcessEnv = {}, timeout = 60_000): Promise<Result> {
  return new Promise((done) => {
    execFile(process.execPath, args, { cwd: REPO, env: { ...process.env, ...env }, timeout }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      done({ code, stdout, stderr: err && err.killed ? `${stderr}\n(killed after ${timeout} ms)` : stderr });
    });
  });
}

const ibq = (args: string[], env: NodeJS.ProcessEnv = {}) => node([join(OUT, 'ibq.mjs'), ...args], env);

beforeAll(async () => {
  const built = await node([join(CLI_DIR, 'build.mjs'), '--outdir', OUT]);
  expect(built.stderr.replace(/^warning: .*\n?/gm, '')).toBe('');
  expect(built.code).toBe(0);
});
afterAll(() => rmSync(OUT, { recursive: true, force: true }));

describe('the ibq bundle', () => {
  it('keeps webgpu external and out of the entry chunk (loaded only for the webgpu backend)', () => {
    const files = readdirSync(OUT).filter((f) => f.endsWith('.mjs'));
    const importsWebgpu = /(?:from\s*|import\s*\(\s*)["']webgpu["']/;
    expect(readFileSync(join(OUT, 'ibq.mjs'), 'utf8')).not.toMatch(importsWebgpu);
    expect(readFileSync(join(OUT, 'ibq.mjs'), 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
    for (const f of files) expect(readFileSync(join(OUT, f), 'utf8')).not.toContain('dawn.node');
  });

  it('devices lists the reference backend', async () => {
    const r = await ibq(['devices'], { IBQ_BACKENDS: 'reference' });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^host\n/);
    expect(r.stdout).toMatch(/\n {2}reference +available\n/);
  });

  it('devices --check self-checks reference and exits 0', async () => {
    const r = await ibq(['devices', '--check'], { IBQ_BACKENDS: 'reference' });
    expect(r.stdout).toMatch(new RegExp(`\\n {2}reference +${allOps().length} passed, 0 failed, 0 not supported`));
    expect(r.code).toBe(0);
  });

  it('bad usage exits 2 with a message', async () => {
    const r = await ibq(['devices', '--nope']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("ibq devices: unknown option '--nope'");
  });

  // VK_ICD_FILENAMES naming no driver hides every Vulkan device from Dawn (Linux only).
  it.runIf(process.platform === 'linux')('IBQ_REQUIRE_WEBGPU=1 without an adapter fails, and the process still exits', async () => {
    const r = await ibq(['devices', '--backends', 'webgpu'], { IBQ_REQUIRE_WEBGPU: '1', VK_ICD_FILENAMES: '/nonexistent/icd.json' });
    expect(r.stdout).toMatch(/ {2}webgpu +unavailable: /);
    expect(r.stderr).toContain('IBQ_REQUIRE_WEBGPU=1 but the webgpu backend is unavailable');
    expect(r.code).toBe(1);
  });
});
