// The webgpu backend: Dawn (the `webgpu` npm package) loaded lazily. One command encoder
// collects many dispatches and is submitted every `submitEvery` dispatches or before a read;
// pipelines are cached by shader text (never by sizes: sizes travel in uniforms from an arena);
// buffers come from a pool keyed by size bucket and usage and return to it only after the
// submit that last used them has completed. See the README's "webgpu backend" section.

/// <reference types="@webgpu/types" />
import { getKernel } from '../../dispatch.js';
import type { Attrs, Backend, DType, DeviceBuffer, MemoryInfo, TensorInfo, TypedArray } from '../../types.js';
import { bytesPerElement, sizeOf } from '../../types.js';
import { f16BitsToF32, f32ToF16Bits } from '../../half.js';
import { type Program, buildShader } from './program.js';
import { withNativeStderrQuiet } from './native-stderr.js';

export interface WebGpuOptions {
  /** Dispatches recorded before the encoder is submitted (default 64). */
  submitEvery?: number;
  /** Request shader-f16 (when the adapter has it) so f16 tensors can be used. */
  f16?: boolean;
}

const STORAGE_USAGE = 0x80 | 0x4 | 0x8; // STORAGE | COPY_SRC | COPY_DST
const UNIFORM_USAGE = 0x40 | 0x8; // UNIFORM | COPY_DST
const READBACK_USAGE = 0x1 | 0x8; // MAP_READ | COPY_DST
const MAP_READ = 0x1;
const ARENA_CHUNK = 64 * 1024;
/** Ops whose kernels only exist for f32 storage. */
const F32_ONLY = new Set(['scatter_add_rows']);

export class GpuBuffer implements DeviceBuffer {
  readonly backend = 'webgpu';
  released = false;
  /** Serial of the last submission whose commands use this buffer. */
  lastUse = 0;
  constructor(readonly dtype: DType, readonly length: number, readonly gpu: GPUBuffer, readonly byteSize: number) {}
}

interface Pooled {
  buffer: GPUBuffer;
  size: number;
  usage: number;
}

/** Size classes: powers of two and 1.5x powers of two, so reuse wastes at most a third. */
function bucketSize(bytes: number): number {
  const b = Math.max(16, Math.ceil(bytes / 16) * 16);
  if (b <= 256) return b;
  const p = 2 ** Math.floor(Math.log2(b));
  if (b === p) return b;
  return b <= p * 1.5 ? p * 1.5 : p * 2;
}

/** A binding of (part of) a buffer, and where the tensor starts inside it, in elements. */
export interface Bound {
  entry: GPUBufferBinding;
  elemOffset: number;
}

export class SplitRequiredError extends Error {}

export class WebGpuBackend implements Backend {
  readonly name = 'webgpu';
  readonly submitEvery: number;
  readonly wantF16: boolean;
  // Strong references to every Dawn object whose wrapper must outlive the device: Dawn's
  // instance is destroyed when the object returned by create() is garbage collected.
  private gpu: GPU | null = null;
  private adapter: GPUAdapter | null = null;
  device!: GPUDevice;
  limits!: GPUSupportedLimits;
  hasF16 = false;
  hasSubgroups = false;
  /** A software adapter (llvmpipe / lavapipe, SwiftShader): kernels pick CPU-friendly variants. */
  cpuAdapter = false;
  private adapterInfo: Record<string, unknown> = {};
  private adapterFeatures: string[] = [];

  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private pendingDispatches = 0;
  /** Serial of the submission being recorded. */
  private serial = 1;
  private completed = 0;
  private deferred: { serial: number; pooled: Pooled }[] = [];
  private pool = new Map<string, GPUBuffer[]>();
  private pooledBytes = 0;
  private live = 0;
  private liveBytes = 0;
  private pipelines = new Map<string, GPUComputePipeline>();
  private layouts = new WeakMap<GPUComputePipeline, GPUBindGroupLayout>();
  private pendingChecks: Promise<void>[] = [];
  private arenaChunks: { gpu: GPUBuffer; cpu: Uint8Array; used: number }[] = [];
  private uniformAlign = 256;
  private lostReason: string | null = null;
  private gpuError: string | null = null;
  private destroyed = false;
  /** Temporaries that live until the current submission completes. */
  private scratch: Pooled[] = [];
  dispatchCount = 0;

  constructor(options: WebGpuOptions = {}) {
    this.submitEvery = Math.max(1, options.submitEvery ?? 64);
    this.wantF16 = options.f16 ?? false;
  }

  async init(): Promise<void> {
    const { create, globals } = await import('webgpu');
    // GPUBufferUsage & co. are read by user code; Dawn itself does not need them.
    for (const [k, v] of Object.entries(globals)) if (!(k in globalThis)) (globalThis as any)[k] = v;
    this.gpu = create([]);
    const gpu = this.gpu;
    const adapter = await withNativeStderrQuiet(() => gpu.requestAdapter({ powerPreference: 'high-performance' }));
    if (!adapter) throw new Error('no WebGPU adapter found (Dawn found no Vulkan/Metal/D3D12 device)');
    this.adapter = adapter;
    const info = adapter.info;
    this.adapterInfo = {
      vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description,
      subgroupMinSize: (info as any).subgroupMinSize, subgroupMaxSize: (info as any).subgroupMaxSize,
    };
    this.adapterFeatures = [...adapter.features].sort();
    this.cpuAdapter = (info as any).isFallbackAdapter === true || info.architecture === 'software'
      || /llvmpipe|lavapipe|swiftshader/i.test(`${info.description} ${info.device}`);
    const features: GPUFeatureName[] = [];
    if (this.wantF16 && adapter.features.has('shader-f16')) features.push('shader-f16');
    if (adapter.features.has('subgroups')) features.push('subgroups' as GPUFeatureName);
    const al = adapter.limits;
    const requiredLimits: Record<string, number> = {
      maxStorageBufferBindingSize: al.maxStorageBufferBindingSize,
      maxBufferSize: al.maxBufferSize,
      maxComputeWorkgroupStorageSize: al.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: al.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: al.maxComputeWorkgroupSizeX,
      maxComputeWorkgroupSizeY: al.maxComputeWorkgroupSizeY,
      maxStorageBuffersPerShaderStage: al.maxStorageBuffersPerShaderStage,
    };
    const device = await adapter.requestDevice({ requiredFeatures: features, requiredLimits });
    if (!device) throw new Error('the WebGPU adapter refused to create a device');
    this.device = device;
    this.limits = device.limits;
    this.hasF16 = device.features.has('shader-f16');
    this.hasSubgroups = device.features.has('subgroups');
    this.uniformAlign = Math.max(16, device.limits.minUniformBufferOffsetAlignment);
    device.lost.then((l) => {
      if (!this.destroyed) this.lostReason = `${l.reason}: ${l.message}`;
    });
    device.onuncapturederror = (ev: GPUUncapturedErrorEvent) => {
      // Follow-on errors of an object that already failed add nothing: the first error was kept.
      if (/invalid due to a previous error/.test(ev.error.message)) return;
      this.gpuError ??= `${ev.error.constructor?.name ?? 'GPUError'}: ${ev.error.message}`;
    };
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    try {
      this.device?.destroy();
    } catch {
      /* already lost */
    }
    this.pool.clear();
    this.pipelines.clear();
    this.deferred = [];
    this.arenaChunks = [];
    this.encoder = null;
    this.pass = null;
    this.adapter = null;
    this.gpu = null;
  }

  describe(): Record<string, unknown> {
    const limits: Record<string, number> = {};
    if (this.limits) for (const k in this.limits) limits[k] = (this.limits as any)[k];
    return {
      adapter: this.adapterInfo,
      features: this.adapterFeatures,
      deviceFeatures: this.device ? [...this.device.features].sort() : [],
      limits,
      f16: this.hasF16,
      subgroups: this.hasSubgroups,
      cpuAdapter: this.cpuAdapter,
      submitEvery: this.submitEvery,
    };
  }

  // ---- errors --------------------------------------------------------------------------------

  /** Throws a clear error when the device is gone or an earlier command failed. */
  check(): void {
    if (this.destroyed) throw new Error('webgpu: backend used after destroy()');
    if (this.lostReason) throw new Error(`webgpu: device lost (${this.lostReason})`);
    if (this.gpuError) {
      const e = this.gpuError;
      this.gpuError = null;
      throw new Error(`webgpu: ${e}`);
    }
  }

  // ---- buffers -------------------------------------------------------------------------------

  private acquire(size: number, usage: number): Pooled {
    const bucket = bucketSize(size);
    const key = `${usage}:${bucket}`;
    const list = this.pool.get(key);
    const reused = list?.pop();
    if (reused) {
      this.pooledBytes -= bucket;
      return { buffer: reused, size: bucket, usage };
    }
    if (bucket > this.limits.maxBufferSize) {
      throw new Error(`webgpu: out of memory: a buffer of ${bucket} bytes exceeds the device's maxBufferSize (${this.limits.maxBufferSize})`);
    }
    this.device.pushErrorScope('out-of-memory');
    const buffer = this.device.createBuffer({ size: bucket, usage });
    // The scope resolves later; a failure surfaces as a clear error on the next check().
    this.device.popErrorScope().then((e) => {
      if (e) this.gpuError ??= `out of memory allocating ${bucket} bytes: ${e.message}`;
    });
    return { buffer, size: bucket, usage };
  }

  private toPool(p: Pooled): void {
    if (this.destroyed) return;
    const key = `${p.usage}:${p.size}`;
    let list = this.pool.get(key);
    if (!list) this.pool.set(key, (list = []));
    list.push(p.buffer);
    this.pooledBytes += p.size;
  }

  alloc(dtype: DType, length: number): GpuBuffer {
    this.check();
    if (dtype === 'f64') throw new Error('webgpu: f64 tensors are not supported (WGSL has no f64)');
    if (dtype === 'f16' && !this.hasF16) throw new Error('webgpu: f16 needs shader-f16 and the f16 option');
    if (!Number.isInteger(length) || length < 0) throw new Error(`webgpu: invalid buffer length ${length}`);
    const bytes = Math.ceil((length * bytesPerElement(dtype)) / 4) * 4;
    const p = this.acquire(bytes, STORAGE_USAGE);
    this.live++;
    this.liveBytes += length * bytesPerElement(dtype);
    return new GpuBuffer(dtype, length, p.buffer, p.size);
  }

  own(buffer: DeviceBuffer): GpuBuffer {
    if (!(buffer instanceof GpuBuffer)) throw new Error(`webgpu: buffer belongs to backend '${buffer.backend}'`);
    if (buffer.released) throw new Error('webgpu: buffer used after release');
    return buffer;
  }

  release(buffer: DeviceBuffer): void {
    const b = this.own(buffer);
    b.released = true;
    this.live--;
    this.liveBytes -= b.length * bytesPerElement(b.dtype);
    this.retire({ buffer: b.gpu, size: b.byteSize, usage: STORAGE_USAGE }, b.lastUse);
  }

  /** Returns a buffer to the pool once the submission `lastUse` has completed. */
  private retire(p: Pooled, lastUse: number): void {
    if (lastUse > this.completed) this.deferred.push({ serial: lastUse, pooled: p });
    else this.toPool(p);
  }

  private recycle(): void {
    if (this.deferred.length === 0) return;
    const keep: typeof this.deferred = [];
    for (const d of this.deferred) {
      if (d.serial <= this.completed) this.toPool(d.pooled);
      else keep.push(d);
    }
    this.deferred = keep;
  }

  write(buffer: DeviceBuffer, data: TypedArray, offset = 0): void {
    this.check();
    const b = this.own(buffer);
    if (offset < 0 || offset + data.length > b.length) {
      throw new Error(`webgpu: write of ${data.length} elements at ${offset} exceeds buffer of ${b.length}`);
    }
    if (data.length === 0) return;
    // The queue runs writes before the encoder still being recorded: submit it first if it uses this buffer.
    if (b.lastUse === this.serial) this.flush();
    let bytes: Uint8Array;
    if (b.dtype === 'f16') {
      const bits = data instanceof Uint16Array ? data : f32ToF16Bits(data as ArrayLike<number>);
      bytes = new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength);
    } else {
      const typed = b.dtype === 'i32'
        ? (data instanceof Int32Array ? data : Int32Array.from(data as ArrayLike<number>))
        : (data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>));
      bytes = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
    }
    const bpe = bytesPerElement(b.dtype);
    const start = offset * bpe;
    if (start % 4 === 0 && bytes.byteLength % 4 === 0) {
      this.device.queue.writeBuffer(b.gpu, start, bytes);
      return;
    }
    // f16 halves that do not fill whole 4-byte words: merge with the current neighbours.
    this.writeUnaligned(b, bytes, start);
  }

  private writeUnaligned(b: GpuBuffer, bytes: Uint8Array, start: number): void {
    const lo = Math.floor(start / 4) * 4;
    const hi = Math.ceil((start + bytes.byteLength) / 4) * 4;
    // The edge words hold neighbours' halves: upload whole words to a temporary buffer and let a
    // small kernel merge only the halves being written (queue order keeps it after earlier work).
    const words = new Uint8Array(hi - lo);
    words.set(bytes, start - lo);
    const tmp = this.acquire(words.byteLength, STORAGE_USAGE);
    this.device.queue.writeBuffer(tmp.buffer, 0, words);
    const first = (start - lo) / 2, count = bytes.byteLength / 2;
    this.dispatch({
      name: 'write_f16_halves',
      inputs: [{ name: 'src', type: 'u32' }],
      outputs: [{ name: 'dst', type: 'u32' }],
      uniforms: [['first', 'u32'], ['count', 'u32'], ['dstWord', 'u32']],
      body: `
fn half_of(w: u32, i: u32) -> u32 { return (w >> (16u * (i & 1u))) & 0xffffu; }
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let w = gid.x;
  let nWords = (P.first + P.count + 1u) / 2u;
  if (w >= nWords) { return; }
  let cur = dst[P.dstWord + w];
  let src_w = src[w];
  var out = cur;
  for (var k = 0u; k < 2u; k++) {
    let h = w * 2u + k;
    if (h >= P.first && h < P.first + P.count) {
      out = (out & ~(0xffffu << (16u * k))) | (half_of(src_w, k) << (16u * k));
    }
  }
  dst[P.dstWord + w] = out;
}`,
    }, [{ raw: tmp.buffer, size: tmp.size }], [{ raw: b.gpu, size: b.byteSize, owner: b }], [first, count, lo / 4], Math.ceil(words.byteLength / 4 / 64));
    this.scratch.push(tmp);
  }

  async read(buffer: DeviceBuffer, offset = 0, length?: number): Promise<TypedArray> {
    this.check();
    const b = this.own(buffer);
    const n = length ?? b.length - offset;
    if (offset < 0 || n < 0 || offset + n > b.length) throw new Error(`webgpu: read of ${n} elements at ${offset} exceeds buffer of ${b.length}`);
    const bpe = bytesPerElement(b.dtype);
    if (n === 0) return b.dtype === 'i32' ? new Int32Array(0) : b.dtype === 'f16' ? new Uint16Array(0) : new Float32Array(0);
    const lo = Math.floor((offset * bpe) / 4) * 4;
    const hi = Math.ceil(((offset + n) * bpe) / 4) * 4;
    const staging = this.acquire(hi - lo, READBACK_USAGE);
    this.endPass();
    this.ensureEncoder().copyBufferToBuffer(b.gpu, lo, staging.buffer, 0, hi - lo);
    b.lastUse = this.serial;
    this.flush();
    try {
      await this.mapWithChecks(staging.buffer, hi - lo);
      const bytes = new Uint8Array(staging.buffer.getMappedRange(0, hi - lo).slice(0));
      staging.buffer.unmap();
      const skip = offset * bpe - lo;
      const out = bytes.buffer.slice(skip, skip + n * bpe);
      return b.dtype === 'i32' ? new Int32Array(out) : b.dtype === 'f16' ? new Uint16Array(out) : new Float32Array(out);
    } finally {
      // Once unmapped (the map completed or failed), nothing on the queue still uses it.
      if (staging.buffer.mapState === 'mapped') staging.buffer.unmap();
      if (staging.buffer.mapState === 'unmapped') this.toPool(staging);
    }
  }

  /** mapAsync that fails with a clear error on device loss instead of waiting forever. */
  private async mapWithChecks(buf: GPUBuffer, size: number): Promise<void> {
    const lost = this.device.lost.then((l) => {
      throw new Error(`webgpu: device lost while reading (${l.reason}: ${l.message})`);
    });
    await Promise.race([buf.mapAsync(MAP_READ, 0, size), lost]);
    await this.settleChecks();
    this.check();
  }

  private async settleChecks(): Promise<void> {
    while (this.pendingChecks.length > 0) await Promise.all(this.pendingChecks.splice(0));
  }

  /** Reads f16 data as f32 numbers. */
  async readF32(buffer: DeviceBuffer, offset = 0, length?: number): Promise<Float32Array> {
    const r = await this.read(buffer, offset, length);
    if (r instanceof Uint16Array) return f16BitsToF32(r);
    return r instanceof Float32Array ? r : Float32Array.from(r as ArrayLike<number>);
  }

  supports(op: string, dtypes: readonly DType[], _attrs: Attrs): true | string {
    if (!getKernel(op, this.name)) return 'no kernel registered';
    if (dtypes.includes('f64')) return 'f64 is not supported on webgpu';
    if (dtypes.includes('f16') && !this.hasF16) return 'f16 needs the shader-f16 feature and the f16 option';
    if (dtypes.includes('f16') && F32_ONLY.has(op)) return `${op} accumulates with 32-bit atomics and needs f32`;
    return true;
  }

  // ---- submission ----------------------------------------------------------------------------

  private ensureEncoder(): GPUCommandEncoder {
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    return this.encoder;
  }

  private ensurePass(): GPUComputePassEncoder {
    if (!this.pass) this.pass = this.ensureEncoder().beginComputePass();
    return this.pass;
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  flush(): void {
    if (this.destroyed) return;
    if (!this.encoder) return;
    this.endPass();
    for (const c of this.arenaChunks) {
      if (c.used > 0) this.device.queue.writeBuffer(c.gpu, 0, c.cpu, 0, Math.ceil(c.used / 4) * 4);
    }
    const serial = this.serial;
    const chunks = this.arenaChunks;
    const scratch = this.scratch;
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = null;
    this.arenaChunks = [];
    this.scratch = [];
    this.pendingDispatches = 0;
    this.serial++;
    for (const c of chunks) this.deferred.push({ serial, pooled: { buffer: c.gpu, size: ARENA_CHUNK, usage: UNIFORM_USAGE } });
    for (const s of scratch) this.deferred.push({ serial, pooled: s });
    this.device.queue.onSubmittedWorkDone().then(() => {
      if (serial > this.completed) this.completed = serial;
      this.recycle();
    }, () => {});
  }

  async sync(): Promise<void> {
    this.check();
    this.flush();
    const upTo = this.serial - 1;
    const lost = this.device.lost.then((l) => {
      throw new Error(`webgpu: device lost (${l.reason}: ${l.message})`);
    });
    await Promise.race([this.device.queue.onSubmittedWorkDone(), lost]);
    await this.settleChecks();
    if (upTo > this.completed) this.completed = upTo;
    this.recycle();
    this.check();
  }

  memory(): MemoryInfo {
    return { buffers: this.live, bytes: this.liveBytes, pooledBytes: this.pooledBytes };
  }

  // ---- dispatch ------------------------------------------------------------------------------

  private pipeline(p: Program): { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout; uniformBytes: number } {
    const { code, uniformBytes } = buildShader(p, this.hasF16);
    let pipe = this.pipelines.get(code);
    if (!pipe) {
      this.device.pushErrorScope('validation');
      const module = this.device.createShaderModule({ code, label: p.name });
      const created = this.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: p.name });
      pipe = created;
      this.pipelines.set(code, created);
      // Compilation errors come back asynchronously; sync() and read() wait for them.
      this.pendingChecks.push(this.device.popErrorScope().then(async (e) => {
        if (!e) return;
        this.pipelines.delete(code);
        const info = await module.getCompilationInfo();
        const msgs = info.messages.filter((m) => m.type === 'error').map((m) => `line ${m.lineNum}:${m.linePos}: ${m.message}`);
        this.gpuError ??= `shader '${p.name}' failed to compile: ${msgs.join('; ') || e.message}`;
      }));
    }
    let layout = this.layouts.get(pipe);
    if (!layout) this.layouts.set(pipe, (layout = pipe.getBindGroupLayout(0)));
    return { pipeline: pipe, layout, uniformBytes };
  }

  get pipelineCount(): number {
    return this.pipelines.size;
  }

  /** Copies uniform values into the arena; returns the binding. */
  private uniformSlot(p: Program, values: readonly number[], bytes: number): GPUBufferBinding {
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    let chunk = this.arenaChunks[this.arenaChunks.length - 1];
    const at = chunk ? Math.ceil(chunk.used / this.uniformAlign) * this.uniformAlign : 0;
    if (!chunk || at + size > ARENA_CHUNK) {
      const g = this.acquire(ARENA_CHUNK, UNIFORM_USAGE);
      chunk = { gpu: g.buffer, cpu: new Uint8Array(ARENA_CHUNK), used: 0 };
      this.arenaChunks.push(chunk);
    }
    const start = Math.ceil(chunk.used / this.uniformAlign) * this.uniformAlign;
    const dv = new DataView(chunk.cpu.buffer, start, size);
    p.uniforms.forEach(([_, type], i) => {
      const v = values[i];
      if (type === 'f32') dv.setFloat32(i * 4, v, true);
      else if (type === 'i32') dv.setInt32(i * 4, v, true);
      else dv.setUint32(i * 4, v >>> 0, true);
    });
    chunk.used = start + size;
    return { buffer: chunk.gpu, offset: start, size };
  }

  /** The most elements of `dtype` a view may have and still be bound at any offset (room for the window's alignment). */
  maxViewElements(dtype: DType): number {
    const slack = Math.max(256, this.limits.minStorageBufferOffsetAlignment);
    return Math.floor((this.limits.maxStorageBufferBindingSize - slack) / bytesPerElement(dtype));
  }

  /**
   * Binds a tensor view: the whole buffer when it fits in one binding, else a window around
   * the view (binding offsets must be aligned, so the element offset inside the window travels
   * in a uniform). Throws SplitRequiredError when the view itself is too large to bind.
   */
  bindView(t: TensorInfo, count = sizeOf(t.shape)): { ref: BindRef; elemOffset: number } {
    const b = this.own(t.buffer);
    const max = this.limits.maxStorageBufferBindingSize;
    if (b.byteSize <= max) return { ref: { raw: b.gpu, size: b.byteSize, owner: b }, elemOffset: t.offset };
    const bpe = bytesPerElement(b.dtype);
    const align = this.limits.minStorageBufferOffsetAlignment;
    const start = Math.floor((t.offset * bpe) / align) * align;
    const elemOffset = (t.offset * bpe - start) / bpe;
    const size = Math.min(b.byteSize - start, Math.max(4, Math.ceil(((elemOffset + count) * bpe) / 4) * 4));
    if (size > max) throw new SplitRequiredError(`a view of ${count} ${b.dtype} elements exceeds maxStorageBufferBindingSize (${max} bytes)`);
    return { ref: { raw: b.gpu, offset: start, size, owner: b }, elemOffset };
  }

  /**
   * Records one dispatch. `workgroups` beyond maxComputeWorkgroupsPerDimension fold into a 2-D
   * grid; shaders recover the linear id with `wg_linear(wid, nwg)`.
   */
  dispatch(p: Program, inputs: BindRef[], outputs: BindRef[], uniforms: readonly number[], workgroups: number | [number, number, number]): void {
    this.check();
    const { pipeline, layout, uniformBytes } = this.pipeline(p);
    // A buffer read and written by one dispatch would be two conflicting bindings: copy the read side.
    const written = new Set(outputs.map((o) => o.raw));
    const ins = inputs.map((r) => {
      if (!written.has(r.raw)) return r;
      const off = r.offset ?? 0;
      const tmp = this.acquire(r.size, STORAGE_USAGE);
      this.endPass();
      this.ensureEncoder().copyBufferToBuffer(r.raw, off, tmp.buffer, 0, r.size);
      this.scratch.push(tmp);
      return { raw: tmp.buffer, size: r.size, offset: 0, owner: r.owner };
    });
    const entries: GPUBindGroupEntry[] = [];
    [...ins, ...outputs].forEach((r, i) => {
      entries.push({ binding: i, resource: { buffer: r.raw, offset: r.offset ?? 0, size: r.size } });
      if (r.owner) r.owner.lastUse = this.serial;
    });
    if (p.uniforms.length > 0) entries.push({ binding: entries.length, resource: this.uniformSlot(p, uniforms, uniformBytes) });
    const group = this.device.createBindGroup({ layout, entries });
    let [x, y, z] = typeof workgroups === 'number' ? [workgroups, 1, 1] : workgroups;
    if (x === 0 || y === 0 || z === 0) return;
    const maxDim = this.limits.maxComputeWorkgroupsPerDimension;
    if (x > maxDim) {
      if (y !== 1) throw new Error(`webgpu: ${p.name}: ${x}x${y} workgroups exceed the grid`);
      y = Math.ceil(x / maxDim);
      x = maxDim;
    }
    const pass = this.ensurePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(x, y, z);
    this.dispatchCount++;
    if (++this.pendingDispatches >= this.submitEvery) this.flush();
  }

  /** A temporary storage buffer that lives until the current submission completes. */
  scratchBuffer(bytes: number): BindRef {
    const p = this.acquire(Math.max(4, Math.ceil(bytes / 4) * 4), STORAGE_USAGE);
    this.scratch.push(p);
    return { raw: p.buffer, size: p.size };
  }
}

export interface BindRef {
  raw: GPUBuffer;
  size: number;
  offset?: number;
  owner?: GpuBuffer;
}
