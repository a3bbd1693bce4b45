// A pool of decode workers (worker_threads): each reads an image file with sharp, applies
// the transform and converts to float32, off the training thread; results come back as
// transferred Float32Arrays.
//
// The worker is an eval'd script built from the source text of pixels.ts' functions, so it
// runs the very same code as the main thread, from TS sources under vitest and from an esbuild
// bundle alike (no worker file to locate; the kernels package's cpu pool does the same).

import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import sharp from 'sharp';
import { ImageDecodeError } from './errors.js';
import {
  applyTransform, centerCropOffset, cmykToRgb, cropHWC, decodeWithSharp, randomCropOffset, resizeBilinearCv,
  resizeBilinearCvWindow, roundHalfEven, runFileJob, smallestMaxSizeShape, toFloat, type FileJob,
} from './pixels.js';

/** The functions the worker needs, in dependency-free order. */
const WORKER_FUNCTIONS: ReadonlyArray<(...args: any[]) => unknown> = [
  roundHalfEven, smallestMaxSizeShape, resizeBilinearCvWindow, resizeBilinearCv, centerCropOffset, randomCropOffset, cropHWC, toFloat,
  applyTransform, cmykToRgb, decodeWithSharp, runFileJob,
];

/** The worker script (exported for tests). */
export function workerSource(): string {
  return `'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const sharp = require(workerData.sharpPath);
const { readFile } = require('node:fs/promises');
${WORKER_FUNCTIONS.map((f) => f.toString()).join('\n\n')}
const runJob = ${runFileJob.name};
parentPort.on('message', (msg) => {
  runJob(sharp, readFile, msg.job).then(
    (r) => parentPort.postMessage({ id: msg.id, ok: true, data: r.data, height: r.height, width: r.width }, [r.data.buffer]),
    (e) => parentPort.postMessage({ id: msg.id, ok: false, error: String((e && e.message) || e) }),
  );
});
`;
}

/** Default pool size: one worker per spare core, at most 2 (the loader shares the machine with training). */
export function defaultWorkerCount(): number {
  return Math.max(1, Math.min(2, availableParallelism() - 1));
}

export interface JobResult {
  data: Float32Array;
  height: number;
  width: number;
}

interface Pending {
  resolve: (r: JobResult) => void;
  reject: (e: Error) => void;
  path: string;
}

interface Slot {
  worker: Worker;
  inFlight: number;
  pending: Map<number, Pending>;
  dead: Error | null;
}

/**
 * Decode workers. `run(job)` resolves with the float image, rejects with ImageDecodeError
 * when the file cannot be decoded, and with a plain Error if a worker died.
 */
export class DecodePool {
  private slots: Slot[] = [];
  private nextId = 1;
  private closed = false;

  /** `size` workers; each runs the jobs it is given concurrently (sharp is asynchronous). */
  constructor(readonly size = defaultWorkerCount()) {
    if (!(Number.isInteger(size) && size >= 1)) throw new Error(`DecodePool: size must be >= 1, got ${size}`);
    // sharp must be loaded by the main thread before workers load it (sharp's documentation:
    // keeps its shared libraries in memory until the workers are done).
    if (typeof sharp !== 'function') throw new Error('DecodePool: sharp did not load');
    const sharpPath = createRequire(import.meta.url).resolve('sharp');
    const source = workerSource();
    for (let i = 0; i < size; i++) {
      const worker = new Worker(source, { eval: true, workerData: { sharpPath } });
      worker.unref();
      const slot: Slot = { worker, inFlight: 0, pending: new Map(), dead: null };
      worker.on('message', (m: { id: number; ok: boolean; data?: Float32Array; height?: number; width?: number; error?: string }) => {
        const p = slot.pending.get(m.id);
        if (!p) return;
        slot.pending.delete(m.id);
        slot.inFlight--;
        if (slot.inFlight === 0) worker.unref();
        if (m.ok) p.resolve({ data: m.data!, height: m.height!, width: m.width! });
        else p.reject(new ImageDecodeError(p.path, m.error ?? 'unknown error'));
      });
      const fail = (e: Error): void => {
        slot.dead = e;
        for (const p of slot.pending.values()) p.reject(e);
        slot.pending.clear();
        slot.inFlight = 0;
      };
      worker.on('error', (e) => fail(new Error(`decode worker failed: ${e.message}`, { cause: e })));
      worker.on('exit', (code) => {
        if (!this.closed) fail(new Error(`decode worker exited with code ${code}`));
      });
      this.slots.push(slot);
    }
  }

  /** Runs one job on the least busy live worker. */
  run(job: FileJob): Promise<JobResult> {
    if (this.closed) return Promise.reject(new Error('DecodePool: closed'));
    const live = this.slots.filter((s) => !s.dead);
    if (live.length === 0) return Promise.reject(this.slots[0].dead ?? new Error('DecodePool: no workers'));
    let slot = live[0];
    for (const s of live) if (s.inFlight < slot.inFlight) slot = s;
    const id = this.nextId++;
    return new Promise<JobResult>((resolve, reject) => {
      slot.pending.set(id, { resolve, reject, path: job.path });
      if (slot.inFlight === 0) slot.worker.ref();
      slot.inFlight++;
      slot.worker.postMessage({ id, job });
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = new Error('DecodePool: closed');
    for (const s of this.slots) {
      for (const p of s.pending.values()) p.reject(err);
      s.pending.clear();
    }
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
