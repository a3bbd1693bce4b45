// Atomic file replacement: temporary file in the same directory, fsync, rename, fsync dir.

import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join, resolve } from 'node:path';

/** Sequential writer over a FileHandle that loops over short writes. */
export class SequentialWriter {
  position = 0;
  constructor(readonly fh: FileHandle) {}
  async write(bytes: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes.byteLength) {
      const len = Math.min(bytes.byteLength - done, 1 << 30);
      const { bytesWritten } = await this.fh.write(bytes, done, len, this.position);
      if (bytesWritten <= 0) throw new Error('write made no progress');
      done += bytesWritten;
      this.position += bytesWritten;
    }
  }
}

/**
 * Write `path` atomically: `body` writes a temporary file beside it (same directory, so the
 * rename cannot cross file systems), which is fsynced, renamed over `path`, and the directory
 * is fsynced so the rename itself is durable. If `body` throws, the temporary file is removed
 * and any previous file at `path` is left untouched.
 */
export async function writeFileAtomic(path: string, body: (out: SequentialWriter) => Promise<void>): Promise<void> {
  const full = resolve(path);
  const dir = dirname(full);
  const tmp = join(dir, `.${basename(full)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx');
  let renamed = false;
  try {
    try {
      await body(new SequentialWriter(fh));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, full);
    renamed = true;
  } finally {
    if (!renamed) await unlink(tmp).catch(() => undefined);
  }
  await fsyncDirectory(dir);
}

async function fsyncDirectory(dir: string): Promise<void> {
  let dh: FileHandle | undefined;
  try {
    dh = await open(dir, 'r');
    await dh.sync();
  } catch (e) {
    // Windows cannot open or fsync directories; there the rename is as durable as it gets.
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL' && code !== 'EACCES' && code !== 'ENOTSUP') throw e;
  } finally {
    await dh?.close();
  }
}
