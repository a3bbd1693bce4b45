// How every long-running command stops on SIGINT (Ctrl-C) and SIGTERM (what Slurm, Kubernetes
// and most schedulers send before they kill a job): one StopController per run, passed to the
// command's loop.
//
// Why the loop must yield: Node runs a signal handler only from its event loop, and the cpu
// backend (wasm on worker threads; the main thread blocks in Atomics.wait while they work) and
// the reference backend compute synchronously: an `await` on their results resumes through
// microtasks alone, so a training loop never returns to the event loop and a handler installed
// with process.on('SIGINT') never runs. `await stop.boundary()` at each step or batch boundary
// is one setImmediate turn, so a signal is seen within one step on every backend (the webgpu
// backend yields on its own while the GPU works, and then the handler runs mid-step).
//
// Usage, in a command's loop:
//   const stop = watchStopSignals(io, 'finishing this step, then writing a checkpoint');
//   try {
//     for (...) { await stop.boundary(); if (stop.requested) break; ...one step... }
//     ...write what a resumed run needs (atomically)...
//     if (stop.requested) io.err(`${stop.reason}: ...what was done, how to resume...`);
//     return stop.exitCode();
//   } finally { stop.dispose(); }
//
// A second signal exits at once (process.exit, code as below) after saying what is on disk.
// Files written by writeFileAtomic (temporary file, fsync, rename) are whole at any instant of
// such an exit: the previous checkpoint stays until the rename replaces it with the new one.
// The exit removes this process's unfinished temporary files in the folders the command names
// (discardPartialWritesIn), so that no half-written file is left behind either.

import { readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM } from './command.js';
import type { Io } from './io.js';

export type StopSignal = 'SIGINT' | 'SIGTERM';

const STOP_SIGNALS: readonly StopSignal[] = ['SIGINT', 'SIGTERM'];

/** The shell's 128 + signal number: 130 for SIGINT, 143 for SIGTERM. */
export function signalExitCode(signal: StopSignal): number {
  return signal === 'SIGINT' ? EXIT_SIGINT : EXIT_SIGTERM;
}

export class StopController {
  /** The first signal received; undefined while none has been. */
  signal: StopSignal | undefined;
  /**
   * What the command does once stopped, said when the first signal arrives ('finishing this
   * step, then writing a checkpoint'). A command with phases sets it for each.
   */
  stopping: string;
  /** Says what is on disk, printed when a second signal makes the process exit at once. */
  onForcedExit: (() => string) | undefined;
  private readonly handler = (signal: StopSignal) => this.receive(signal);
  private readonly partialWriteFolders = new Set<string>();

  constructor(private readonly io: Io, stopping: string) {
    this.stopping = stopping;
    for (const s of STOP_SIGNALS) process.on(s, this.handler);
  }

  /** True once SIGINT or SIGTERM has arrived: finish the current step or batch, then stop. */
  get requested(): boolean {
    return this.signal !== undefined;
  }

  /** 'stopped by SIGINT (Ctrl-C)' or 'stopped by SIGTERM', for the command's closing message. */
  get reason(): string {
    if (!this.signal) return 'not stopped';
    return this.signal === 'SIGINT' ? 'stopped by SIGINT (Ctrl-C)' : `stopped by ${this.signal}`;
  }

  /**
   * Call at each step or batch boundary (not per kernel: one event-loop turn costs a few
   * microseconds). Yields to the event loop, so that a signal that arrived during the step
   * reaches its handler; then read `requested`.
   */
  async boundary(): Promise<void> {
    await nextTurn();
  }

  /** The process exit code: 130 after SIGINT, 143 after SIGTERM, 0 when no signal came. */
  exitCode(): number {
    return this.signal ? signalExitCode(this.signal) : EXIT_OK;
  }

  /** On a forced exit, remove this process's unfinished atomic writes in `folder`. */
  discardPartialWritesIn(folder: string): void {
    this.partialWriteFolders.add(folder);
  }

  /** Removes the handlers: a signal after this has Node's default effect (the process ends). */
  dispose(): void {
    for (const s of STOP_SIGNALS) process.off(s, this.handler);
  }

  /** Deletes this process's temporary files in the named folders; one note per file. */
  private removePartialWrites(): string[] {
    const notes: string[] = [];
    for (const folder of this.partialWriteFolders) {
      let files: string[];
      try {
        files = readdirSync(folder);
      } catch {
        continue;
      }
      for (const f of files) {
        const target = partialWriteTarget(f);
        if (target === undefined) continue;
        try {
          unlinkSync(join(folder, f));
          notes.push(`discarded the unfinished write of ${join(folder, target)}`);
        } catch {
          notes.push(`could not remove the unfinished write ${join(folder, f)}`);
        }
      }
    }
    return notes;
  }

  private receive(signal: StopSignal): void {
    if (this.signal) {
      const notes = [this.onForcedExit?.(), ...this.removePartialWrites()].filter(Boolean);
      this.io.err(`\n${signal} again: quitting at once${notes.map((n) => `; ${n}`).join('')}`);
      process.exit(signalExitCode(signal));
    }
    this.signal = signal;
    const again = signal === 'SIGINT' ? 'Ctrl-C again' : 'SIGTERM again';
    this.io.err(`\n${signal}: ${this.stopping} (${again} to quit at once)`);
  }
}

/**
 * The project's atomic writer (writeFileAtomic) names its temporary file
 * `.<name>.<pid>.<12 hex>.tmp` beside the target; only this process's are touched.
 * signals.test.ts fails if that naming changes (a forced exit would then leave one behind).
 */
function partialWriteTarget(file: string): string | undefined {
  const m = /^\.(.+)\.(\d+)\.[0-9a-f]{12}\.tmp$/.exec(file);
  return m && Number(m[2]) === process.pid ? m[1] : undefined;
}

/** Installs SIGINT and SIGTERM handlers for one run; dispose() the controller when the run ends. */
export function watchStopSignals(io: Io, stopping: string): StopController {
  return new StopController(io, stopping);
}
