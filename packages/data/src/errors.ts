// Typed errors of the data package (DataFormatError lives in @ibq/formats, shared with the file formats).

/** One line: libvips messages span lines and may repeat (its error buffer accumulates). */
function oneLine(reason: string): string {
  const lines = reason.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  return [...new Set(lines)].join('; ');
}

/** An image file (or buffer) that cannot be read or decoded. Names the file. */
export class ImageDecodeError extends Error {
  override readonly name = 'ImageDecodeError';
  /** The underlying reason (sharp's or the file system's message), on one line. */
  readonly reason: string;
  constructor(
    /** The file, or a description of the buffer ('<buffer>' when unnamed). */
    readonly path: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    const r = oneLine(reason);
    super(`cannot decode image ${path}: ${r}`, options);
    this.reason = r;
  }
}

/** A dataset file with a wrong layout (IDX, CIFAR, .npy, .npz, token shard). Names the file. */
export { DataFormatError } from '@ibq/formats';
