// Data parallelism over MPI, the one place where ranks exchange tensors: rank 0's state
// broadcast to all, gradients averaged in bounded buckets (as torch DDP, whose default
// bucket is 25 MB), scalars averaged and stop requests agreed on. Trainers call it between
// backward and the optimizer step; the rest of each step stays per-rank.

import { type Tensor, keep, noGrad, zeros } from '@ibq/tensor';
import type { TypedArray } from '@ibq/kernels';
import type { Communicator } from './comm.js';

export interface DataParallelOptions {
  /** Bytes of gradient staged per all-reduce (default 25 MiB, DDP's bucket_cap_mb). */
  bucketBytes?: number;
  /** Wire format of the gradients: f32 (default) or bf16 (half the bytes, 8 mantissa bits). */
  wire?: 'f32' | 'bf16';
}

/** One piece of a bucket: elements [offset, offset + length) of tensor `index`'s gradient. */
interface Segment {
  index: number;
  offset: number;
  length: number;
  at: number;
}

export class DataParallel {
  readonly bucketElements: number;
  readonly wire: 'f32' | 'bf16';
  private staging: Float32Array[] = [];

  constructor(readonly comm: Communicator, o: DataParallelOptions = {}) {
    const bytes = o.bucketBytes ?? 25 * 1024 * 1024;
    if (!(bytes >= 4)) throw new Error(`DataParallel: bucketBytes must be at least 4, got ${bytes}`);
    this.bucketElements = Math.floor(bytes / 4);
    this.wire = o.wire ?? 'f32';
  }

  get rank(): number {
    return this.comm.rank;
  }
  get size(): number {
    return this.comm.size;
  }
  get isRoot(): boolean {
    return this.comm.rank === 0;
  }

  /** Overwrites every tensor (weights, buffers, EMA, optimizer moments: any dtype) with rank 0's values. */
  async broadcast(tensors: readonly Tensor[]): Promise<void> {
    for (const t of tensors) {
      const info = t.info;
      const data = (await t.backend.read(info.buffer, info.offset, t.size)).slice();
      await this.comm.broadcast(data, 0);
      t.backend.write(info.buffer, data, info.offset);
    }
  }

  /**
   * Averages the gradients of `params` over the ranks, in place, bucket by bucket (reading the
   * next bucket from the device while the previous one is on the wire). Every rank must pass
   * the same parameters in the same order; one without a gradient on this rank contributes
   * zeros, and gets the average if any rank had a gradient for it.
   */
  async allReduceGradients(params: readonly Tensor[]): Promise<void> {
    if (this.comm.size === 1) return;
    const present = new Float32Array(params.map((p) => (p.grad ? 1 : 0)));
    await this.comm.allReduce(present);
    const grads: Tensor[] = [];
    params.forEach((p, i) => {
      if (present[i] === 0) return;
      if (!p.grad) p.grad = noGrad(() => keep(zeros(p.shape, { backend: p.backend })));
      if (p.grad.dtype !== 'f32') throw new Error(`DataParallel: gradient of a [${p.shape}] parameter is ${p.grad.dtype}; only f32 gradients are reduced`);
      grads.push(p.grad);
    });
    const buckets = this.plan(grads.map((g) => g.size));
    let inFlight: Promise<void> | null = null;
    let previous: { segments: Segment[]; slot: number } | null = null;
    for (let b = 0; b < buckets.length; b++) {
      const slot = b % 2;
      const segments = buckets[b];
      const length = segments.reduce((a, s) => a + s.length, 0);
      const stage = this.stagingFor(slot, length);
      // Read this bucket while the last one is being reduced.
      for (const s of segments) {
        const g = grads[s.index];
        stage.set(await this.read(g, s), s.at);
      }
      if (inFlight) {
        await inFlight;
        this.writeBack(grads, previous!.segments, previous!.slot);
      }
      inFlight = this.reduce(slot, length);
      previous = { segments, slot };
    }
    if (inFlight) {
      await inFlight;
      this.writeBack(grads, previous!.segments, previous!.slot);
    }
  }

  /** Rank 0's numbers on every rank (counters, a data position); float64 on the wire. */
  async broadcastNumbers(values: readonly number[]): Promise<number[]> {
    const data = Float64Array.from(values);
    if (this.comm.size > 1) await this.comm.broadcast(data, 0);
    return Array.from(data);
  }

  /**
   * Whether every rank holds bitwise the same values in `tensors` (weights that data
   * parallelism must keep identical): two 32-bit FNV-1a-style hashes of their words per rank, compared
   * with rank 0's. Reads every tensor back: call it at checkpoints, not every step.
   */
  async inSync(tensors: readonly Tensor[]): Promise<boolean> {
    if (this.comm.size === 1) return true;
    let h1 = 0x811c9dc5, h2 = 0x050c5d1f;
    for (const t of tensors) {
      const buf = (await t.data()).slice().buffer;
      // 32-bit words where the size allows (4x fewer rounds), bytes otherwise.
      const words = buf.byteLength % 4 === 0 ? new Uint32Array(buf) : new Uint8Array(buf);
      for (let i = 0; i < words.length; i++) {
        h1 = Math.imul(h1 ^ words[i], 0x01000193) >>> 0;
        h2 = Math.imul(h2 ^ words[words.length - 1 - i], 0x01000193) >>> 0;
      }
    }
    const mine = [h1, h2];
    const root = await this.broadcastNumbers(mine);
    return !(await this.any(root[0] !== mine[0] || root[1] !== mine[1]));
  }

  /** Averages scalars over the ranks (logged losses); float64 on the wire. */
  async average(values: readonly number[]): Promise<number[]> {
    const data = Float64Array.from(values);
    if (this.comm.size > 1) await this.comm.allReduce(data, { op: 'avg' });
    return Array.from(data);
  }

  /** True on every rank when it is true on any (a stop request, a non-finite loss). */
  async any(flag: boolean): Promise<boolean> {
    if (this.comm.size === 1) return flag;
    const data = new Int32Array([flag ? 1 : 0]);
    await this.comm.allReduce(data);
    return data[0] > 0;
  }

  /** Splits the concatenated gradients into buckets of at most bucketElements. */
  private plan(sizes: number[]): Segment[][] {
    const buckets: Segment[][] = [];
    let current: Segment[] = [];
    let room = this.bucketElements;
    sizes.forEach((size, index) => {
      let offset = 0;
      while (offset < size) {
        const length = Math.min(size - offset, room);
        current.push({ index, offset, length, at: this.bucketElements - room });
        offset += length;
        room -= length;
        if (room === 0) {
          buckets.push(current);
          current = [];
          room = this.bucketElements;
        }
      }
    });
    if (current.length) buckets.push(current);
    return buckets;
  }

  private async read(g: Tensor, s: Segment): Promise<TypedArray> {
    const info = g.info;
    return g.backend.read(info.buffer, info.offset + s.offset, s.length);
  }

  private stagingFor(slot: number, length: number): Float32Array {
    if (!this.staging[slot]) {
      this.staging[slot] = new Float32Array(this.bucketElements);
    }
    return this.staging[slot].subarray(0, length);
  }

  private reduce(slot: number, length: number): Promise<void> {
    const stage = this.staging[slot].subarray(0, length);
    return this.comm.allReduce(stage, { op: 'avg', ...(this.wire === 'bf16' ? { wire: 'bf16' as const } : {}) });
  }

  private writeBack(grads: Tensor[], segments: Segment[], slot: number): void {
    const stage = this.staging[slot];
    for (const s of segments) {
      const g = grads[s.index];
      const info = g.info;
      g.backend.write(info.buffer, stage.subarray(s.at, s.at + s.length), info.offset + s.offset);
    }
  }
}
