// The project's one atomic writer: a temporary file in the target's folder, written
// sequentially (or patched in place), fsynced, renamed over the target, and the folder fsynced
// so the rename itself survives a crash. A reader never sees half a file; a failed or aborted
// write leaves any previous file untouched and removes the temporary one.

import { randomBytes } from 'node:crypto';
import {
  close, closeSync, fsync, fsyncSync, mkdirSync, openSync, rename, renameSync, unlinkSync, write, writeSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';

function writeAsync(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
  return new Promise((ok, fail) => write(fd, buf, off, len, pos, (e, n) => (e ? fail(e) : ok(n))));
}
const fsyncAsync = promisify(fsync);
const closeAsync = promisify(close);
const renameAsync = promisify(rename);

/** Largest single write: some platforms fail larger ones with EINVAL. */
const MAX_WRITE = 1 << 30;

export interface AtomicOptions {
  /** Create missing parent folders first (default false: a missing folder is an ENOENT error). */
  mkdir?: boolean;
}

/** Content for `writeFileAtomic`: bytes, text (UTF-8), or a function that streams the body. */
export type AtomicContent = Uint8Array | string | ((out: AtomicFile) => Promise<void>);

/**
 * A file being written atomically. `write`/`writeSync` append at `position`; `writeAtSync`
 * patches bytes already written (a header whose CRC or size is known only at the end).
 * Nothing is visible at `path` until `commit`; `abort` drops the temporary file.
 */
export class AtomicFile {
  /** Bytes appended so far (the next sequential write goes here). */
  position = 0;
  private fd: number | null;

  private constructor(
    readonly path: string,
    readonly tmpPath: string,
    fd: number,
  ) {
    this.fd = fd;
  }

  /** Starts writing `path` (the temporary file sits beside it, so the rename never crosses file systems). */
  static open(path: string, options: AtomicOptions = {}): AtomicFile {
    const full = resolve(path);
    const dir = dirname(full);
    if (options.mkdir) mkdirSync(dir, { recursive: true });
    const tmp = join(dir, `.${basename(full)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
    return new AtomicFile(full, tmp, openSync(tmp, 'wx'));
  }

  private get handle(): number {
    if (this.fd === null) throw new Error(`${this.path}: atomic write already finished`);
    return this.fd;
  }

  get isOpen(): boolean {
    return this.fd !== null;
  }

  /** Appends bytes, blocking (loops over short writes). */
  writeSync(bytes: Uint8Array): void {
    this.writeAtSync(bytes, this.position);
    this.position += bytes.byteLength;
  }

  /** Appends bytes without blocking the event loop (loops over short writes). */
  async write(bytes: Uint8Array): Promise<void> {
    const fd = this.handle;
    let done = 0;
    while (done < bytes.byteLength) {
      const n = await writeAsync(fd, bytes, done, Math.min(bytes.byteLength - done, MAX_WRITE), this.position + done);
      if (n <= 0) throw new Error(`${this.path}: write made no progress`);
      done += n;
    }
    this.position += bytes.byteLength;
  }

  /** Writes bytes at an absolute position (does not move `position`). */
  writeAtSync(bytes: Uint8Array, at: number): void {
    const fd = this.handle;
    let done = 0;
    while (done < bytes.byteLength) {
      const n = writeSync(fd, bytes, done, Math.min(bytes.byteLength - done, MAX_WRITE), at + done);
      if (n <= 0) throw new Error(`${this.path}: write made no progress`);
      done += n;
    }
  }

  /** fsync, rename over `path`, fsync the folder. Blocking. */
  commitSync(): void {
    const fd = this.handle;
    try {
      fsyncSync(fd);
    } catch (e) {
      this.abort();
      throw e;
    }
    closeSync(fd);
    this.fd = null;
    try {
      renameSync(this.tmpPath, this.path);
    } catch (e) {
      removeQuietly(this.tmpPath);
      throw e;
    }
    fsyncFolder(dirname(this.path));
  }

  /** fsync, rename over `path`, fsync the folder, without blocking on the data sync. */
  async commit(): Promise<void> {
    const fd = this.handle;
    try {
      await fsyncAsync(fd);
    } catch (e) {
      this.abort();
      throw e;
    }
    this.fd = null;
    await closeAsync(fd);
    try {
      await renameAsync(this.tmpPath, this.path);
    } catch (e) {
      removeQuietly(this.tmpPath);
      throw e;
    }
    fsyncFolder(dirname(this.path));
  }

  /** Drops the temporary file; the target is left as it was. Safe to call twice. */
  abort(): void {
    if (this.fd === null) return;
    try {
      closeSync(this.fd);
    } catch {
      // already closed by a failed commit
    }
    this.fd = null;
    removeQuietly(this.tmpPath);
  }
}

/** The type a streaming body writes to (kept under its old name for @ibq/tensor users). */
export type SequentialWriter = AtomicFile;

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

function fsyncFolder(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch (e) {
    // Windows cannot open or fsync folders; there the rename is as durable as it gets.
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL' && code !== 'EACCES' && code !== 'ENOTSUP') throw e;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function bytesOf(content: Uint8Array | string): Uint8Array {
  return typeof content === 'string' ? new TextEncoder().encode(content) : content;
}

/**
 * Writes `path` atomically. `content` is bytes, text, or an async function that streams the
 * body into the file; if it throws, the temporary file is removed and the old file stays.
 */
export async function writeFileAtomic(path: string, content: AtomicContent, options: AtomicOptions = {}): Promise<void> {
  const out = AtomicFile.open(path, options);
  try {
    if (typeof content === 'function') await content(out);
    else await out.write(bytesOf(content));
    await out.commit();
  } catch (e) {
    out.abort();
    throw e;
  }
}

/** Blocking form of `writeFileAtomic` for bytes or text (small files: configs, reports). */
export function writeFileAtomicSync(path: string, content: Uint8Array | string, options: AtomicOptions = {}): void {
  const out = AtomicFile.open(path, options);
  try {
    out.writeSync(bytesOf(content));
    out.commitSync();
  } catch (e) {
    out.abort();
    throw e;
  }
}
