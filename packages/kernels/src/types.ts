// The kernel contract: what every backend provides and what every kernel receives.

/** Element types. `f64` exists on the reference backend only, for finite-difference gradient checks. */
export type DType = 'f32' | 'f16' | 'i32' | 'f64';
export type TypedArray = Float32Array | Float64Array | Int32Array | Uint16Array;

/** A buffer owned by one backend. Backends extend it with their own storage. */
export interface DeviceBuffer {
  readonly backend: string;
  readonly dtype: DType;
  /** Length in elements. */
  readonly length: number;
}

/**
 * A dense, row-major view into a buffer: what kernels read and write.
 * `offset` is in elements; every kernel honours it on inputs and outputs
 * (the harness places tensors at offsets with guard values around them).
 */
export interface TensorInfo {
  readonly buffer: DeviceBuffer;
  readonly offset: number;
  readonly shape: readonly number[];
  readonly dtype: DType;
}

/** Attributes of one op call: plain JSON values. */
export type Attrs = Record<string, unknown>;

export interface MemoryInfo {
  /** Live (allocated, not released) buffers. */
  buffers: number;
  /** Bytes held by live buffers. */
  bytes: number;
  /** Bytes kept for reuse by a pool, if the backend has one. */
  pooledBytes?: number;
}

export interface Backend {
  readonly name: string;
  init(): Promise<void>;
  /** Frees every resource; the backend is unusable afterwards. */
  destroy(): void;
  alloc(dtype: DType, length: number): DeviceBuffer;
  /** Copies `data` into the buffer starting at element `offset`. */
  write(buffer: DeviceBuffer, data: TypedArray, offset?: number): void;
  /** Reads `length` elements from `offset` (default: the whole buffer). Always async. */
  read(buffer: DeviceBuffer, offset?: number, length?: number): Promise<TypedArray>;
  /** Gives the buffer back; the memory is reused only after queued work that uses it has run. */
  release(buffer: DeviceBuffer): void;
  /** `true`, or the reason this (op, dtypes, attrs) cannot run here. */
  supports(op: string, dtypes: readonly DType[], attrs: Attrs): true | string;
  /** Submits queued work without waiting. */
  flush(): void;
  /** Resolves when all queued work has completed. */
  sync(): Promise<void>;
  memory(): MemoryInfo;
  /** What `ibq devices` prints: adapter, limits, features, threads, SIMD... */
  describe?(): Record<string, unknown>;
}

/** A kernel writes `outputs` (pre-allocated by the dispatcher) from `inputs`. */
export type KernelFn<B extends Backend = Backend> = (
  backend: B,
  inputs: readonly TensorInfo[],
  outputs: readonly TensorInfo[],
  attrs: Attrs,
) => void;

export class OpError extends Error {
  constructor(readonly op: string, message: string) {
    super(`${op}: ${message}`);
    this.name = 'OpError';
  }
}

export class NotSupportedError extends Error {
  constructor(readonly op: string, readonly backend: string, reason?: string) {
    super(`op '${op}' is not supported on backend '${backend}'${reason ? `: ${reason}` : ''}`);
    this.name = 'NotSupportedError';
  }
}

export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function bytesPerElement(dtype: DType): number {
  return dtype === 'f64' ? 8 : dtype === 'f16' ? 2 : 4;
}

export function isFloat(dtype: DType): boolean {
  return dtype !== 'i32';
}

/** Row-major strides of a shape. */
export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}
