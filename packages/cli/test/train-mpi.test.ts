// `ibq train` under a real `mpiexec -n 2` (MPICH in CI) on Fashion-MNIST, cpu backend: two ranks
// with batch B equal one process with batch 2B (losses and final weights), resume across rank
// counts, a Ctrl-C on one rank stopping both after the same step with one checkpoint, a killed
// rank ending the job with the last checkpoint intact, and an MPI launch without MPI.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodePng } from '@ibq/data';
import { readSafetensors, toFloat32 } from '@ibq/tensor';
import { mpiMissing, mpiexec } from '../../mpi/test/mpirun.js';

const CLI_DIR = resolve(fileURLToPath(new URL('..', import.meta.url)));
const REPO = resolve(CLI_DIR, '../..');
// Inside the repository, so that @ibq/mpi's addon resolves from node_modules as it does for dist/.
const OUT = join(REPO, `node_modules/.cache/ibq-mpi-test-${process.pid}`);
const IBQ = join(OUT, 'ibq.mjs');
const dir = mkdtempSync(join(tmpdir(), 'ibq-train-mpi-'));
const missing = mpiMissing();

// The micro tokenizer with the two batch-coupled parts switched off, so that 2 x B must equal
// 1 x 2B: the entropy loss (entropy of the batch-mean code distribution) and the GAN terms
// (BatchNorm in the discriminator normalises over each rank's own batch, as DDP without
// SyncBatchNorm does). The test below with the GAN on checks that the ranks stay in step.
const MICRO = fileURLToPath(new URL('../../ibq/configs/micro_test.yaml', import.meta.url));
const EQ_CONFIG = join(dir, 'eq.yaml');
const GAN_CONFIG = join(dir, 'gan.yaml');

function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [IBQ, ...args], { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

const trainArgs = (config: string, out: string, batch: number, steps: number, extra: string[] = []) => [
  'train', '--config', config, '--data', 'fashion-mnist', '--device', 'cpu', '--out', out, '--batch-size', String(batch),
  '--steps', String(steps), '--log-every', '1', '--image-every', '1000', '--checkpoint-every', '1000', ...extra,
];
const mpiTrain = (out: string, steps: number, extra: string[] = [], config = EQ_CONFIG) =>
  mpiexec(2, [process.execPath, IBQ, ...trainArgs(config, out, 2, steps, extra)], { cwd: REPO });

function metrics(out: string): Record<string, number>[] {
  return readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
}

async function checkpoint(out: string) {
  const { tensors, metadata } = await readSafetensors(join(out, 'checkpoint.safetensors'));
  return { tensors, state: JSON.parse(metadata['ibq.state']) };
}

/**
 * The generator's state of two checkpoints, compared; returns the worst |a - b| / tolerance
 * (<= 1 passes). Adam's moments (the gradients: a missing or doubled average shows here) must
 * agree to 1e-5 of their largest value. Weights must agree to 1e-5, except where a gradient is
 * mathematically zero (a bias in front of a GroupNorm): there float rounding makes the gradient
 * a tiny noise, which Adam turns into steps of about lr whatever its size, so those elements
 * (second moment below 1e-14) may differ by lr per step.
 */
interface StateNames {
  /** Prefixes of the first and second Adam moments, the EMA, and the weights (with the key of each weight's second moment). */
  moments: [string, string];
  ema: string;
  weight: (name: string) => string | null;
}
const TOKENIZER_NAMES: StateNames = {
  moments: ['optimizer.gen.exp_avg.', 'optimizer.gen.exp_avg_sq.'],
  ema: 'model_ema.',
  weight: (n) => (/^(optimizer|model_ema|loss|lecam)\./.test(n) ? null : `optimizer.gen.exp_avg_sq.${n}`),
};
const AR_NAMES: StateNames = {
  moments: ['optimizer.exp_avg.', 'optimizer.exp_avg_sq.'],
  ema: 'model_ema.',
  weight: (n) => (n.startsWith('transformer.') ? `optimizer.exp_avg_sq.${n.slice('transformer.'.length)}` : null),
};

async function stateDistance(a: string, b: string, steps: number, lr = 1e-3, names = TOKENIZER_NAMES): Promise<{ worst: number; where: string; compared: number }> {
  const [ca, cb] = [await checkpoint(a), await checkpoint(b)];
  const f = (c: typeof ca, name: string) => {
    const t = c.tensors.get(name);
    expect(t, name).toBeDefined();
    return toFloat32(t!);
  };
  let worst = 0, where = '', compared = 0;
  const check = (name: string, x: Float32Array, y: Float32Array, tol: (i: number) => number) => {
    compared++;
    for (let i = 0; i < x.length; i++) {
      const r = Math.abs(x[i] - y[i]) / tol(i);
      if (!(r <= worst)) {
        worst = r;
        where = `${name}[${i}]: ${x[i]} vs ${y[i]}`;
      }
    }
  };
  const keys = [...cb.tensors.keys()];
  for (const kind of names.moments) {
    const mine = keys.filter((n) => n.startsWith(kind) && !(kind === names.moments[0] && n.startsWith(names.moments[1])));
    const scale = Math.max(...mine.map((n) => f(cb, n).reduce((m, v) => Math.max(m, Math.abs(v)), 0)));
    for (const n of mine) check(n, f(ca, n), f(cb, n), () => 1e-5 * scale);
  }
  for (const n of keys.filter((n) => n.startsWith(names.ema))) check(n, f(ca, n), f(cb, n), () => 1e-5);
  for (const n of keys) {
    const sqKey = names.weight(n);
    const v = sqKey ? cb.tensors.get(sqKey) : undefined;
    if (!v) continue; // buffers, and what is not a weight
    const sq = toFloat32(v);
    check(n, f(ca, n), f(cb, n), (i) => (sq[i] > 1e-14 ? 1e-5 : lr * steps + 1e-5));
  }
  return { worst, where, compared };
}

function expectSameLosses(a: Record<string, number>[], b: Record<string, number>[], losses = ['total_loss', 'reconstruct_loss', 'codebook_quant_loss']) {
  expect(a.map((l) => l.step)).toEqual(b.map((l) => l.step));
  a.forEach((l, i) => {
    for (const k of losses) {
      expect(Math.abs(l[k] - b[i][k]), `step ${l.step} ${k}: ${l[k]} vs ${b[i][k]}`).toBeLessThan(1e-5 * (1 + Math.abs(b[i][k])));
    }
  });
}

/** The pid of a rank of a job started by this test (its PMI_RANK, and our bundle on its command line). */
function rankPid(rank: number): number | null {
  for (const p of readdirSync('/proc').filter((f) => /^\d+$/.test(f))) {
    try {
      if (!readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(IBQ)) continue;
      if (readFileSync(`/proc/${p}/environ`, 'utf8').split('\0').includes(`PMI_RANK=${rank}`)) return Number(p);
    } catch {
      // gone meanwhile
    }
  }
  return null;
}

async function waitFor(what: string, ok: () => boolean, ms = 120_000): Promise<void> {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const metricLines = (out: string) => (existsSync(join(out, 'metrics.jsonl')) ? readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').length : 0);

beforeAll(async () => {
  const micro = readFileSync(MICRO, 'utf8');
  writeFileSync(EQ_CONFIG, micro.replace('disc_start: 10', 'disc_start: 1000').replace('use_entropy_loss: True', 'use_entropy_loss: False'));
  writeFileSync(GAN_CONFIG, micro.replace('disc_start: 10', 'disc_start: 0'));
  if (missing) return;
  const built = await new Promise<number | null>((done) => spawn(process.execPath, [join(CLI_DIR, 'build.mjs'), '--outdir', OUT], { stdio: 'ignore' }).on('close', done));
  expect(built).toBe(0);
});
afterAll(() => {
  rmSync(OUT, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
});

describe('an MPI launch without MPI', () => {
  it('says what to install', async () => {
    if (!existsSync(IBQ)) {
      const built = await new Promise<number | null>((done) => spawn(process.execPath, [join(CLI_DIR, 'build.mjs'), '--outdir', OUT], { stdio: 'ignore' }).on('close', done));
      expect(built).toBe(0);
    }
    const r = await run(trainArgs(EQ_CONFIG, join(dir, 'nompi'), 2, 1), { PMI_SIZE: '2', PMI_RANK: '0', IBQ_MPI_ADDON: join(dir, 'no-such-addon.node') });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/this is a launch of 2 processes \(PMI_SIZE=2\), but MPI is not available: the MPI addon is not built .*apt-get install mpich libmpich-dev/);
    expect(existsSync(join(dir, 'nompi', 'checkpoint.safetensors'))).toBe(false);
  });
});

describe.skipIf(missing !== null)(`ibq train under mpiexec -n 2${missing ? ` (skipped: ${missing})` : ''}`, () => {
  const one = join(dir, 'one-rank');

  it('2 ranks x batch 2 equal 1 process x batch 4: losses and final weights', async () => {
    const two = join(dir, 'two-ranks');
    const [r1, r2] = [await run(trainArgs(EQ_CONFIG, one, 4, 6)), await mpiTrain(two, 6)];
    expect(r1.code, r1.stderr).toBe(0);
    expect(r2.code, r2.stderr + r2.stdout).toBe(0);
    expect(r2.stderr).toMatch(/data-parallel over 2 ranks/);
    expect(r2.stderr).toMatch(/batch 2 x 2 ranks x 1, 6 steps/);
    // Rank 0 alone prints progress and writes the folder.
    expect(r2.stdout.match(/finished at step 6/g)).toHaveLength(1);
    expectSameLosses(metrics(two), metrics(one));
    const d = await stateDistance(two, one, 6);
    expect(d.compared).toBeGreaterThan(100);
    expect(d.worst, d.where).toBeLessThanOrEqual(1);
    const s = (await checkpoint(two)).state;
    expect([s.step, s.ranks, s.globalBatch]).toEqual([6, 2, 4]);
  }, 300_000);

  it('resumes with another number of ranks where the run left off', async () => {
    // 2 ranks for 3 steps, then 1 process to 6; and 1 process for 3 steps, then 2 ranks to 6: both as the uninterrupted run.
    const a = join(dir, 'two-then-one');
    const first = await mpiTrain(a, 3);
    expect(first.code, first.stderr).toBe(0);
    const second = await run([...trainArgs(EQ_CONFIG, a, 4, 6), '--resume']);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toMatch(/resuming a run of 2 rank\(s\) \(global batch 4\) on 1 \(global batch 4\): continuing at image 12 of epoch 0/);
    expectSameLosses(metrics(a), metrics(one));
    const da = await stateDistance(a, one, 6);
    expect(da.worst, da.where).toBeLessThanOrEqual(1);

    const b = join(dir, 'one-then-two');
    expect((await run(trainArgs(EQ_CONFIG, b, 4, 3))).code).toBe(0);
    const resumed = await mpiTrain(b, 6, ['--resume']);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toMatch(/resumed from .* at step 3 on 2 ranks/);
    expectSameLosses(metrics(b), metrics(one));
    const d = await stateDistance(b, one, 6);
    expect(d.worst, d.where).toBeLessThanOrEqual(1);
  }, 300_000);

  it('with the GAN on, every rank ends with the same weights', async () => {
    const out = join(dir, 'gan');
    const r = await mpiTrain(out, 3, [], GAN_CONFIG);
    expect(r.code, r.stderr).toBe(0);
    expect(metrics(out).at(-1)!.disc_factor).toBe(1);
    // The run checks at its checkpoint that the ranks' weights are bitwise identical.
    expect(r.stderr).not.toMatch(/not bitwise identical/);
  }, 300_000);

  it('Ctrl-C on one rank stops both after the same step, with one checkpoint', async () => {
    const out = join(dir, 'sigint');
    const job = mpiTrain(out, 100_000);
    await waitFor('two logged steps', () => metricLines(out) >= 2);
    const pid = rankPid(1);
    expect(pid).not.toBeNull();
    process.kill(pid!, 'SIGINT');
    const r = await job;
    // Rank 1 exits 130 (SIGINT), rank 0 0; mpiexec passes on the worst.
    expect(r.code, r.stderr).toBe(130);
    const stopped = Number(/stopped by a signal to another rank at step (\d+)/.exec(r.stdout)?.[1]);
    expect(r.stdout).toMatch(/to continue: mpiexec -n 2 ibq train .* --resume/);
    expect(stopped).toBeGreaterThanOrEqual(2);
    expect((await checkpoint(out)).state.step).toBe(stopped);
    expect(metrics(out).at(-1)!.step).toBe(stopped);
  }, 300_000);

  it('Ctrl-C on mpiexec (Hydra passes it to every rank) stops the job with one checkpoint', async () => {
    const out = join(dir, 'sigint-mpiexec');
    const job = mpiTrain(out, 100_000);
    await waitFor('two logged steps', () => metricLines(out) >= 2);
    process.kill(job.pid, 'SIGINT');
    const r = await job;
    // Hydra's own exit code after it forwarded a Ctrl-C varies from run to run (130 or 0); the ranks' work does not.
    expect([0, 130], r.stdout + r.stderr).toContain(r.code);
    const stopped = Number(/stopped by SIGINT \(Ctrl-C\) at step (\d+)/.exec(r.stdout)?.[1]);
    expect(stopped).toBeGreaterThanOrEqual(2);
    expect((await checkpoint(out)).state.step).toBe(stopped);
  }, 300_000);

  it('a killed rank ends the job; the last checkpoint stays whole and resumes', async () => {
    const out = join(dir, 'killed');
    const job = mpiTrain(out, 100_000, ['--checkpoint-every', '1']);
    await waitFor('a checkpoint and three logged steps', () => existsSync(join(out, 'checkpoint.safetensors')) && metricLines(out) >= 3);
    const pid = rankPid(1);
    expect(pid).not.toBeNull();
    process.kill(pid!, 'SIGKILL');
    const r = await job;
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES[\s\S]*Killed \(signal 9\)/);
    const saved = (await checkpoint(out)).state.step;
    expect(saved).toBeGreaterThanOrEqual(1);
    const resumed = await run([...trainArgs(EQ_CONFIG, out, 4, saved + 1), '--resume']);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(new RegExp(`finished at step ${saved + 1}`));
  }, 300_000);
});

describe.skipIf(missing !== null)(`ibq train-ar under mpiexec -n 2${missing ? ` (skipped: ${missing})` : ''}`, () => {
  // The micro GPT with its dropouts off (each rank draws its masks from the same seeded stream,
  // as the reference's seed_everything does, so they cannot equal one process's over 2B rows);
  // label dropout stays on: it draws by the row's place in the global batch.
  const AR_MICRO = fileURLToPath(new URL('./fixtures/ar_micro.yaml', import.meta.url));
  const TOK_CKPT = fileURLToPath(new URL('../../ibq/test/fixtures/micro.ckpt', import.meta.url));
  const arConfig = join(dir, 'ar.yaml');
  const shards = join(dir, 'shards');

  beforeAll(async () => {
    writeFileSync(arConfig, readFileSync(AR_MICRO, 'utf8').replace(/(resid_dropout_p|ffn_dropout_p|token_drop): 0\.1/g, '$1: 0.0'));
    const images = join(dir, 'ar-images');
    for (const [c, cls] of ['a', 'b'].entries()) {
      mkdirSync(join(images, cls), { recursive: true });
      for (let i = 0; i < 6; i++) {
        const data = new Uint8Array(8 * 8 * 3).map((_, j) => (j * (i + 3) + c * 90) % 256);
        writeFileSync(join(images, cls, `${i}.png`), await encodePng({ data, height: 8, width: 8, channels: 3 }));
      }
    }
    const r = await run(['tokenize', '--config', MICRO, '--ckpt', TOK_CKPT, '--device', 'cpu', '--data', images, '--out', shards, '--flip']);
    expect(r.code, r.stderr).toBe(0);
  }, 300_000);

  it('2 ranks x batch 2 equal 1 process x batch 4: losses, AdamW moments and weights; resume 2 -> 1 rank', async () => {
    const args = (out: string, batch: number) => ['train-ar', '--config', arConfig, '--tokens', shards, '--device', 'cpu', '--out', out, '--batch-size', String(batch),
      '--steps', '6', '--log-every', '1', '--sample-every', '1000', '--ema'];
    const one = join(dir, 'ar-one'), two = join(dir, 'ar-two');
    const r1 = await run(args(one, 4));
    expect(r1.code, r1.stderr).toBe(0);
    const r2 = await mpiexec(2, [process.execPath, IBQ, ...args(two, 2)], { cwd: REPO });
    expect(r2.code, r2.stderr + r2.stdout).toBe(0);
    expect(r2.stderr).toMatch(/12 token grids, batch 2 x 2 ranks x 1, 6 steps \(3 per epoch/);
    expectSameLosses(metrics(two), metrics(one), ['loss', 'grad_norm']);
    const d = await stateDistance(two, one, 6, 1e-2, AR_NAMES);
    expect(d.compared).toBeGreaterThan(10);
    expect(d.worst, d.where).toBeLessThanOrEqual(1);
    expect((await checkpoint(two)).state).toMatchObject({ step: 6, ranks: 2, globalBatch: 4 });

    // 2 ranks for 3 steps, then one process to 6: as the uninterrupted run.
    const mixed = join(dir, 'ar-two-then-one');
    expect((await mpiexec(2, [process.execPath, IBQ, ...args(mixed, 2).map((a) => (a === '6' ? '3' : a))], { cwd: REPO })).code).toBe(0);
    const resumed = await run([...args(mixed, 4), '--resume']);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toMatch(/resuming a run of 2 rank\(s\) \(global batch 4\) on 1 \(global batch 4\)/);
    expectSameLosses(metrics(mixed), metrics(one), ['loss', 'grad_norm']);
    const dm = await stateDistance(mixed, one, 6, 1e-2, AR_NAMES);
    expect(dm.worst, dm.where).toBeLessThanOrEqual(1);
  }, 300_000);
});
