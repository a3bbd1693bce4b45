// SIGINT and SIGTERM (src/stop.ts) as a person at a terminal or a batch scheduler meets them:
// the built `ibq` (packages/cli/dist/ibq.mjs, made by `npm run build`) in a child process on
// Fashion-MNIST, a real signal once progress shows on disk, then the exit code, the time to
// exit, the checkpoint, and `--resume` from it. A second signal is sent the moment the
// checkpoint's temporary file appears, so that it lands during the write.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, statSync, watch } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { FASHION_MNIST_DIR } from '@ibq/data';
import { testBackends } from '@ibq/kernels/harness';
import { readSafetensors } from '@ibq/tensor';

const REPO = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
const BIN = join(REPO, 'packages/cli/dist/ibq.mjs');
const CONFIG = join(REPO, 'packages/ibq/configs/micro_test.yaml');
const dir = mkdtempSync(join(tmpdir(), 'ibq-cli-signals-'));
// From the signal to the exit: one step and a checkpoint of the micro model take well under a
// second on every backend; the margin is for a loaded machine.
const EXIT_BOUND_MS = 20_000;

// The tests run what `npm run build` made; a bundle older than the CLI's sources would test stale code.
const sources = readdirSync(join(REPO, 'packages/cli/src'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
const stale = sources.find((f) => statSync(join(REPO, 'packages/cli/src', f)).mtimeMs > statSync(BIN).mtimeMs);
if (stale) throw new Error(`${BIN} is older than packages/cli/src/${stale}: run 'npm run build' first`);

// Which backends this machine has (webgpu may be absent; IBQ_REQUIRE_WEBGPU=1 makes that an error).
const probed = await testBackends();
const available = new Set(probed.backends.map((b) => b.name));
probed.destroyAll();

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  at: number;
}

class Ibq {
  readonly proc: ChildProcess;
  stdout = '';
  stderr = '';
  exit: Exit | undefined;
  readonly exited: Promise<Exit>;
  constructor(args: string[]) {
    this.proc = spawn(process.execPath, [BIN, ...args], { cwd: REPO, env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp/xdg' }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc.stdout!.on('data', (d) => (this.stdout += d));
    this.proc.stderr!.on('data', (d) => (this.stderr += d));
    this.exited = new Promise((done) => this.proc.on('exit', (code, signal) => done((this.exit = { code, signal, at: Date.now() }))));
  }

  /** Polls `ready` until it holds; fails if the process exits first or `ms` pass. */
  async until(ready: () => boolean, what: string, ms = 180_000): Promise<void> {
    const t0 = Date.now();
    while (!ready()) {
      if (this.exit) throw new Error(`ibq exited (${this.exit.code ?? this.exit.signal}) before ${what}\n${this.stderr}`);
      if (Date.now() - t0 > ms) throw new Error(`no ${what} after ${ms} ms\n${this.stderr}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Sends `signal` and waits for the exit; a process still running after EXIT_BOUND_MS is killed and reported. */
  async stopWith(signal: NodeJS.Signals): Promise<Exit & { ms: number }> {
    const sent = Date.now();
    this.proc.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<null>((r) => (timer = setTimeout(() => r(null), EXIT_BOUND_MS)));
    const exit = await Promise.race([this.exited, late]);
    clearTimeout(timer);
    if (!exit) {
      this.proc.kill('SIGKILL');
      await this.exited;
      throw new Error(`ibq was still running ${EXIT_BOUND_MS} ms after ${signal}\n${this.stderr}`);
    }
    return { ...exit, ms: exit.at - sent };
  }
}

const trainArgs = (out: string, device: string, ...more: string[]) => [
  'train', '--config', CONFIG, '--data', 'fashion-mnist', '--device', device, '--out', out,
  '--batch-size', '2', '--log-every', '1', '--image-every', '100000', ...more,
];

/** The steps logged in metrics.jsonl so far (complete lines only). */
function loggedSteps(out: string): number[] {
  const file = join(out, 'metrics.jsonl');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter((l) => l.endsWith('}')).map((l) => JSON.parse(l).step as number);
}

/** The step a training checkpoint holds; reading it whole proves it is complete. */
async function checkpointStep(out: string): Promise<number> {
  const { tensors, metadata } = await readSafetensors(join(out, 'checkpoint.safetensors'));
  expect(tensors.size).toBeGreaterThan(10);
  return JSON.parse(metadata['ibq.state']).step;
}

const partialWrites = (out: string) => readdirSync(out).filter((f) => f.endsWith('.tmp'));

describe.skipIf(!existsSync(FASHION_MNIST_DIR))('ibq train stops on SIGINT and SIGTERM (needs Debian dataset-fashion-mnist)', () => {
  describe.each(['cpu', 'reference', 'webgpu'])('on %s', (device) => {
    it.skipIf(!available.has(device))('SIGINT: checkpoint, exit 130; resume; SIGTERM: checkpoint, exit 143; resume to the end', async () => {
      const out = join(dir, `run-${device}`);
      const args = trainArgs(out, device, '--steps', '100000', '--checkpoint-every', '100000');

      // A fresh run, stopped by Ctrl-C after a few steps: only the stop writes a checkpoint.
      const first = new Ibq(args);
      await first.until(() => loggedSteps(out).length >= 3, 'three steps logged');
      const loggedAtSignal = loggedSteps(out).length;
      const stopped = await first.stopWith('SIGINT');
      expect(stopped.code, first.stderr).toBe(130);
      expect(first.stderr).toContain('SIGINT: finishing this step, then writing a checkpoint (Ctrl-C again to quit at once)');
      const s1 = Number(/stopped by SIGINT \(Ctrl-C\) at step (\d+) after \d+ s; checkpoint .*checkpoint\.safetensors/.exec(first.stdout)?.[1]);
      // Within one step of the signal (one more may have ended between reading the log and the kill).
      expect(s1).toBeGreaterThanOrEqual(loggedAtSignal);
      expect(s1).toBeLessThanOrEqual(loggedAtSignal + 2);
      expect(await checkpointStep(out)).toBe(s1);
      expect(first.stdout).toContain(`to continue: ibq train --config ${CONFIG} --data fashion-mnist --device ${device} --out ${out}`);
      expect(first.stdout).toMatch(/ --resume\n$/);

      // Resumed, then stopped by SIGTERM as a scheduler would.
      const second = new Ibq([...args, '--resume']);
      await second.until(() => second.stderr.includes(`at step ${s1}`) && loggedSteps(out).length >= s1 + 2, 'two steps after resuming');
      expect(second.stderr).toMatch(new RegExp(`resumed from .*checkpoint\\.safetensors at step ${s1}\\n`));
      const terminated = await second.stopWith('SIGTERM');
      expect(terminated.code, second.stderr).toBe(143);
      expect(second.stderr).toContain('SIGTERM: finishing this step, then writing a checkpoint (SIGTERM again to quit at once)');
      const s2 = Number(/stopped by SIGTERM at step (\d+)/.exec(second.stdout)?.[1]);
      expect(s2).toBeGreaterThan(s1 + 1);
      expect(await checkpointStep(out)).toBe(s2);

      // Resumed to a finish: exit 0, and the log has every step exactly once.
      const third = new Ibq([...trainArgs(out, device, '--steps', String(s2 + 1), '--checkpoint-every', '100000'), '--resume']);
      const done = await third.exited;
      expect(done.code, third.stderr).toBe(0);
      expect(third.stderr).toMatch(new RegExp(`resumed from .* at step ${s2}\\n`));
      expect(third.stdout).toMatch(new RegExp(`finished at step ${s2 + 1} after`));
      expect(loggedSteps(out)).toEqual(Array.from({ length: s2 + 1 }, (_, i) => i + 1));
      expect(partialWrites(out)).toEqual([]);
      console.log(`${device}: exit ${stopped.ms} ms after SIGINT, ${terminated.ms} ms after SIGTERM (under load)`);
    }, 600_000);
  });

  it('a second SIGINT during the checkpoint write exits at once and leaves the previous checkpoint whole', async () => {
    // The second signal is sent when the checkpoint's temporary file appears; when the write
    // still wins the race (it finishes first), the attempt proves less, so it is tried again.
    let interruptedWrites = 0;
    for (let attempt = 0; attempt < 3 && interruptedWrites === 0; attempt++) {
      const out = join(dir, `second-signal-${attempt}`);
      const run = new Ibq(trainArgs(out, 'cpu', '--steps', '100000', '--checkpoint-every', '2'));
      await run.until(() => loggedSteps(out).length >= 3 && existsSync(join(out, 'checkpoint.safetensors')), 'a periodic checkpoint');
      let firstSent = false;
      let secondSent = false;
      const watcher = watch(out, (_event, name) => {
        if (firstSent && !secondSent && name?.endsWith('.tmp')) {
          secondSent = true;
          run.proc.kill('SIGINT');
        }
      });
      firstSent = true;
      const exit = await run.stopWith('SIGINT').finally(() => watcher.close());
      expect(exit.code, run.stderr).toBe(130);
      expect(secondSent).toBe(true);
      const forced = /SIGINT again: quitting at once; (\S+) holds step (\d+) \(continue with --resume\)(; discarded the unfinished write of \S+)?/.exec(run.stderr);
      expect(forced, run.stderr).not.toBeNull();
      const step = Number(forced![2]);
      if (forced![3]) interruptedWrites++;
      // No stopped-run summary: the process left before the loop could end.
      expect(run.stdout).not.toContain('stopped by');
      expect(partialWrites(out)).toEqual([]);
      expect(await checkpointStep(out)).toBe(step);
      const resumed = new Ibq([...trainArgs(out, 'cpu', '--steps', String(step + 1), '--checkpoint-every', '100000'), '--resume']);
      expect((await resumed.exited).code, resumed.stderr).toBe(0);
      expect(resumed.stderr).toMatch(new RegExp(`resumed from .* at step ${step}\\n`));
    }
    expect(interruptedWrites, 'the second signal never landed during a checkpoint write').toBeGreaterThan(0);
  }, 600_000);
});

describe.skipIf(!existsSync(FASHION_MNIST_DIR))('ibq demo stops on a signal (needs Debian dataset-fashion-mnist)', () => {
  it('SIGTERM during training: checkpoint, evaluation skipped, exit 143', async () => {
    const out = join(dir, 'demo-train');
    const run = new Ibq(['demo', '--out', out, '--device', 'cpu', '--steps', '100000', '--batch-size', '4', '--test-images', '40']);
    await run.until(() => loggedSteps(out).length >= 1, 'a logged step');
    const exit = await run.stopWith('SIGTERM');
    expect(exit.code, run.stderr).toBe(143);
    expect(run.stdout).toMatch(/trained \d+ steps .*checkpoint .*checkpoint\.safetensors\nstopped by SIGTERM: the test-set evaluation was skipped\n/);
    expect(await checkpointStep(out)).toBeGreaterThanOrEqual(10);
    expect(existsSync(join(out, 'report.json'))).toBe(false);
  }, 300_000);

  it('SIGINT during the evaluation: stops after the batch, writes no report, exit 130', async () => {
    const out = join(dir, 'demo-eval');
    const run = new Ibq(['demo', '--out', out, '--device', 'cpu', '--steps', '1', '--batch-size', '4']);
    await run.until(() => /trained 1 steps/.test(run.stdout), 'the end of training');
    const exit = await run.stopWith('SIGINT');
    expect(exit.code, run.stderr).toBe(130);
    expect(run.stderr).toContain('SIGINT: finishing this batch, then stopping the evaluation');
    const m = /stopped by SIGINT \(Ctrl-C\) after reconstructing (\d+) of 10000 test images: no report written; checkpoint /.exec(run.stdout);
    expect(m, run.stdout).not.toBeNull();
    expect(Number(m![1])).toBeLessThan(10000);
    expect(existsSync(join(out, 'report.json'))).toBe(false);
    expect(statSync(join(out, 'checkpoint.safetensors')).size).toBeGreaterThan(0);
  }, 300_000);
});
