// Positional reads from a file, so that a checkpoint is never read whole into the heap.

import { open, type FileHandle } from 'node:fs/promises';
import { readSync } from 'node:fs';
import { CheckpointError } from './errors.js';

/** A read-only file read by position. Async reads for bulk data; sync reads for parsers. */
export class RandomAccessFile {
  private constructor(
    readonly path: string,
    private handle: FileHandle | undefined,
    readonly size: number,
  ) {}

  static async open(path: string): Promise<RandomAccessFile> {
    const fh = await open(path, 'r');
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new CheckpointError(path, 'not a regular file');
      return new RandomAccessFile(path, fh, st.size);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  private get fh(): FileHandle {
    if (!this.handle) throw new CheckpointError(this.path, 'file is closed');
    return this.handle;
  }

  /** Throws unless [pos, pos + length) lies within the file. */
  checkRange(pos: number, length: number, what: string, key?: string): void {
    if (!Number.isSafeInteger(pos) || !Number.isSafeInteger(length) || pos < 0 || length < 0 || pos + length > this.size) {
      throw new CheckpointError(
        this.path,
        `${what}: byte range [${pos}, ${pos + length}) is outside the file (${this.size} bytes); the file is truncated or corrupt`,
        key,
      );
    }
  }

  /** Fill `target` from file position `pos` (loops over short reads). */
  async readInto(target: Uint8Array, pos: number, what = 'read', key?: string): Promise<void> {
    this.checkRange(pos, target.byteLength, what, key);
    let done = 0;
    // Reads of at most 1 GiB: large single reads fail with EINVAL on some platforms.
    while (done < target.byteLength) {
      const len = Math.min(target.byteLength - done, 1 << 30);
      const { bytesRead } = await this.fh.read(target, done, len, pos + done);
      if (bytesRead === 0) throw new CheckpointError(this.path, `${what}: unexpected end of file at byte ${pos + done}`, key);
      done += bytesRead;
    }
  }

  async read(pos: number, length: number, what = 'read', key?: string): Promise<Uint8Array> {
    this.checkRange(pos, length, what, key);
    const out = new Uint8Array(length);
    await this.readInto(out, pos, what, key);
    return out;
  }

  /** Synchronous variant of `readInto`, for parsers that pull bytes one opcode at a time. */
  readIntoSync(target: Uint8Array, pos: number, what = 'read', key?: string): void {
    this.checkRange(pos, target.byteLength, what, key);
    let done = 0;
    while (done < target.byteLength) {
      const len = Math.min(target.byteLength - done, 1 << 30);
      const n = readSync(this.fh.fd, target, done, len, pos + done);
      if (n === 0) throw new CheckpointError(this.path, `${what}: unexpected end of file at byte ${pos + done}`, key);
      done += n;
    }
  }

  async close(): Promise<void> {
    const h = this.handle;
    this.handle = undefined;
    if (h) await h.close();
  }
}
