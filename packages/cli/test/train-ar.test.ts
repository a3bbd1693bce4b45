// `ibq train-ar` as a person meets it: the built CLI in child processes on token shards from
// `ibq tokenize` and on images tokenized on the fly (an image folder with a corrupt file, and
// Fashion-MNIST); a resumed run equals an uninterrupted one; SIGINT writes a checkpoint and
// exits 130, and --resume continues from it.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodePng, FASHION_MNIST_DIR } from '@ibq/data';
import { readSafetensors } from '@ibq/tensor';

const CLI = fileURLToPath(new URL('../dist/ibq.mjs', import.meta.url));
const TOK_CONFIG = fileURLToPath(new URL('../../ibq/configs/micro_test.yaml', import.meta.url));
const TOK_CKPT = fileURLToPath(new URL('../../ibq/test/fixtures/micro.ckpt', import.meta.url));
const AR_CONFIG = fileURLToPath(new URL('./fixtures/ar_micro.yaml', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'ibq-cli-train-ar-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function ibq(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 240_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const images = join(dir, 'images');
const shards = join(dir, 'shards');
beforeAll(async () => {
  for (const [c, cls] of ['a', 'b'].entries()) {
    mkdirSync(join(images, cls), { recursive: true });
    for (let i = 0; i < 4; i++) {
      const data = new Uint8Array(11 * 13 * 3).map((_, j) => (j * (i + 3) + c * 90) % 256);
      writeFileSync(join(images, cls, `${i}.png`), await encodePng({ data, height: 11, width: 13, channels: 3 }));
    }
  }
  writeFileSync(join(images, 'b', 'corrupt.png'), 'not an image');
  const r = ibq('tokenize', '--config', TOK_CONFIG, '--ckpt', TOK_CKPT, '--device', 'reference', '--data', images, '--out', shards, '--flip');
  if (r.code !== 0) throw new Error(r.err);
}, 240_000);

const base = ['train-ar', '--config', AR_CONFIG, '--device', 'reference', '--log-every', '1'];
const metrics = (run: string) => readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const trainLosses = (run: string) => metrics(run).filter((m) => 'loss' in m).map((m) => [m.step, m.loss]);

async function weightsOf(path: string): Promise<Map<string, number[]>> {
  const { tensors } = await readSafetensors(path);
  return new Map([...tensors].filter(([k]) => k.startsWith('transformer.')).map(([k, v]) => [k, Array.from(v.data as Float32Array)]));
}

describe('ibq train-ar', () => {
  it('on token shards: run folder, samples, validation each epoch; 3 + 3 steps with --resume equal 6 steps', async () => {
    const full = join(dir, 'full');
    const a = ibq(...base, '--tokens', shards, '--val-tokens', shards, '--tokenizer-ckpt', TOK_CKPT, '--out', full, '--steps', '6', '--sample-every', '3', '--checkpoint-every', '3');
    expect(a.code, a.err).toBe(0);
    expect(a.out).toMatch(/finished at step 6/);
    expect(a.err).toMatch(/8 token grids, batch 2 x 1, 6 steps \(4 per epoch, schedule over 8\)/);
    expect(a.err).toMatch(/epoch 0: validation loss \d+\.\d+ \(perplexity/);
    for (const f of ['checkpoint.safetensors', 'metrics.jsonl', 'config.yaml']) expect(existsSync(join(full, f)), f).toBe(true);
    expect(readdirSync(full).some((f) => f.startsWith('events.out.tfevents.'))).toBe(true);
    expect(readdirSync(join(full, 'samples'))).toEqual(['step_0000003.png', 'step_0000006.png']);
    const m = metrics(full);
    expect(m.find((x) => 'val/loss' in x)).toMatchObject({ step: 4, epoch: 0 });
    expect(m[0].loss).toBeCloseTo(Math.log(16), 5); // zero head at init: ln V
    expect(m[0]).toMatchObject({ step: 1, weight_decay: 0.05 });

    const half = join(dir, 'half');
    const b1 = ibq(...base, '--tokens', shards, '--out', half, '--steps', '3');
    expect(b1.code, b1.err).toBe(0);
    const b2 = ibq(...base, '--tokens', shards, '--out', half, '--steps', '6', '--resume');
    expect(b2.code, b2.err).toBe(0);
    expect(b2.err).toMatch(/resumed from .* at step 3/);
    expect(trainLosses(half)).toEqual(trainLosses(full));
    expect(await weightsOf(join(half, 'checkpoint.safetensors'))).toEqual(await weightsOf(join(full, 'checkpoint.safetensors')));
  }, 300_000);

  it('on an image folder, tokenized on the fly (corrupt file reported); bad arguments are named', () => {
    const run = join(dir, 'onthefly');
    const r = ibq(...base, '--data', images, '--tokenizer-ckpt', TOK_CKPT, '--tokenizer-config', TOK_CONFIG, '--out', run, '--steps', '3');
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/skipped .*corrupt\.png/);
    expect(trainLosses(run).length).toBe(3);
    const both = ibq(...base, '--data', images, '--tokens', shards);
    expect(both.code).toBe(2);
    expect(both.err).toMatch(/either --tokens SHARDS or --data D/);
    const noCkpt = ibq(...base, '--data', images);
    expect(noCkpt.code).toBe(2);
    expect(noCkpt.err).toMatch(/--data needs --tokenizer-ckpt/);
    const resume = ibq(...base, '--tokens', shards, '--out', join(dir, 'empty'), '--resume');
    expect(resume.code).toBe(1);
    expect(resume.err).toMatch(/--resume: no checkpoint in .*empty/);
  }, 300_000);

  it.skipIf(!existsSync(FASHION_MNIST_DIR))('on Fashion-MNIST, tokenized on the fly', () => {
    const run = join(dir, 'fmnist');
    const r = ibq(...base, '--device', 'cpu', '--data', 'fashion-mnist', '--tokenizer-ckpt', TOK_CKPT, '--tokenizer-config', TOK_CONFIG, '--out', run, '--steps', '2');
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/60000 images/);
    expect(trainLosses(run).map(([s]) => s)).toEqual([1, 2]);
  }, 300_000);

  it('SIGINT: finishes the step, writes a checkpoint, exits 130; --resume continues', async () => {
    const run = join(dir, 'sigint');
    const child = spawn(process.execPath, [CLI, ...base, '--tokens', shards, '--out', run, '--steps', '100000'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    const deadline = Date.now() + 120_000;
    while (!(existsSync(join(run, 'metrics.jsonl')) && metrics(run).length >= 2) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    child.kill('SIGINT');
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    expect(code, err).toBe(130);
    expect(err).toMatch(/SIGINT: finishing this step, then writing a checkpoint/);
    const steps = trainLosses(run).length;
    const r = ibq(...base, '--tokens', shards, '--out', run, '--steps', String(steps + 2), '--resume');
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(new RegExp(`resumed from .* at step ${steps}`));
    expect(trainLosses(run).map(([s]) => s)).toEqual(Array.from({ length: steps + 2 }, (_, i) => i + 1));
  }, 300_000);
});
