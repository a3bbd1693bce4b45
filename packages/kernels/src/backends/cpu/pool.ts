// The worker pool: threads-1 worker_threads, each with its own instance of the wasm module
// over the one shared memory. A job is one exported function called with per-thread
// arguments; the main thread runs part 0 itself and waits on an Atomics counter.
//
// The worker is an eval'd script (below), so it loads the same way from TS sources under
// vitest and from an esbuild bundle: no file to locate.

import { availableParallelism, loadavg } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { WasmMemory, WasmModule } from './wasm.js';
import type { CpuArgs, CpuExportName, CpuExports } from './wasm-interface.js';

/** Doubles per worker slot: [active, function index, argument count, arguments...]. */
const SLOT = 32;
const MAX_ARGS = SLOT - 3;
// ctrl fields (Int32).
const GEN = 0, REMAINING = 1, QUIT = 2, FAILED = 3, SPIN = 4;
/**
 * Polls of the control word before sleeping in Atomics.wait, while the machine is not busier
 * than its cores. Kernels come back to back, and waking a thread from Atomics.wait took ~25 us
 * here against ~1.5 us for a polling one: over config S's ~1000 parallel calls per training step,
 * 2-15% of the step. On an oversubscribed machine polling takes the core from the thread being
 * waited for (a round trip went from 13 to 57-99 us beside two busy processes), so it is off
 * whenever the load average exceeds the cores (checked at most every LOAD_CHECK_MS).
 */
const SPIN_POLLS = 8000;
const LOAD_CHECK_MS = 500;

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { module, memory, ctrlSab, argsSab, id, names } = workerData;
const instance = new WebAssembly.Instance(module, { env: { memory } });
const fns = names.map((n) => instance.exports[n]);
const ctrl = new Int32Array(ctrlSab);
const args = new Float64Array(argsSab);
const base = id * ${SLOT};
parentPort.postMessage('ready');
let seen = 0;
for (;;) {
  for (let s = Atomics.load(ctrl, ${SPIN}); s > 0 && Atomics.load(ctrl, ${GEN}) === seen; s--);
  Atomics.wait(ctrl, ${GEN}, seen);
  const gen = Atomics.load(ctrl, ${GEN});
  if (gen === seen) continue;
  seen = gen;
  if (Atomics.load(ctrl, ${QUIT}) !== 0) break;
  if (args[base] === 1) {
    const n = args[base + 2];
    const a = new Array(n);
    for (let i = 0; i < n; i++) a[i] = args[base + 3 + i];
    try {
      fns[args[base + 1]](...a);
    } catch (e) {
      Atomics.store(ctrl, ${FAILED}, 1);
      parentPort.postMessage(String(e && e.stack || e));
    }
  }
  if (Atomics.sub(ctrl, ${REMAINING}, 1) === 1) Atomics.notify(ctrl, ${REMAINING});
}
`;

export class WorkerPool {
  private workers: Worker[] = [];
  private ctrl: Int32Array;
  private args: Float64Array;
  private index = new Map<CpuExportName, number>();
  private lastError = '';
  /** Polls before sleeping (0 when the machine is busy); workers read it from ctrl. */
  private spin = 0;
  private loadCheckedAt = -Infinity;

  /** `threads` counts the main thread: threads-1 workers are started. */
  constructor(readonly threads: number, private main: CpuExports, private names: readonly CpuExportName[]) {
    this.ctrl = new Int32Array(new SharedArrayBuffer(64));
    this.args = new Float64Array(new SharedArrayBuffer(8 * SLOT * Math.max(1, threads)));
    names.forEach((n, i) => this.index.set(n, i));
  }

  async start(module: WasmModule, memory: WasmMemory): Promise<void> {
    const ready: Promise<void>[] = [];
    for (let id = 1; id < this.threads; id++) {
      const w = new Worker(WORKER_SOURCE, {
        eval: true,
        workerData: { module, memory, ctrlSab: this.ctrl.buffer, argsSab: this.args.buffer, id, names: this.names },
      });
      w.unref();
      this.workers.push(w);
      ready.push(new Promise((resolve, reject) => {
        w.once('message', () => resolve());
        w.once('error', reject);
      }));
      w.on('message', (m) => { if (m !== 'ready') this.lastError = String(m); });
    }
    await Promise.all(ready);
  }

  /**
   * Calls export `fn` once per argument list, in parallel: list 0 on this thread, list i on
   * worker i. Returns when every part has run.
   */
  run<K extends CpuExportName>(fn: K, parts: readonly CpuArgs<K>[]): void {
    const f = this.main[fn] as (...a: readonly (number | boolean)[]) => unknown;
    if (parts.length === 0) return;
    if (parts.length === 1 || this.workers.length === 0) {
      for (const p of parts) f(...p);
      return;
    }
    if (parts.length > this.threads) throw new Error(`cpu: ${parts.length} parts for ${this.threads} threads`);
    this.checkLoad();
    const idx = this.index.get(fn);
    if (idx === undefined) throw new Error(`cpu: no kernel export '${fn}'`);
    for (let w = 1; w <= this.workers.length; w++) {
      const base = w * SLOT;
      const p = parts[w];
      if (!p) {
        this.args[base] = 0;
        continue;
      }
      if (p.length > MAX_ARGS) throw new Error(`cpu: too many arguments for '${fn}'`);
      this.args[base] = 1;
      this.args[base + 1] = idx;
      this.args[base + 2] = p.length;
      for (let i = 0; i < p.length; i++) this.args[base + 3 + i] = Number(p[i]);
    }
    Atomics.store(this.ctrl, FAILED, 0);
    Atomics.store(this.ctrl, REMAINING, this.workers.length);
    Atomics.add(this.ctrl, GEN, 1);
    Atomics.notify(this.ctrl, GEN);
    let mainError: unknown;
    try {
      f(...parts[0]);
    } catch (e) {
      mainError = e;
    }
    for (let s = this.spin; s > 0 && Atomics.load(this.ctrl, REMAINING) !== 0; s--);
    for (;;) {
      const r = Atomics.load(this.ctrl, REMAINING);
      if (r === 0) break;
      Atomics.wait(this.ctrl, REMAINING, r);
    }
    if (mainError) throw mainError;
    if (Atomics.load(this.ctrl, FAILED)) throw new Error(`cpu: kernel '${fn}' failed in a worker ${this.lastError}`);
  }

  /** Polling on while the load average stays within the cores (SPIN_POLLS). */
  private checkLoad(): void {
    const now = performance.now();
    if (now - this.loadCheckedAt < LOAD_CHECK_MS) return;
    this.loadCheckedAt = now;
    this.spin = loadavg()[0] <= availableParallelism() + 0.5 ? SPIN_POLLS : 0;
    Atomics.store(this.ctrl, SPIN, this.spin);
  }

  destroy(): void {
    Atomics.store(this.ctrl, QUIT, 1);
    Atomics.add(this.ctrl, GEN, 1);
    Atomics.notify(this.ctrl, GEN);
    for (const w of this.workers) void w.terminate();
    this.workers = [];
  }
}
