// The cpu backend: AssemblyScript SIMD kernels compiled to one wasm module, instantiated on
// the main thread and in every worker over one shared WebAssembly.Memory. The main thread is
// the only allocator (a free list over the memory); kernels run synchronously, so release()
// frees at once and sync() has nothing to wait for.

import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { setFlagsFromString } from 'node:v8';
import { availableParallelism } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getKernel } from '../../dispatch.js';
import type { Attrs, Backend, DType, DeviceBuffer, MemoryInfo, TensorInfo, TypedArray } from '../../types.js';
import { bytesPerElement, sizeOf } from '../../types.js';
import { ALIGN, FreeList } from './allocator.js';
import { WorkerPool } from './pool.js';
import { CPU_EXPORT_NAMES, type CpuExports } from './wasm-interface.js';
import { Wasm, type WasmMemory, type WasmModule } from './wasm.js';
import type { ConvAlgorithm } from './kernels/winograd.js';

const PAGE = 65536;
/** 4 GiB: the most a wasm32 memory can address. */
const MAX_PAGES = 65536;
const INITIAL_PAGES = 256; // 16 MiB
export const WASM_FILE = 'ibq-cpu.wasm';
/** The same kernels built with relaxed SIMD (f32x4.relaxed_madd in the GEMM and attention tiles). */
export const WASM_RELAXED_FILE = 'ibq-cpu-relaxed.wasm';

/** (module (func (param v128 v128 v128) (result v128) local.get 0 local.get 1 local.get 2 f32x4.relaxed_madd)) */
const RELAXED_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 8, 1, 96, 3, 123, 123, 123, 1, 123, 3, 2, 1, 0,
  10, 13, 1, 11, 0, 32, 0, 32, 1, 32, 2, 253, 133, 2, 11]);

/** Whether this engine compiles relaxed SIMD as it is now configured. */
export function relaxedSimdAvailable(): boolean {
  return (globalThis as unknown as { WebAssembly: { validate(b: Uint8Array): boolean } }).WebAssembly.validate(RELAXED_PROBE);
}

/**
 * 'relaxed': the relaxed-SIMD module, turning on V8's flag for it if the engine has it off
 * (Node 20); 'simd128': the plain SIMD module; 'auto': relaxed where the engine has it on by
 * default (Node 22+), else SIMD128 (on Node 20 the flag is not set: see the kernels README).
 */
export type SimdChoice = 'auto' | 'relaxed' | 'simd128';
const SIMD_CHOICES = ['auto', 'relaxed', 'simd128'] as const;

export class CpuBuffer implements DeviceBuffer {
  readonly backend = 'cpu';
  released = false;
  constructor(readonly dtype: DType, readonly length: number, readonly ptr: number, readonly bytes: number) {}
}

export interface CpuOptions {
  /** Threads including the main thread (default: IBQ_THREADS, else the available cores). */
  threads?: number;
  /** Path of the compiled module (default: IBQ_CPU_WASM, else the package's build/). */
  wasmPath?: string;
  /**
   * The algorithm of stride-1 3x3 convolutions (default: IBQ_CONV, else 'auto': chosen per
   * shape, see kernels/conv.ts); other convolutions always run the direct implicit GEMM.
   */
  conv?: 'auto' | ConvAlgorithm;
  /** Which build of the module (default: IBQ_SIMD, else 'auto'); ignored when wasmPath is given. */
  simd?: SimdChoice;
}

function choice<T extends string>(what: string, value: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(value)) throw new Error(`${what} must be one of ${choices.join(', ')}, got '${value}'`);
  return value as T;
}

const CONV_CHOICES = ['auto', 'direct', 'winograd2', 'winograd4'] as const;

function defaultConv(): 'auto' | ConvAlgorithm {
  const env = process.env.IBQ_CONV;
  return env === undefined || env === '' ? 'auto' : choice('IBQ_CONV', env, CONV_CHOICES);
}

function defaultSimd(): SimdChoice {
  const env = process.env.IBQ_SIMD;
  return env === undefined || env === '' ? 'auto' : choice('IBQ_SIMD', env, SIMD_CHOICES);
}

/** The exports of the wasm module, typed from assembly/*.ts at build time (wasm-interface.ts). */
export type { CpuExports } from './wasm-interface.js';

function defaultThreads(): number {
  const env = process.env.IBQ_THREADS;
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 1) throw new Error(`IBQ_THREADS must be a positive integer, got '${env}'`);
    return n;
  }
  return availableParallelism();
}

/** Where the built module may be: explicit, env, beside the sources, beside a bundle, the package. */
function wasmCandidates(explicit: string | undefined, file: string): string[] {
  // An explicit path is the only candidate: asking for a file and silently loading another hides mistakes.
  if (explicit) return [resolve(explicit)];
  const out: string[] = [];
  if (process.env.IBQ_CPU_WASM) out.push(resolve(process.env.IBQ_CPU_WASM));
  try {
    const here = dirname(fileURLToPath(import.meta.url));
    out.push(join(here, '../../../build', file)); // src/backends/cpu -> packages/kernels/build
    out.push(join(here, file)); // copied beside a bundle
  } catch {
    // import.meta.url is not a file URL: fall through to package resolution.
  }
  try {
    const req = createRequire(import.meta.url);
    out.push(join(dirname(req.resolve('@ibq/kernels')), '../build', file));
  } catch {
    // not resolvable from here
  }
  out.push(resolve('packages/kernels/build', file));
  return out;
}

export class CpuBackend implements Backend {
  readonly name = 'cpu';
  readonly threads: number;
  /** Algorithm of stride-1 3x3 convolutions (may be changed between calls: the kernel benchmark compares them). */
  convAlgorithm: 'auto' | ConvAlgorithm;
  /** Bytes of Winograd-transformed data per chunk of tile rows (kernels/winograd.ts; tests make it small). */
  winogradChunkBytes = 12 << 20;
  private memoryObj?: WasmMemory;
  private module?: WasmModule;
  private wasmPath?: string;
  /** Whether the loaded module is the relaxed-SIMD build. */
  private relaxed = false;
  /** Main-thread exports. */
  x!: CpuExports;
  pool!: WorkerPool;
  private free = new FreeList();
  private end = 0; // bytes of memory handed to the free list
  private live = 0;
  private liveBytes = 0;
  private views?: { f32: Float32Array; i32: Int32Array; u8: Uint8Array };
  private destroyed = false;

  constructor(private options: CpuOptions = {}) {
    this.threads = Math.max(1, Math.floor(options.threads ?? defaultThreads()));
    const conv = options.conv ?? defaultConv();
    if (!(CONV_CHOICES as readonly string[]).includes(conv)) throw new Error(`cpu: option conv must be one of ${CONV_CHOICES.join(', ')}, got '${conv}'`);
    this.convAlgorithm = conv;
  }

  async init(): Promise<void> {
    const simd = this.options.simd ?? defaultSimd();
    choice('cpu: option simd', simd, SIMD_CHOICES);
    if (simd === 'relaxed' && !relaxedSimdAvailable()) {
      setFlagsFromString('--experimental-wasm-relaxed-simd');
      if (!relaxedSimdAvailable()) throw new Error('cpu: simd relaxed was asked for, but this JavaScript engine cannot compile relaxed SIMD');
    }
    // With IBQ_CPU_WASM or an explicit path, that one file (whichever build it is).
    const relaxed = !this.options.wasmPath && !process.env.IBQ_CPU_WASM && simd !== 'simd128' && relaxedSimdAvailable();
    const file = relaxed ? WASM_RELAXED_FILE : WASM_FILE;
    const path = wasmCandidates(this.options.wasmPath, file).find((p) => existsSync(p));
    if (!path) {
      throw new Error(`the cpu kernels are not built (no ${file}): run npm run build`);
    }
    this.wasmPath = path;
    this.relaxed = basename(path) === WASM_RELAXED_FILE;
    this.module = await Wasm.compile(readFileSync(path));
    this.memoryObj = new Wasm.Memory({ initial: INITIAL_PAGES, maximum: MAX_PAGES, shared: true });
    const instance = await Wasm.instantiate(this.module, { env: { memory: this.memoryObj } });
    // The module must export what the generated interface says: a stale build/ is named, not run.
    const missing = CPU_EXPORT_NAMES.filter((n) => typeof instance.exports[n] !== 'function');
    if (missing.length) {
      throw new Error(`${path} lacks the exports ${missing.join(', ')} that wasm-interface.ts declares: the wasm is stale, run npm run build`);
    }
    this.x = instance.exports as unknown as CpuExports;
    const names = [...CPU_EXPORT_NAMES];
    const heapBase = Math.ceil((this.x.heapBase()) / ALIGN) * ALIGN;
    this.end = INITIAL_PAGES * PAGE;
    this.free.addSpace(heapBase, this.end - heapBase);
    this.pool = new WorkerPool(this.threads, this.x, names);
    await this.pool.start(this.module, this.memoryObj);
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.pool?.destroy();
  }

  alloc(dtype: DType, length: number): CpuBuffer {
    if (!Number.isInteger(length) || length < 0) throw new Error(`cpu: invalid buffer length ${length}`);
    if (dtype !== 'f32' && dtype !== 'i32') throw new Error(`cpu: dtype ${dtype} is not supported (f32 and i32 only)`);
    const bytes = length * bytesPerElement(dtype);
    const ptr = this.allocBytes(bytes);
    this.live++;
    this.liveBytes += bytes;
    return new CpuBuffer(dtype, length, ptr, bytes);
  }

  /** Raw scratch bytes for kernels (not counted as live buffers); give back with freeBytes. */
  allocBytes(bytes: number): number {
    let ptr = this.free.alloc(bytes);
    if (ptr === null) {
      this.grow(bytes);
      ptr = this.free.alloc(bytes);
      if (ptr === null) throw new Error(`cpu: out of memory allocating ${bytes} bytes`);
    }
    return ptr;
  }

  freeBytes(ptr: number): void {
    this.free.release(ptr);
  }

  private grow(bytes: number): void {
    const need = Math.ceil(bytes / ALIGN) * ALIGN - this.free.tailFree(this.end);
    const current = this.end / PAGE;
    // Grow by at least half the current size to keep the number of growths small.
    let pages = Math.max(Math.ceil(need / PAGE), Math.ceil(current / 2));
    pages = Math.min(pages, MAX_PAGES - current);
    if (pages <= 0 || pages * PAGE < need) throw new Error(`cpu: out of memory: ${bytes} bytes requested, 4 GiB limit`);
    this.memoryObj!.grow(pages);
    this.free.addSpace(this.end, pages * PAGE);
    this.end += pages * PAGE;
    this.views = undefined; // views over the old length are stale
  }

  /** Typed views over the whole memory, re-created after growth. */
  mem(): { f32: Float32Array; i32: Int32Array; u8: Uint8Array } {
    if (!this.views || this.views.u8.byteLength !== this.end) {
      const buf = this.memoryObj!.buffer;
      this.views = { f32: new Float32Array(buf, 0, this.end / 4), i32: new Int32Array(buf, 0, this.end / 4), u8: new Uint8Array(buf, 0, this.end) };
    }
    return this.views;
  }

  write(buffer: DeviceBuffer, data: TypedArray, offset = 0): void {
    const b = this.own(buffer);
    if (offset + data.length > b.length) throw new Error(`cpu: write of ${data.length} at ${offset} exceeds buffer of ${b.length}`);
    const m = this.mem();
    const start = b.ptr / 4 + offset;
    if (b.dtype === 'f32') {
      if (data instanceof Float32Array) m.f32.set(data, start);
      else m.f32.set(Float32Array.from(data as ArrayLike<number>), start);
    } else {
      if (data instanceof Int32Array) m.i32.set(data, start);
      else m.i32.set(Int32Array.from(data as ArrayLike<number>), start);
    }
  }

  async read(buffer: DeviceBuffer, offset = 0, length?: number): Promise<TypedArray> {
    return this.readSync(buffer, offset, length);
  }

  /** A copy of the elements (kernels have all run: the backend is synchronous). */
  readSync(buffer: DeviceBuffer, offset = 0, length?: number): Float32Array | Int32Array {
    const b = this.own(buffer);
    const n = length ?? b.length - offset;
    if (offset < 0 || n < 0 || offset + n > b.length) throw new Error(`cpu: read of ${n} at ${offset} exceeds buffer of ${b.length}`);
    const m = this.mem();
    const start = b.ptr / 4 + offset;
    return b.dtype === 'f32' ? m.f32.slice(start, start + n) : m.i32.slice(start, start + n);
  }

  release(buffer: DeviceBuffer): void {
    const b = this.own(buffer);
    b.released = true;
    this.free.release(b.ptr);
    this.live--;
    this.liveBytes -= b.bytes;
  }

  supports(op: string, dtypes: readonly DType[], _attrs: Attrs): true | string {
    if (!getKernel(op, this.name)) return 'no kernel registered';
    for (const d of dtypes) if (d !== 'f32' && d !== 'i32') return `${d} is not supported on cpu (f32 and i32 only)`;
    return true;
  }

  flush(): void {}
  async sync(): Promise<void> {}

  memory(): MemoryInfo {
    return { buffers: this.live, bytes: this.liveBytes };
  }

  describe(): Record<string, unknown> {
    return {
      threads: this.threads,
      simd: this.relaxed ? 'wasm simd128 + relaxed simd' : 'wasm simd128',
      conv: this.convAlgorithm,
      module: this.wasmPath,
      memoryBytes: this.end,
      memoryLimitBytes: MAX_PAGES * PAGE,
      liveBuffers: this.live,
      liveBytes: this.liveBytes,
    };
  }

  /** Byte address of a tensor view's first element. */
  addr(t: TensorInfo): number {
    const b = this.own(t.buffer);
    return b.ptr + t.offset * 4;
  }

  own(buffer: DeviceBuffer): CpuBuffer {
    if (!(buffer instanceof CpuBuffer)) throw new Error(`cpu: buffer belongs to backend '${buffer.backend}'`);
    if (buffer.released) throw new Error('cpu: buffer used after release');
    return buffer;
  }

  /** Splits [0, n) into at most `threads` contiguous ranges of at least `grain` items. */
  split(n: number, grain = 1): [number, number][] {
    const parts = Math.max(1, Math.min(this.threads, Math.floor(n / Math.max(1, grain))));
    const out: [number, number][] = [];
    for (let p = 0; p < parts; p++) {
      const b = Math.floor((n * p) / parts), e = Math.floor((n * (p + 1)) / parts);
      if (e > b) out.push([b, e]);
    }
    return out;
  }
}

export function sizeBytes(t: TensorInfo): number {
  return sizeOf(t.shape) * 4;
}
