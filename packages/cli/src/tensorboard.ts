// TensorBoard event files (`tensorboard --logdir runs/` shows the curves): TFRecord framing
// (length, masked CRC32C) around hand-encoded `Event` protobufs with scalar summaries.

import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** CRC-32C (Castagnoli), as TFRecord uses. */
export function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC32C_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function maskedCrc(bytes: Uint8Array): number {
  const c = crc32c(bytes);
  return (((c >>> 15) | (c << 17)) + 0xa282ead8) >>> 0;
}

/** Minimal protobuf writer: the wire types an Event needs. */
class Proto {
  private parts: number[] = [];
  private varint(v: number | bigint): void {
    let x = BigInt(v);
    if (x < 0n) x += 1n << 64n;
    do {
      let b = Number(x & 0x7fn);
      x >>= 7n;
      if (x > 0n) b |= 0x80;
      this.parts.push(b);
    } while (x > 0n);
  }
  private key(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }
  double(field: number, v: number): this {
    this.key(field, 1);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, true);
    this.parts.push(...b);
    return this;
  }
  float(field: number, v: number): this {
    this.key(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.parts.push(...b);
    return this;
  }
  int64(field: number, v: number): this {
    this.key(field, 0);
    this.varint(v);
    return this;
  }
  bytes(field: number, v: Uint8Array | string): this {
    const b = typeof v === 'string' ? new TextEncoder().encode(v) : v;
    this.key(field, 2);
    this.varint(b.length);
    this.parts.push(...b);
    return this;
  }
  done(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

/** Appends scalar events to one events.out.tfevents.* file in `logdir`. */
export class TensorBoardWriter {
  readonly path: string;
  private fd: number;

  constructor(logdir: string, now = Date.now()) {
    this.path = join(logdir, `events.out.tfevents.${Math.floor(now / 1000)}.${hostname()}`);
    this.fd = openSync(this.path, 'a');
    // The first record names the format version, as TensorFlow's writers do.
    this.record(new Proto().double(1, now / 1000).bytes(3, 'brain.Event:2').done());
  }

  /** Logs scalars (tag -> value) at a step. Non-finite values are written as they are. */
  scalars(step: number, values: Record<string, number>, now = Date.now()): void {
    const summary = new Proto();
    for (const [tag, v] of Object.entries(values)) summary.bytes(1, new Proto().bytes(1, tag).float(2, v).done());
    this.record(new Proto().double(1, now / 1000).int64(2, step).bytes(5, summary.done()).done());
  }

  private record(data: Uint8Array): void {
    const head = new Uint8Array(12);
    const dv = new DataView(head.buffer);
    dv.setBigUint64(0, BigInt(data.length), true);
    dv.setUint32(8, maskedCrc(head.subarray(0, 8)), true);
    const tail = new Uint8Array(4);
    new DataView(tail.buffer).setUint32(0, maskedCrc(data), true);
    writeSync(this.fd, head);
    writeSync(this.fd, data);
    writeSync(this.fd, tail);
  }

  flush(): void {
    fsyncSync(this.fd);
  }

  close(): void {
    if (this.fd < 0) return;
    fsyncSync(this.fd);
    closeSync(this.fd);
    this.fd = -1;
  }
}
