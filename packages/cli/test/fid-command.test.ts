// `ibq fid` and `ibq merge-stats` as a user runs them: the built CLI (dist/ibq.mjs, `npm run
// build`) in a child process, on real files (both through eval-cli.ts). The network's weights
// are the synthetic ones of the parity tests written to a .safetensors file; the expected
// statistics come from
// pytorch-fid's own calculate_activation_statistics on the same images and weights
// (packages/eval/scripts/make_fid_golden.py).
import { copyFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readNpz, writeNpz } from '@ibq/data';
import { syntheticInceptionState } from '@ibq/eval';
import { writeSafetensors } from '@ibq/tensor';
import { CLI, FX, REPO, ibq, writeSyntheticInception } from './eval-cli.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'ibq-fid-'));
const WEIGHTS = join(dir, 'inception.safetensors');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const golden = await readNpz(join(FX, 'fid_golden.npz'));
const g = (k: string) => golden[k].data as Float64Array;

function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < want.length; i++) {
    num = Math.max(num, Math.abs(got[i] - want[i]));
    den = Math.max(den, Math.abs(want[i]));
  }
  return num / den;
}

function topLeft(sigma: Float64Array, d: number, k: number): Float64Array {
  return Float64Array.from({ length: k * k }, (_, i) => sigma[Math.floor(i / k) * d + (i % k)]);
}

beforeAll(() => writeSyntheticInception(WEIGHTS), 120_000);

const common = ['--inception', WEIGHTS, '--device', 'cpu', '--batch-size', '4'];

describe('ibq fid', () => {
  it("--save-stats on an image folder gives pytorch-fid's mu and sigma (dims 64 and 2048)", async () => {
    for (const dims of [64, 2048]) {
      const out = join(dir, `folder${dims}.npz`);
      const r = await ibq(['fid', '--save-stats', join(FX, 'fid_images'), out, '--dims', String(dims), ...common]);
      expect(r.err).toMatch(/not pytorch-fid's pt_inception-2015-12-05-6726825d\.pth/);
      expect(r.code, r.err).toBe(0);
      const s = await readNpz(out);
      expect(relErr(s.mu.data as Float64Array, g(`pytorch.mu${dims}`)), `mu${dims}`).toBeLessThan(1e-4);
      const sigma = s.sigma.data as Float64Array;
      const want = g(`pytorch.sigma${dims}`);
      expect(relErr(dims === 64 ? sigma : topLeft(sigma, dims, 16), want), `sigma${dims}`).toBeLessThan(1e-3);
    }
  }, 600_000);

  it('--mode adm on a uint8 NHWC .npz gives the ADM pipeline (TF1 resize, (x-128)/128)', async () => {
    const out = join(dir, 'adm64.npz');
    const r = await ibq(['fid', '--save-stats', join(FX, 'fid_images.npz'), out, '--dims', '64', '--mode', 'adm', ...common]);
    expect(r.code, r.err).toBe(0);
    const s = await readNpz(out);
    expect(relErr(s.mu.data as Float64Array, g('adm.mu64'))).toBeLessThan(1e-4);
    expect(relErr(s.sigma.data as Float64Array, g('adm.sigma64'))).toBeLessThan(1e-3);
  }, 300_000);

  it('two statistics files: prints FID: <value> equal to scipy (no network needed)', async () => {
    const fx = await readNpz(join(FX, 'frechet_golden.npz'));
    const a = join(dir, 'a.npz'), b = join(dir, 'b.npz');
    const d = fx.mid_mu1.shape[0];
    writeNpz(a, { mu: fx.mid_mu1.data, sigma: { data: fx.mid_sigma1.data, shape: [d, d] } });
    writeNpz(b, { mu: fx.mid_mu2.data, sigma: { data: fx.mid_sigma2.data, shape: [d, d] } });
    const r = await ibq(['fid', a, b]);
    expect(r.code, r.err).toBe(0);
    const m = /^FID: (\S+)$/m.exec(r.out);
    expect(m).not.toBeNull();
    const want = Number(fx.mid_fid.data[0]);
    expect(Math.abs(Number(m![1]) - want) / want).toBeLessThan(1e-6);
  });

  it('--shard i/n partial statistics merge (ibq merge-stats) into the one-run result, and FID of a set with itself is 0', async () => {
    const parts = [0, 1, 2].map((i) => join(dir, `part${i}.npz`));
    for (const [i, p] of parts.entries()) {
      const r = await ibq(['fid', '--save-stats', join(FX, 'fid_images'), p, '--dims', '64', '--shard', `${i}/3`, ...common]);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(new RegExp(`shard ${i}/3 \\(2 images, 64-d\\)`));
    }
    const merged = join(dir, 'merged.npz');
    const m = await ibq(['merge-stats', ...parts, '--out', merged]);
    expect(m.code, m.err).toBe(0);
    expect(m.out).toMatch(/6 images from 3 part/);
    const s = await readNpz(merged);
    expect(relErr(s.mu.data as Float64Array, g('pytorch.mu64'))).toBeLessThan(1e-4);
    expect(relErr(s.sigma.data as Float64Array, g('pytorch.sigma64'))).toBeLessThan(1e-3);
    const one = await readNpz(join(dir, 'folder64.npz'));
    expect(relErr(s.sigma.data as Float64Array, one.sigma.data as Float64Array)).toBeLessThan(1e-9);
    const self = await ibq(['fid', merged, join(dir, 'folder64.npz')]);
    expect(self.code, self.err).toBe(0);
    expect(Math.abs(Number(/FID: (\S+)/.exec(self.out)![1]))).toBeLessThan(1e-6);
  }, 300_000);
});

describe('ibq fid on bad input', () => {
  it('a corrupt image in the folder is reported, counted and skipped', async () => {
    const folder = join(dir, 'with-corrupt');
    cpSync(join(FX, 'fid_images'), folder, { recursive: true });
    writeFileSync(join(folder, 'broken.png'), Buffer.from('not a png at all'));
    const r = await ibq(['fid', '--save-stats', folder, join(dir, 'c.npz'), '--dims', '64', ...common]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/skipped .*broken\.png/);
    expect(r.err).toMatch(/1 corrupt image\(s\) skipped, 6 used/);
  }, 300_000);

  it('a missing weights file, a missing PATH and a wrong option are named', async () => {
    const missing = await ibq(['fid', join(FX, 'fid_images'), join(FX, 'fid_images'), '--inception', join(dir, 'nope.pth')]);
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/Inception weights '.*nope\.pth' does not exist/);
    const path = await ibq(['fid', join(dir, 'nowhere'), join(FX, 'fid_images'), ...common]);
    expect(path.code).toBe(1);
    expect(path.err).toMatch(/nowhere: no such file or folder/);
    const dims = await ibq(['fid', 'a', 'b', '--dims', '100']);
    expect(dims.code).toBe(2);
    expect(dims.err).toMatch(/--dims: expected one of 64, 192, 768, 2048, got '100'/);
  });

  it('weights with a wrong shape name the key and both shapes; truncated and hostile files are refused', async () => {
    const state = syntheticInceptionState();
    state.set('Mixed_6c.branch7x7_2.conv.weight', { dtype: 'f32', shape: [160, 160, 7, 1], data: new Float32Array(160 * 160 * 7) });
    const bad = join(dir, 'bad-shape.safetensors');
    await writeSafetensors(bad, state);
    const r = await ibq(['fid', join(FX, 'fid_images'), join(FX, 'fid_images'), '--inception', bad, '--device', 'cpu']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/Mixed_6c\.branch7x7_2\.conv\.weight: file \[160,160,7,1\] vs expected \[160,160,1,7\]/);

    const truncated = join(dir, 'truncated.safetensors');
    writeFileSync(truncated, readFileSync(WEIGHTS).subarray(0, 1_000_000));
    const t = await ibq(['fid', join(FX, 'fid_images'), join(FX, 'fid_images'), '--inception', truncated, '--device', 'cpu']);
    expect(t.code).toBe(1);
    expect(t.err).toMatch(/truncated\.safetensors: cannot read Inception weights/);

    const hostile = join(dir, 'hostile.pth');
    copyFileSync(join(REPO, 'packages/formats/test/fixtures/hostile_posix_system.pt'), hostile);
    const h = await ibq(['fid', join(FX, 'fid_images'), join(FX, 'fid_images'), '--inception', hostile, '--device', 'cpu']);
    expect(h.code).toBe(1);
    expect(h.err).toMatch(/hostile\.pth: cannot read Inception weights/);
  }, 120_000);
});

describe('ibq eval-samples', () => {
  it("prints the ADM suite's report; a set against itself: FID and sFID ~0, precision = recall = 1", async () => {
    const report = join(dir, 'report.json');
    const r = await ibq(['eval-samples', join(FX, 'fid_images.npz'), '--ref', join(FX, 'fid_images.npz'), '--out', report, ...common], 590_000);
    expect(r.code, r.err).toBe(0);
    const line = (name: string) => Number(new RegExp(`^${name}: (\\S+)$`, 'm').exec(r.out)?.[1]);
    expect(line('Inception Score')).toBeGreaterThanOrEqual(1);
    expect(Math.abs(line('FID'))).toBeLessThan(1e-3);
    expect(Math.abs(line('sFID'))).toBeLessThan(1e-3);
    expect(line('Precision')).toBe(1);
    expect(line('Recall')).toBe(1);
    const json = JSON.parse(readFileSync(report, 'utf8'));
    expect(json.samples).toBe(6);
    expect(json.reference_statistics).toBe('from the reference images');
    expect(json.inception_score_splits).toHaveLength(1);
  }, 600_000);

  it('a sample file without images is refused, naming it', async () => {
    const stats = join(dir, 'only-stats.npz');
    writeNpz(stats, { mu: new Float64Array(4), sigma: { data: new Float64Array(16), shape: [4, 4] } });
    const r = await ibq(['eval-samples', stats, '--ref', join(FX, 'fid_images.npz'), ...common]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/only-stats\.npz: expected uint8 images in 'arr_0'/);
  });
});

describe('ibq eval-tokenizer', () => {
  it("reports rFID, PSNR, SSIM and codebook usage on a folder (evaluation_image.py's protocol) and writes JSON", async () => {
    const ibqPkg = join(REPO, 'packages/ibq');
    const out = join(dir, 'tok.json');
    const r = await ibq(['eval-tokenizer', '--config', join(ibqPkg, 'configs/micro_test.yaml'), '--ckpt', join(ibqPkg, 'test/fixtures/micro.ckpt'),
      '--data', join(FX, 'fid_images'), '--limit', '5', '--out', out, ...common], 590_000);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^images\s+5$/m);
    const json = JSON.parse(readFileSync(out, 'utf8'));
    expect(json.images).toBe(5);
    expect(Number.isFinite(json.rfid) && json.rfid > 0).toBe(true);
    expect(json.psnr).toBeGreaterThan(0);
    expect(json.ssim).toBeGreaterThan(-1);
    expect(json.codes_used).toBeGreaterThan(0);
    expect(r.out).toMatch(new RegExp(`^rFID\\s+${json.rfid.toFixed(4)}$`, 'm'));
  }, 600_000);
});

describe('ibq fid and signals', () => {
  it('SIGINT during feature extraction stops at a batch boundary: exit 130, nothing written', async () => {
    const { spawn } = await import('node:child_process');
    const out = join(dir, 'interrupted.npz');
    const child = spawn(process.execPath, [CLI, 'fid', '--save-stats', join(FX, 'fid_images'), out, '--dims', '64', '--inception', WEIGHTS, '--device', 'cpu', '--batch-size', '1'], { cwd: REPO });
    let err = '';
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString();
      // The weights note comes after loading, before the first batch.
      if (/not pytorch-fid's/.test(err) && !child.killed) child.kill('SIGINT');
    });
    const code = await new Promise<number | null>((res) => child.on('exit', (c) => res(c)));
    expect(code, err).toBe(130);
    expect(err).toMatch(/nothing was written/);
    const { existsSync } = await import('node:fs');
    expect(existsSync(out)).toBe(false);
  }, 120_000);
});
