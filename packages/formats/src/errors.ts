// Errors for files with a wrong layout. Every message starts with the file (and, where one is
// concerned, the key or archive entry); both are also kept as fields for programs.

/** A file with a wrong layout (zip, .npy, .npz, IDX, CIFAR, token shard...). Names the file. */
export class DataFormatError extends Error {
  override readonly name: string = 'DataFormatError';
  constructor(
    readonly path: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`${path}: ${reason}`, options);
  }
}

/**
 * A malformed, truncated, hostile or unsupported checkpoint or archive (safetensors, PyTorch,
 * zip). A DataFormatError whose message is `file [key]: detail`.
 */
export class CheckpointError extends DataFormatError {
  override readonly name: string = 'CheckpointError';
  constructor(
    readonly file: string,
    readonly detail: string,
    readonly key?: string,
  ) {
    super(file, `${key !== undefined ? `[${key}]: ` : ''}${detail}`);
    this.message = `${file}${key !== undefined ? ` [${key}]` : ''}: ${detail}`;
  }
}
