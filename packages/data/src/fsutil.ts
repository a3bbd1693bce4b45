// @ibq/data's name for the project's one atomic writer (writeFileAtomic of @ibq/formats), with
// this package's default kept: missing parent folders are created.

import { type AtomicContent, type AtomicOptions, writeFileAtomic as writeAtomic } from '@ibq/formats';

/** Writes `path` atomically (temporary file, fsync, rename, fsync of the folder), creating its folder. */
export function writeFileAtomic(path: string, content: AtomicContent, options: AtomicOptions = { mkdir: true }): Promise<void> {
  return writeAtomic(path, content, options);
}
