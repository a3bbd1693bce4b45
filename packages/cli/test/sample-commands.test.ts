// `ibq sample` and `ibq merge-samples` as a person meets them: the bundled executable run as a
// child process on an official-format AR .ckpt (packages/ar/scripts/make_golden.py), real files,
// shards from the command line and from Slurm / Kubernetes variables, a real SIGINT.
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NpzFile, readNpy } from '@ibq/data';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const CLI_DIR = resolve(fileURLToPath(new URL('..', import.meta.url)));
const REPO = resolve(CLI_DIR, '../..');
const OUT = join(REPO, `node_modules/.cache/ibq-sample-test-${process.pid}`);
const FIX = join(REPO, 'packages/ar/test/fixtures');
const TMP = mkdtempSync(join(tmpdir(), 'ibq-sample-'));

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function node(args: string[], env: NodeJS.ProcessEnv = {}, timeout = 120_000): Promise<Result> {
  return new Promise((done) => {
    execFile(process.execPath, args, { cwd: REPO, env: { ...process.env, ...env }, timeout }, (err, stdout, stderr) => {
      done({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

const ibq = (args: string[], env: NodeJS.ProcessEnv = {}) => node([join(OUT, 'ibq.mjs'), ...args], env);
const base = ['sample', '--config', join(FIX, 'ar_micro.yaml'), '--ckpt', join(FIX, 'ar_micro.ckpt'), '--classes', '4,0-2', '--per-class', '3', '--cfg', '2', '--device', 'cpu'];
const noShardEnv = { SLURM_ARRAY_TASK_ID: undefined, SLURM_ARRAY_TASK_COUNT: undefined, JOB_COMPLETION_INDEX: undefined };

beforeAll(async () => {
  const built = await node([join(CLI_DIR, 'build.mjs'), '--outdir', OUT]);
  expect(built.code).toBe(0);
}, 300_000);
afterAll(() => {
  rmSync(OUT, { recursive: true, force: true });
  rmSync(TMP, { recursive: true, force: true });
});

function npz(path: string) {
  const f = NpzFile.open(path);
  const a0 = f.get('arr_0'), a1 = f.get('arr_1');
  f.close();
  return { images: a0, labels: a1 };
}

describe('ibq sample', () => {
  const whole = join(TMP, 'whole');

  it('writes tokens.npy, labels.npy, samples.npz (shuffled rows), grid.png and shard.json from an official AR .ckpt', async () => {
    const r = await ibq([...base, '--batch', '4', '--out', whole], noShardEnv);
    expect(r.stderr).toMatch(/sampling 12 of 12 images/);
    expect(r.code).toBe(0);
    const tokens = await readNpy(join(whole, 'tokens.npy'));
    expect(tokens.dtype).toBe('int32');
    expect(tokens.shape).toEqual([12, 8, 8]);
    expect(Math.max(...(tokens.data as Int32Array))).toBeLessThan(16);
    expect(new Set(tokens.data as Int32Array).size).toBeGreaterThan(4);
    const labels = await readNpy(join(whole, 'labels.npy'));
    expect(labels.dtype).toBe('int64');
    expect(Array.from(labels.data as BigInt64Array, Number)).toEqual([4, 4, 4, 0, 0, 0, 1, 1, 1, 2, 2, 2]);
    const s = npz(join(whole, 'samples.npz'));
    expect(s.images.dtype).toBe('uint8');
    expect(s.images.shape).toEqual([12, 8, 8, 3]);
    expect(s.labels.dtype).toBe('int64');
    const shuffled = Array.from(s.labels.data as BigInt64Array, Number);
    expect([...shuffled].sort()).toEqual([0, 0, 0, 1, 1, 1, 2, 2, 2, 4, 4, 4]);
    expect(shuffled).not.toEqual([4, 4, 4, 0, 0, 0, 1, 1, 1, 2, 2, 2]);
    expect(readFileSync(join(whole, 'grid.png')).subarray(1, 4).toString()).toBe('PNG');
    expect(JSON.parse(readFileSync(join(whole, 'shard.json'), 'utf8'))).toMatchObject({ shard: 0, shards: 1, start: 0, end: 12, total: 12 });
  });

  it('shards (i/n, Slurm, Kubernetes) with another batch size merge into the unsharded result', async () => {
    const dirs = [0, 1, 2].map((k) => join(TMP, `shard${k}`));
    const runs = await Promise.all([
      ibq([...base, '--batch', '1', '--shard', '0/3', '--out', dirs[0]], noShardEnv),
      ibq([...base, '--batch', '3', '--shard', 'auto', '--out', dirs[1]], { ...noShardEnv, SLURM_ARRAY_TASK_ID: '2', SLURM_ARRAY_TASK_MIN: '1', SLURM_ARRAY_TASK_COUNT: '3' }),
      ibq([...base, '--batch', '2', '--shard', 'auto/3', '--out', dirs[2]], { ...noShardEnv, JOB_COMPLETION_INDEX: '2' }),
    ]);
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    expect(runs[1].stderr).toMatch(/sampling 4 of 12 images \(shard 1\/3\)/);
    const parts = await Promise.all(dirs.map((d) => readNpy(join(d, 'tokens.npy'))));
    const whole_ = await readNpy(join(whole, 'tokens.npy'));
    expect(parts.flatMap((p) => Array.from(p.data as Int32Array))).toEqual(Array.from(whole_.data as Int32Array));
    const merged = join(TMP, 'merged.npz');
    const m = await ibq(['merge-samples', dirs[2], dirs[0], dirs[1], '--out', merged]);
    expect(m.stdout).toMatch(/12 samples from 3 shards/);
    expect(m.code).toBe(0);
    const a = npz(merged), b = npz(join(whole, 'samples.npz'));
    expect(Buffer.from(a.images.data as Uint8Array).equals(Buffer.from(b.images.data as Uint8Array))).toBe(true);
    expect(Array.from(a.labels.data as BigInt64Array)).toEqual(Array.from(b.labels.data as BigInt64Array));
  });

  it('takes the safetensors pair ibq convert writes from the .ckpt, with the same result', async () => {
    const st = join(TMP, 'ar.safetensors');
    expect((await ibq(['convert', join(FIX, 'ar_micro.ckpt'), st])).code).toBe(0);
    const dir = join(TMP, 'from-safetensors');
    const args = base.map((a) => (a === join(FIX, 'ar_micro.ckpt') ? join(TMP, 'ar.transformer.safetensors') : a));
    const r = await ibq([...args, '--batch', '5', '--out', dir], noShardEnv);
    expect(r.code, r.stderr).toBe(0);
    const a = await readNpy(join(dir, 'tokens.npy')), b = await readNpy(join(whole, 'tokens.npy'));
    expect(Array.from(a.data as Int32Array)).toEqual(Array.from(b.data as Int32Array));
    expect(readFileSync(join(dir, 'samples.npz')).length).toBe(readFileSync(join(whole, 'samples.npz')).length);
  });

  it('streams the weights from host memory with --weights streamed, with the same result', async () => {
    const dir = join(TMP, 'streamed');
    const r = await ibq([...base, '--batch', '4', '--weights', 'streamed', '--out', dir], noShardEnv);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/on cpu \(weights streamed from host memory\)/);
    const a = await readNpy(join(dir, 'tokens.npy')), b = await readNpy(join(whole, 'tokens.npy'));
    expect(Array.from(a.data as Int32Array)).toEqual(Array.from(b.data as Int32Array));
    expect(readFileSync(join(dir, 'samples.npz')).equals(readFileSync(join(whole, 'samples.npz')))).toBe(true);
    const bad = await ibq([...base, '--weights', 'host', '--out', join(TMP, 'bad-weights')], noShardEnv);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--weights: expected auto, resident or streamed, got 'host'/);
  });

  it('merge-samples refuses missing, duplicate and mismatched shards', async () => {
    const dirs = [0, 1, 2].map((k) => join(TMP, `shard${k}`));
    const out = join(TMP, 'bad.npz');
    const missing = await ibq(['merge-samples', dirs[0], dirs[2], '--out', out]);
    expect(missing.stderr).toMatch(/missing shard 1 of 3/);
    expect(missing.code).toBe(1);
    const dup = await ibq(['merge-samples', dirs[0], dirs[1], dirs[1], dirs[2], '--out', out]);
    expect(dup.stderr).toMatch(/duplicate shard 1 of 3/);
    const other = join(TMP, 'other-seed');
    expect((await ibq([...base, '--seed', '7', '--shard', '1/3', '--out', other], noShardEnv)).code).toBe(0);
    const mixed = await ibq(['merge-samples', dirs[0], other, dirs[2], '--out', out]);
    expect(mixed.stderr).toMatch(/other settings .*seed 7 vs 0/);
    expect(mixed.code).toBe(1);
    expect(existsSync(out)).toBe(false);
  });

  it('names the key and both shapes when the checkpoint does not fit the config', async () => {
    const yaml = readFileSync(join(FIX, 'ar_micro.yaml'), 'utf8').replace('n_embd: 32', 'n_embd: 64').replace('cond_dim: 32', 'cond_dim: 64');
    const cfg = join(TMP, 'wide.yaml');
    writeFileSync(cfg, yaml);
    const r = await ibq(['sample', '--config', cfg, '--ckpt', join(FIX, 'ar_micro.ckpt'), '--classes', '0', '--per-class', '1', '--device', 'reference', '--out', join(TMP, 'x')]);
    expect(r.stderr).toMatch(/tok_emb\.weight: checkpoint \[16,32\] vs model \[16,64\]/);
    expect(r.code).toBe(1);
  });

  it('stops at a batch boundary on SIGINT with exit code 130, writing nothing', async () => {
    const dir = join(TMP, 'stopped');
    const child = spawn(process.execPath, [join(OUT, 'ibq.mjs'), ...base.map((a) => (a === '3' ? '400' : a)), '--batch', '2', '--out', dir], { cwd: REPO });
    let stderr = '';
    const code = await new Promise<number | null>((done) => {
      child.stderr.on('data', (d) => {
        stderr += d;
        if (/sampling \d+ of/.test(stderr) && !child.killed) setTimeout(() => child.kill('SIGINT'), 300);
      });
      child.on('exit', (c) => done(c));
    });
    expect(stderr).toMatch(/SIGINT/);
    expect(code).toBe(130);
    expect(existsSync(join(dir, 'samples.npz'))).toBe(false);
  });
});
