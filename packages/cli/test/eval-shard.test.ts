// Sharded `ibq eval-tokenizer` and `ibq eval-samples` (--shard i/n) merged by `ibq merge-stats`
// give the report of one run; missing and duplicate shards are refused. The built CLI in child
// processes, with the synthetic Inception weights and the small image fixtures of
// fid-command.test.ts.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readNpz, writeNpz } from '@ibq/data';
import { FX, REPO, ibq as runIbq, writeSyntheticInception } from './eval-cli.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'ibq-eval-shard-'));
const WEIGHTS = join(dir, 'inception.safetensors');
afterAll(() => rmSync(dir, { recursive: true, force: true }));
/** The commands here run up to several minutes on a loaded machine. */
const ibq = (args: string[]) => runIbq(args, 590_000);

beforeAll(() => writeSyntheticInception(WEIGHTS), 120_000);

const common = ['--inception', WEIGHTS, '--device', 'cpu'];
const json = (path: string) => JSON.parse(readFileSync(path, 'utf8'));
const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-300);

describe('ibq eval-tokenizer --shard', () => {
  it('2 shards merged by ibq merge-stats give the one-run report; a missing or duplicate shard is refused', async () => {
    const ibqPkg = join(REPO, 'packages/ibq');
    const args = ['eval-tokenizer', '--config', join(ibqPkg, 'configs/micro_test.yaml'), '--ckpt', join(ibqPkg, 'test/fixtures/micro.ckpt'),
      '--data', join(FX, 'fid_images'), '--limit', '5', '--batch-size', '2', ...common];
    const one = await ibq([...args, '--out', join(dir, 'tok-one.json')]);
    expect(one.code, one.err).toBe(0);
    const parts = [0, 1].map((i) => join(dir, `tok-part${i}.npz`));
    for (const [i, p] of parts.entries()) {
      const r = await ibq([...args, '--shard', `${i}/2`, '--out', p]);
      expect(r.code, r.err).toBe(0);
      // Whole batches of 2: shard 0 gets batch 0 (images 0..1), shard 1 batches 1-2 (images 2..4).
      expect(r.out).toContain(`shard ${i}/2 (images ${i === 0 ? '0..1' : '2..4'} of 5)`);
    }
    const m = await ibq(['merge-stats', parts[1], parts[0], '--out', join(dir, 'tok-merged.json')]);
    expect(m.code, m.err).toBe(0);
    const table = (out: string) => out.split('\n').filter((l) => !l.startsWith('wrote')).join('\n');
    expect(table(m.out)).toBe(table(one.out));
    const a = json(join(dir, 'tok-merged.json')), b = json(join(dir, 'tok-one.json'));
    expect(a.images).toBe(5);
    expect(a.codes_used).toBe(b.codes_used);
    expect(a.codebook_usage).toBe(b.codebook_usage);
    for (const k of ['rfid', 'psnr', 'ssim']) expect(rel(a[k], b[k]), k).toBeLessThan(1e-9);

    const missing = await ibq(['merge-stats', parts[0]]);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/missing shard 1 of 2/);
    const twice = await ibq(['merge-stats', parts[0], parts[0], parts[1]]);
    expect(twice.code).toBe(1);
    expect(twice.err).toMatch(/duplicate shard 0 of 2/);
  }, 600_000);
});

describe('ibq eval-samples --shard', () => {
  it('3 shards merged give the one-run FID, sFID, IS, precision and recall', async () => {
    // Samples: the fixture images mirrored left-right, so that FID and sFID are not ~0.
    const ref = join(FX, 'fid_images.npz');
    const images = (await readNpz(ref)).arr_0;
    const [n, h, w, c] = images.shape;
    const src = images.data as Uint8Array, mirrored = new Uint8Array(src.length);
    for (let i = 0; i < n * h; i++) for (let x = 0; x < w; x++) for (let k = 0; k < c; k++) mirrored[(i * w + x) * c + k] = src[(i * w + w - 1 - x) * c + k];
    const samples = join(dir, 'mirrored.npz');
    writeNpz(samples, { arr_0: { data: mirrored, shape: images.shape } });

    const args = ['eval-samples', samples, '--ref', ref, '--batch-size', '4', ...common];
    const one = await ibq([...args, '--out', join(dir, 'adm-one.json')]);
    expect(one.code, one.err).toBe(0);
    const parts = [0, 1, 2].map((i) => join(dir, `adm-part${i}.npz`));
    for (const [i, p] of parts.entries()) {
      const r = await ibq([...args, '--shard', `${i}/3`, '--out', p]);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toContain(`shard ${i}/3 (samples ${2 * i}..${2 * i + 1}, reference images ${2 * i}..${2 * i + 1})`);
    }
    const m = await ibq(['merge-stats', ...parts, '--out', join(dir, 'adm-merged.json'), '--device', 'cpu']);
    expect(m.code, m.err).toBe(0);
    const line = (out: string, name: string) => new RegExp(`^${name}: (\\S+)$`, 'm').exec(out)![1];
    for (const k of ['Inception Score', 'Precision', 'Recall']) expect(line(m.out, k), k).toBe(line(one.out, k));
    for (const k of ['FID', 'sFID']) {
      expect(Number(line(one.out, k)), k).toBeGreaterThan(1e-3);
      expect(rel(Number(line(m.out, k)), Number(line(one.out, k))), k).toBeLessThan(1e-9);
    }
    const a = json(join(dir, 'adm-merged.json')), b = json(join(dir, 'adm-one.json'));
    expect(a.samples).toBe(6);
    expect(a.reference_images).toBe(6);
    expect(a.inception_score_splits).toEqual(b.inception_score_splits);

    const missing = await ibq(['merge-stats', parts[0], parts[2], '--device', 'cpu']);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/missing shard 1 of 3/);
  }, 600_000);
});
