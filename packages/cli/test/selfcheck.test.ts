// The self-check's bookkeeping against a small real backend ('hostcheck', float32 on the
// host): a correct kernel passes, a wrong one fails by name, a case the backend declines and
// an op without a kernel are "not supported", never failures.
import {
  type Attrs,
  type Backend,
  type DType,
  type DeviceBuffer,
  type MemoryInfo,
  type TensorInfo,
  type TypedArray,
  getOp,
  registerKernel,
  sizeOf,
} from '@ibq/kernels';
import { describe, expect, it } from 'vitest';
import { checkOp, selfCheck } from '../src/selfcheck.js';

class HostBuffer implements DeviceBuffer {
  readonly backend = 'hostcheck';
  constructor(readonly dtype: DType, readonly length: number, readonly data: Float32Array | Int32Array) {}
}

class HostCheckBackend implements Backend {
  readonly name = 'hostcheck';
  private live = new Set<HostBuffer>();
  async init() {}
  destroy() {}
  alloc(dtype: DType, length: number): HostBuffer {
    const b = new HostBuffer(dtype, length, dtype === 'i32' ? new Int32Array(length) : new Float32Array(length));
    this.live.add(b);
    return b;
  }
  write(buffer: DeviceBuffer, data: TypedArray, offset = 0) {
    (buffer as HostBuffer).data.set(data as ArrayLike<number>, offset);
  }
  async read(buffer: DeviceBuffer, offset = 0, length?: number): Promise<TypedArray> {
    const b = buffer as HostBuffer;
    return b.data.slice(offset, offset + (length ?? b.length - offset));
  }
  release(buffer: DeviceBuffer) {
    this.live.delete(buffer as HostBuffer);
  }
  supports(op: string, dtypes: readonly DType[], _attrs: Attrs): true | string {
    if (op === 'sign') return 'sign is declined on purpose';
    if (dtypes.some((d) => d !== 'f32')) return 'f32 only';
    return true;
  }
  flush() {}
  async sync() {}
  memory(): MemoryInfo {
    let bytes = 0;
    for (const b of this.live) bytes += b.length * 4;
    return { buffers: this.live.size, bytes };
  }
}

function unary(fn: (x: number) => number) {
  return (_b: Backend, [x]: readonly TensorInfo[], [y]: readonly TensorInfo[]) => {
    const src = (x.buffer as HostBuffer).data;
    const dst = (y.buffer as HostBuffer).data;
    for (let i = 0; i < sizeOf(x.shape); i++) dst[y.offset + i] = fn(src[x.offset + i]);
  };
}

registerKernel('neg', 'hostcheck', unary((v) => -v));
registerKernel('abs', 'hostcheck', unary((v) => v)); // wrong on purpose: abs must fail
registerKernel('sign', 'hostcheck', unary(Math.sign)); // declined by supports()

describe('selfCheck', () => {
  const backend = new HostCheckBackend();

  it('passes a correct kernel', async () => {
    const r = await checkOp(backend, getOp('neg'));
    expect(r).toMatchObject({ op: 'neg', status: 'passed', details: [] });
  });

  it('fails a wrong kernel and says which case and output', async () => {
    const r = await checkOp(backend, getOp('abs'));
    expect(r.status).toBe('failed');
    expect(r.details.length).toBeGreaterThan(0);
    expect(r.details[0]).toMatch(/^[^:]+: output 'y'/);
  });

  it('reports declined cases and missing kernels as not supported', async () => {
    const declined = await checkOp(backend, getOp('sign'));
    expect(declined.status).toBe('not supported');
    expect(declined.details[0]).toContain('sign is declined on purpose');
    const missing = await checkOp(backend, getOp('exp'));
    expect(missing).toMatchObject({ status: 'not supported', details: ['no kernel registered'] });
  });

  it('counts per op over a list', async () => {
    const ops = ['neg', 'abs', 'sign', 'exp'].map(getOp);
    const seen: string[] = [];
    const report = await selfCheck(backend, ops, (_i, _n, op) => seen.push(op));
    expect(seen).toEqual(['neg', 'abs', 'sign', 'exp']);
    expect(report).toMatchObject({ backend: 'hostcheck', passed: 1, failed: 1, notSupported: 2 });
    expect(backend.memory().buffers).toBe(0);
  });
});
