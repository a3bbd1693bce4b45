/**
 * A malformed, truncated, hostile or unsupported checkpoint file. The message always starts
 * with the file and, when one is concerned, the tensor key or archive entry; both are also
 * kept as fields for programs.
 */
export class CheckpointError extends Error {
  override readonly name = 'CheckpointError';
  constructor(
    readonly file: string,
    readonly detail: string,
    readonly key?: string,
  ) {
    super(`${file}${key !== undefined ? ` [${key}]` : ''}: ${detail}`);
  }
}
