// Positional reads from a file (or bytes in memory), so that a checkpoint or archive is never
// read whole into the heap.

import { open, type FileHandle } from 'node:fs/promises';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { CheckpointError } from './errors.js';

/** Bytes read by position: a file on disk or bytes in memory. Readers (zip, npz) take either. */
export interface RandomAccess {
  readonly path: string;
  readonly size: number;
  checkRange(pos: number, length: number, what: string, key?: string): void;
  readInto(target: Uint8Array, pos: number, what?: string, key?: string): Promise<void>;
  read(pos: number, length: number, what?: string, key?: string): Promise<Uint8Array>;
  readIntoSync(target: Uint8Array, pos: number, what?: string, key?: string): void;
  readSync(pos: number, length: number, what?: string, key?: string): Uint8Array;
  close(): Promise<void>;
  closeSync(): void;
}

function checkRangeOf(path: string, size: number, pos: number, length: number, what: string, key?: string): void {
  if (!Number.isSafeInteger(pos) || !Number.isSafeInteger(length) || pos < 0 || length < 0 || pos + length > size) {
    throw new CheckpointError(
      path,
      `${what}: byte range [${pos}, ${pos + length}) is outside the file (${size} bytes); the file is truncated or corrupt`,
      key,
    );
  }
}

/** Bytes in memory behind the RandomAccess interface (in-memory archives, tests). */
export class MemoryFile implements RandomAccess {
  constructor(
    readonly bytes: Uint8Array,
    readonly path = '<buffer>',
  ) {}
  get size(): number {
    return this.bytes.byteLength;
  }
  checkRange(pos: number, length: number, what: string, key?: string): void {
    checkRangeOf(this.path, this.size, pos, length, what, key);
  }
  readSync(pos: number, length: number, what = 'read', key?: string): Uint8Array {
    this.checkRange(pos, length, what, key);
    return this.bytes.subarray(pos, pos + length);
  }
  readIntoSync(target: Uint8Array, pos: number, what = 'read', key?: string): void {
    target.set(this.readSync(pos, target.byteLength, what, key));
  }
  async read(pos: number, length: number, what = 'read', key?: string): Promise<Uint8Array> {
    return this.readSync(pos, length, what, key).slice();
  }
  async readInto(target: Uint8Array, pos: number, what = 'read', key?: string): Promise<void> {
    this.readIntoSync(target, pos, what, key);
  }
  async close(): Promise<void> {}
  closeSync(): void {}
}

/** A read-only file read by position. Async reads for bulk data; sync reads for parsers. */
export class RandomAccessFile implements RandomAccess {
  private constructor(
    readonly path: string,
    private handle: FileHandle | undefined,
    readonly size: number,
    private syncFd?: number,
  ) {}

  private get fd(): number {
    if (this.syncFd !== undefined) return this.syncFd;
    return this.fh.fd;
  }

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

  /** Opens a file with a blocking call (for synchronous readers such as NpzFile). */
  static openSync(path: string): RandomAccessFile {
    const fd = openSync(path, 'r');
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new CheckpointError(path, 'not a regular file');
      return new RandomAccessFile(path, undefined, st.size, fd);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  private get fh(): FileHandle {
    if (!this.handle) throw new CheckpointError(this.path, 'file is closed');
    return this.handle;
  }

  /** Throws unless [pos, pos + length) lies within the file. */
  checkRange(pos: number, length: number, what: string, key?: string): void {
    checkRangeOf(this.path, this.size, pos, length, what, key);
  }

  /** Fill `target` from file position `pos` (loops over short reads). */
  async readInto(target: Uint8Array, pos: number, what = 'read', key?: string): Promise<void> {
    if (this.syncFd !== undefined) return this.readIntoSync(target, pos, what, key);
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
      const n = readSync(this.fd, target, done, len, pos + done);
      if (n === 0) throw new CheckpointError(this.path, `${what}: unexpected end of file at byte ${pos + done}`, key);
      done += n;
    }
  }

  readSync(pos: number, length: number, what = 'read', key?: string): Uint8Array {
    this.checkRange(pos, length, what, key);
    const out = new Uint8Array(length);
    this.readIntoSync(out, pos, what, key);
    return out;
  }

  async close(): Promise<void> {
    const h = this.handle;
    this.handle = undefined;
    if (h) await h.close();
    this.closeSync();
  }

  closeSync(): void {
    if (this.syncFd !== undefined) closeSync(this.syncFd);
    this.syncFd = undefined;
    // An async handle closes only through close(); drop it so later reads fail clearly.
    if (this.handle) {
      const h = this.handle;
      this.handle = undefined;
      void h.close();
    }
  }
}
