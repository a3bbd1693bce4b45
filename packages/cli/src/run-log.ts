// The step bookkeeping both training commands share (`ibq train`: training.ts; `ibq train-ar`:
// ar-training.ts): time and rate since this session's start, the ETA under --steps and
// --seconds, metrics.jsonl and TensorBoard lines every --log-every steps (rank 0 alone writes),
// and the end of a step: the limit reached, or a stop asked for on any rank.

import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DataParallel } from '@ibq/mpi';
import type { StopController } from './stop.js';
import { TensorBoardWriter } from './tensorboard.js';

export interface RunLimits {
  steps: number;
  /** Wall-clock seconds of this session, if limited. */
  seconds?: number;
  logEvery: number;
}

export class RunLog {
  readonly metricsFile: string;
  /** Rank 0's TensorBoard writer (null on the other ranks). */
  readonly tb: TensorBoardWriter | null;
  private readonly t0 = Date.now();

  /** `startStep`: the trainer's step when this session began (after a resume, the checkpoint's). */
  constructor(out: string, private readonly limits: RunLimits, private readonly startStep: number, private readonly root: boolean) {
    this.metricsFile = join(out, 'metrics.jsonl');
    this.tb = root ? new TensorBoardWriter(out) : null;
  }

  /** Seconds since this session began. */
  seconds(): number {
    return (Date.now() - this.t0) / 1000;
  }

  /** After step `done`: seconds so far, steps/s this session, and seconds left to the nearer limit. */
  progress(done: number): { secs: number; rate: number; eta: number } {
    const secs = this.seconds();
    const rate = (done - this.startStep) / Math.max(secs, 1e-9);
    const { steps, seconds } = this.limits;
    const left = Math.min(steps - done, seconds !== undefined ? (seconds - secs) * rate : Infinity);
    return { secs, rate, eta: Math.max(0, left / Math.max(rate, 1e-9)) };
  }

  /** The step's scalars into metrics.jsonl and TensorBoard (as train/<name>), every logEvery steps and at the last. */
  record(done: number, epoch: number, secs: number, scalars: Record<string, number>): void {
    if (!this.root || (done % this.limits.logEvery !== 0 && done !== this.limits.steps)) return;
    appendFileSync(this.metricsFile, `${JSON.stringify({ step: done, epoch, time: secs, ...scalars })}\n`);
    this.tb!.scalars(done, Object.fromEntries(Object.entries(scalars).map(([k, v]) => [`train/${k}`, v])));
  }

  /** --steps or --seconds reached after step `done`. */
  finished(done: number, secs: number): boolean {
    return done >= this.limits.steps || (this.limits.seconds !== undefined && secs >= this.limits.seconds);
  }

  close(): void {
    this.tb?.close();
  }
}

/**
 * After a step: one turn of the event loop (so a signal's handler runs), then whether a stop was
 * asked for on any rank, so that every rank stops after this same step.
 */
export async function stopAfterStep(stop: StopController, dp: DataParallel | null): Promise<boolean> {
  await stop.boundary();
  return dp ? dp.any(stop.requested) : stop.requested;
}
