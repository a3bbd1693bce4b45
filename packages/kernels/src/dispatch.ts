// The kernel registry keyed by (op, backend), and runOp: validate against the op table,
// allocate outputs, call the backend's kernel. A missing pair is an error, never a detour.

import { getOp, type ShapeDtype } from './op.js';
import {
  type Attrs,
  type Backend,
  type KernelFn,
  NotSupportedError,
  OpError,
  type TensorInfo,
  isFloat,
  sizeOf,
} from './types.js';

const kernels = new Map<string, Map<string, KernelFn>>();

export function registerKernel<B extends Backend>(op: string, backend: string, fn: KernelFn<B>): void {
  getOp(op); // a kernel for an op the table does not know is a bug
  let m = kernels.get(op);
  if (!m) kernels.set(op, (m = new Map()));
  if (m.has(backend)) throw new Error(`kernel (${op}, ${backend}) registered twice`);
  m.set(backend, fn as KernelFn);
}

/** Removes a kernel and returns it (tests that prove a missing kernel is caught put it back). */
export function unregisterKernel(op: string, backend: string): KernelFn | undefined {
  const fn = kernels.get(op)?.get(backend);
  kernels.get(op)?.delete(backend);
  return fn;
}

export function getKernel(op: string, backend: string): KernelFn | undefined {
  return kernels.get(op)?.get(backend);
}

/** Ops with a kernel on `backend`. */
export function kernelsOf(backend: string): string[] {
  const out: string[] = [];
  for (const [op, m] of kernels) if (m.has(backend)) out.push(op);
  return out.sort();
}

/** Checks inputs against the op's row and returns the output shapes and dtypes. */
export function inferOp(op: string, inputs: readonly ShapeDtype[], attrs: Attrs): ShapeDtype[] {
  const def = getOp(op);
  const specs = def.inputs;
  const variadic = specs.length > 0 && specs[specs.length - 1].variadic;
  const required = specs.filter((s) => !s.optional).length;
  if (inputs.length < required || (!variadic && inputs.length > specs.length)) {
    throw new OpError(op, `expected ${variadic ? 'at least ' : ''}${required}${
      !variadic && required !== specs.length ? `-${specs.length}` : ''} inputs, got ${inputs.length}`);
  }
  let floatDtype: string | undefined;
  inputs.forEach((t, i) => {
    const spec = specs[Math.min(i, specs.length - 1)];
    if (spec.kind === 'i32' && t.dtype !== 'i32') {
      throw new OpError(op, `input '${spec.name}' must be i32, got ${t.dtype}`);
    }
    if (spec.kind === 'float') {
      if (!isFloat(t.dtype)) throw new OpError(op, `input '${spec.name}' must be a float tensor, got ${t.dtype}`);
      if (floatDtype && floatDtype !== t.dtype) {
        throw new OpError(op, `input '${spec.name}' is ${t.dtype} but an earlier float input is ${floatDtype}`);
      }
      floatDtype = t.dtype;
    }
    for (const d of t.shape) {
      if (!Number.isInteger(d) || d < 0) throw new OpError(op, `input '${spec.name}' has invalid shape [${t.shape}]`);
    }
  });
  return def.infer(inputs, attrs);
}

export interface RunOptions {
  /** Pre-allocated outputs (the harness passes guarded views); shapes must match inference. */
  outputs?: readonly TensorInfo[];
}

/** Runs one op on `backend`. Returns the outputs (newly allocated unless given). */
export function runOp(
  backend: Backend,
  op: string,
  inputs: readonly TensorInfo[],
  attrs: Attrs = {},
  options: RunOptions = {},
): TensorInfo[] {
  const def = getOp(op);
  const kernel = getKernel(op, backend.name);
  if (!kernel) throw new NotSupportedError(op, backend.name, 'no kernel registered');
  for (const t of inputs) {
    if (t.buffer.backend !== backend.name) {
      throw new OpError(op, `input lives on backend '${t.buffer.backend}', not '${backend.name}'`);
    }
    if (t.offset + sizeOf(t.shape) > t.buffer.length) {
      throw new OpError(op, `input view [${t.shape}] at offset ${t.offset} exceeds its buffer of ${t.buffer.length}`);
    }
  }
  const infos = inferOp(op, inputs, attrs);
  const dtypes = inputs.map((t) => t.dtype);
  const ok = backend.supports(op, dtypes, attrs);
  if (ok !== true) throw new NotSupportedError(op, backend.name, ok);

  let outputs: readonly TensorInfo[];
  if (options.outputs) {
    outputs = options.outputs;
    if (outputs.length !== infos.length) throw new OpError(op, `expected ${infos.length} outputs, given ${outputs.length}`);
    outputs.forEach((o, i) => {
      const want = infos[i];
      if (o.dtype !== want.dtype || o.shape.length !== want.shape.length || o.shape.some((d, j) => d !== want.shape[j])) {
        throw new OpError(op, `output ${i} must be ${want.dtype}[${want.shape}], given ${o.dtype}[${o.shape}]`);
      }
    });
  } else {
    outputs = infos.map((s) => ({ buffer: backend.alloc(s.dtype, sizeOf(s.shape)), offset: 0, shape: s.shape, dtype: s.dtype }));
  }
  // Nothing to compute when every output is empty (and nothing is updated in place).
  const empty = outputs.length > 0 && outputs.every((o) => sizeOf(o.shape) === 0);
  if (!empty && !(def.mutates && inputs.every((t) => sizeOf(t.shape) === 0))) {
    if (observer) {
      const t0 = performance.now();
      kernel(backend, inputs, outputs, attrs);
      observer(op, inputs, performance.now() - t0);
    } else kernel(backend, inputs, outputs, attrs);
  }
  return [...outputs];
}

/** Sees every kernel call with its wall time (the work itself on cpu and reference; on webgpu, only the encoding). */
export type KernelObserver = (op: string, inputs: readonly TensorInfo[], ms: number) => void;
let observer: KernelObserver | null = null;

/** Installs (or, with null, removes) the one kernel observer: for profiling. */
export function observeKernels(fn: KernelObserver | null): void {
  observer = fn;
}

/** A view of `t` under another shape with the same element count. */
export function reshapeInfo(t: TensorInfo, shape: readonly number[]): TensorInfo {
  if (sizeOf(shape) !== sizeOf(t.shape)) {
    throw new Error(`cannot reshape [${t.shape}] (${sizeOf(t.shape)} elements) to [${shape}]`);
  }
  return { buffer: t.buffer, offset: t.offset, shape: [...shape], dtype: t.dtype };
}
