// Test helpers for multi-process runs: whether mpiexec is here (in CI it must be: setup installs
// MPICH), and running a command under `mpiexec -n N` with a time limit.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { addonPath } from '../src/comm.js';

/** null when MPI tests can run, else why not. In CI (CI set) a missing MPI is a failure, not a skip. */
export function mpiMissing(): string | null {
  const mpiexec = spawnSync('mpiexec', ['--version'], { stdio: 'ignore' }).status === 0;
  const addon = existsSync(addonPath());
  if (mpiexec && addon) return null;
  const why = !mpiexec ? 'mpiexec is not installed' : `the MPI addon is not built (${addonPath()})`;
  if (process.env.CI) throw new Error(`${why}, but CI must test MPI (npm run setup installs MPICH and builds the addon)`);
  return why;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `mpiexec -n ranks cmd...`; `during` may act on the job while it runs (signals). */
export function mpiexec(ranks: number, args: string[], o: { env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string } = {}): Promise<RunResult> & { pid: number } {
  const child = spawn('mpiexec', ['-n', String(ranks), ...args], {
    env: { ...process.env, ...o.env }, cwd: o.cwd, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '', stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 240_000);
  const done = new Promise<RunResult>((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  }) as Promise<RunResult> & { pid: number };
  done.pid = child.pid!;
  return done;
}
