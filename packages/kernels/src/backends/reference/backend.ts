// The reference backend: plain TypeScript, float64 accumulation, the oracle every other
// backend is tested against. Clarity beats speed here. Kernels live beside this file, one
// file per op family, and register themselves under the name 'reference'.

import { getKernel } from '../../dispatch.js';
import type { Attrs, Backend, DType, DeviceBuffer, MemoryInfo, TensorInfo, TypedArray } from '../../types.js';
import { bytesPerElement, sizeOf } from '../../types.js';

export class RefBuffer implements DeviceBuffer {
  readonly backend = 'reference';
  released = false;
  constructor(readonly dtype: DType, readonly length: number, readonly data: Float32Array | Float64Array | Int32Array) {}
}

export class ReferenceBackend implements Backend {
  readonly name = 'reference';
  private live = 0;
  private liveBytes = 0;

  async init(): Promise<void> {}
  destroy(): void {}

  alloc(dtype: DType, length: number): RefBuffer {
    if (!Number.isInteger(length) || length < 0) throw new Error(`reference: invalid buffer length ${length}`);
    let data: Float32Array | Float64Array | Int32Array;
    if (dtype === 'f32') data = new Float32Array(length);
    else if (dtype === 'f64') data = new Float64Array(length);
    else if (dtype === 'i32') data = new Int32Array(length);
    else throw new Error(`reference: dtype ${dtype} is not supported`);
    this.live++;
    this.liveBytes += length * bytesPerElement(dtype);
    return new RefBuffer(dtype, length, data);
  }

  write(buffer: DeviceBuffer, data: TypedArray, offset = 0): void {
    const b = this.own(buffer);
    if (offset + data.length > b.length) throw new Error(`reference: write of ${data.length} at ${offset} exceeds buffer of ${b.length}`);
    b.data.set(data as ArrayLike<number>, offset);
  }

  async read(buffer: DeviceBuffer, offset = 0, length?: number): Promise<TypedArray> {
    const b = this.own(buffer);
    const n = length ?? b.length - offset;
    return b.data.slice(offset, offset + n);
  }

  release(buffer: DeviceBuffer): void {
    const b = this.own(buffer);
    b.released = true;
    this.live--;
    this.liveBytes -= b.length * bytesPerElement(b.dtype);
  }

  supports(op: string, dtypes: readonly DType[], _attrs: Attrs): true | string {
    if (!getKernel(op, this.name)) return 'no kernel registered';
    if (dtypes.includes('f16')) return 'f16 is not supported on reference';
    return true;
  }

  flush(): void {}
  async sync(): Promise<void> {}

  memory(): MemoryInfo {
    return { buffers: this.live, bytes: this.liveBytes };
  }

  private own(buffer: DeviceBuffer): RefBuffer {
    if (!(buffer instanceof RefBuffer)) throw new Error(`reference: buffer belongs to backend '${buffer.backend}'`);
    if (buffer.released) throw new Error('reference: buffer used after release');
    return buffer;
  }
}

/** The elements of a tensor view as a typed subarray (no copy). */
export function view(t: TensorInfo): Float32Array | Float64Array | Int32Array {
  const b = t.buffer as RefBuffer;
  if (b.released) throw new Error('reference: buffer used after release');
  return b.data.subarray(t.offset, t.offset + sizeOf(t.shape));
}
