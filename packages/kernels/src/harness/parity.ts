// The parity harness: runs an op's cases on a backend and on `reference`, with inputs and
// outputs placed at offsets inside guarded buffers, and compares under the op's tolerance.
// Also the finite-difference gradient check and the backend-vs-reference gradient check.

import { inferOp, reshapeInfo, runOp } from '../dispatch.js';
import type { Domain, OpCase, OpDef, ToleranceClass, VjpContext } from '../op.js';
import { ReferenceBackend } from '../backends/reference/index.js';
import type { Backend, DType, TensorInfo, TypedArray } from '../types.js';
import { isFloat, sizeOf } from '../types.js';
import { f32ToF16Bits, fromHalf, roundToHalf } from '../half.js';
import { drawValues, hashString, seededRandom } from './random.js';
import { F16_TOLERANCES, TOLERANCES, compare, type Tolerance } from './tolerance.js';

/** Elements of guard placed before and after every tensor (64 f32 = 256 bytes, WebGPU's offset alignment). */
export const GUARD = 64;
const FLOAT_SENTINEL = -7.25e11;
/** f16 guards: -7.25e11 overflows f16; -12344 is a multiple of its ulp there (8), far outside any case's values. */
const F16_SENTINEL = -12344;
const INT_SENTINEL = -1234567;
const DEFAULT_DOMAIN: Domain = { kind: 'uniform', lo: -2, hi: 2 };

export interface HostTensor {
  shape: number[];
  dtype: DType;
  values: number[];
}

function inputDtype(def: OpDef, c: OpCase, i: number, floatDtype: DType): DType {
  const spec = def.inputs[Math.min(i, def.inputs.length - 1)];
  const given = c.dtypes?.[i];
  if (given) return given === 'f32' || given === 'f64' ? (floatDtype === 'f16' ? 'f16' : given === 'f32' ? floatDtype : given) : given;
  return spec.kind === 'i32' ? 'i32' : floatDtype;
}

function domainFor(def: OpDef, c: OpCase, i: number): Domain {
  const fromCase = c.domains?.[i];
  if (fromCase) return fromCase;
  const d = def.domain;
  if (Array.isArray(d)) return d[Math.min(i, d.length - 1)] ?? DEFAULT_DOMAIN;
  if (d) return d;
  return def.inputs[Math.min(i, def.inputs.length - 1)].kind === 'i32' ? { kind: 'int', lo: 0, hi: 8 } : DEFAULT_DOMAIN;
}

/** The seeded host inputs of one case. */
export function caseInputs(def: OpDef, c: OpCase, floatDtype: DType = 'f32'): HostTensor[] {
  const rand = seededRandom(hashString(`${def.name}/${c.name}`));
  return c.shapes.map((shape, i) => {
    const dtype = inputDtype(def, c, i, floatDtype);
    let values = drawValues(sizeOf(shape), domainFor(def, c, i), rand);
    if (dtype === 'f32') values = values.map(Math.fround);
    if (dtype === 'f16') values = values.map(roundToHalf);
    return { shape, dtype, values };
  });
}

function typed(dtype: DType, values: ArrayLike<number>): TypedArray {
  if (dtype === 'f32') return Float32Array.from(values);
  if (dtype === 'f64') return Float64Array.from(values);
  if (dtype === 'i32') return Int32Array.from(values);
  // f16 travels as raw half words (the contract's read and write of f16 buffers).
  if (dtype === 'f16') return f32ToF16Bits(values);
  throw new Error(`harness: no host array for ${dtype}`);
}

function sentinelOf(dtype: DType): number {
  return dtype === 'i32' ? INT_SENTINEL : dtype === 'f16' ? F16_SENTINEL : FLOAT_SENTINEL;
}

/** Host numbers from what `read` returned: f16 buffers come back as half words. */
function numbers(dtype: DType, data: ArrayLike<number>): number[] {
  return dtype === 'f16' ? Array.from(data, fromHalf) : Array.from(data);
}

/** A float case's values as the reference sees them: f32 tensors holding the same (f16-rounded) numbers. */
function asF32(h: HostTensor): HostTensor {
  return h.dtype === 'f16' ? { ...h, dtype: 'f32' } : h;
}

/** Uploads a host tensor at offset `guard` inside a buffer padded with sentinel values. */
export function upload(backend: Backend, t: HostTensor, guard = 0, sentinel?: number): TensorInfo {
  const n = sizeOf(t.shape);
  const buffer = backend.alloc(t.dtype, n + 2 * guard);
  if (guard > 0 || n > 0) {
    const fill = sentinel ?? sentinelOf(t.dtype);
    const host = new Array<number>(n + 2 * guard).fill(fill);
    for (let i = 0; i < n; i++) host[guard + i] = t.values[i];
    if (host.length > 0) backend.write(buffer, typed(t.dtype, host));
  }
  return { buffer, offset: guard, shape: t.shape, dtype: t.dtype };
}

export async function download(backend: Backend, t: TensorInfo): Promise<number[]> {
  const n = sizeOf(t.shape);
  if (n === 0) return [];
  return numbers(t.dtype, await backend.read(t.buffer, t.offset, n));
}

function toleranceOf(def: OpDef, i: number, dtype: DType): Tolerance {
  const cls: ToleranceClass = Array.isArray(def.tolerance) ? def.tolerance[Math.min(i, def.tolerance.length - 1)] : def.tolerance;
  return (dtype === 'f16' ? F16_TOLERANCES : TOLERANCES)[cls];
}

export interface CaseOutcome {
  /** Null when the case passed; otherwise what went wrong. */
  failure: string | null;
}

async function allocGuarded(backend: Backend, shape: readonly number[], dtype: DType): Promise<TensorInfo> {
  const n = sizeOf(shape);
  return upload(backend, { shape: [...shape], dtype, values: new Array(n).fill(sentinelOf(dtype)) }, GUARD);
}

async function guardsIntact(backend: Backend, t: TensorInfo): Promise<string | null> {
  const all = numbers(t.dtype, await backend.read(t.buffer));
  const n = sizeOf(t.shape);
  const sentinel = t.dtype === 'f32' ? Math.fround(FLOAT_SENTINEL) : sentinelOf(t.dtype);
  for (let i = 0; i < all.length; i++) {
    if (i >= GUARD && i < GUARD + n) continue;
    if (all[i] !== sentinel && !(Number.isNaN(all[i]) && Number.isNaN(sentinel))) {
      return `guard value at ${i < GUARD ? i - GUARD : i - GUARD - n + 1} ${i < GUARD ? 'before' : 'after'} the tensor changed to ${all[i]}`;
    }
  }
  return null;
}

/**
 * Runs one case on `backend` (inputs and outputs at guarded offsets) and on a fresh
 * reference backend, and compares every output (or every mutated input).
 * With floatDtype 'f16' the backend gets f16 inputs (the case's values rounded to f16) and the
 * reference the same numbers in f32; outputs are compared under F16_TOLERANCES.
 */
export async function checkCase(backend: Backend, def: OpDef, c: OpCase, floatDtype: DType = 'f32'): Promise<CaseOutcome> {
  const host = caseInputs(def, c, floatDtype);
  const attrs = c.attrs ?? {};
  const ref = new ReferenceBackend();
  const refHost = host.map(asF32);

  // Expected values from the reference backend.
  const refIn = refHost.map((h) => upload(ref, h));
  const refOut = runOp(ref, def.name, refIn, attrs);
  const expected = def.mutates
    ? await Promise.all(def.mutates.map((i) => download(ref, refIn[i])))
    : await Promise.all(refOut.map((t) => download(ref, t)));

  const before = backend.memory();
  const inputs = host.map((h) => upload(backend, h, GUARD));
  const infos = inferOp(def.name, inputs, attrs);
  const outputs = await Promise.all(infos.map((s) => allocGuarded(backend, s.shape, s.dtype)));
  let failure: string | null = null;
  try {
    runOp(backend, def.name, inputs, attrs, { outputs });
    const targets = def.mutates ? def.mutates.map((i) => inputs[i]) : outputs;
    for (let k = 0; k < targets.length && !failure; k++) {
      const got = await download(backend, targets[k]);
      const m = compare(got, expected[k], toleranceOf(def, k, floatDtype));
      if (m) failure = `${def.mutates ? `updated input '${def.inputs[def.mutates[k]].name}'` : `output '${def.outputs[k]}'`}: ${m.message}`;
      const g = await guardsIntact(backend, targets[k]);
      if (!failure && g) failure = `output ${k}: ${g}`;
    }
    // Inputs that are not updated in place must come back unchanged.
    for (let i = 0; i < inputs.length && !failure; i++) {
      if (def.mutates?.includes(i)) continue;
      const got = await download(backend, inputs[i]);
      const same = got.every((v, j) => Object.is(v, host[i].dtype === 'f32' ? Math.fround(host[i].values[j]) : host[i].values[j]) || (v === host[i].values[j]));
      if (!same) failure = `input '${def.inputs[Math.min(i, def.inputs.length - 1)].name}' was modified`;
    }
  } catch (e) {
    failure = `threw: ${(e as Error).stack ?? e}`;
  } finally {
    for (const t of [...inputs, ...outputs]) backend.release(t.buffer);
    for (const t of [...refIn, ...refOut]) ref.release(t.buffer);
  }
  await backend.sync();
  const after = backend.memory();
  if (!failure && (after.buffers !== before.buffers || after.bytes !== before.bytes)) {
    failure = `leak: ${after.buffers - before.buffers} buffers, ${after.bytes - before.bytes} bytes not returned`;
  }
  return { failure };
}

/** A VjpContext on `backend` that records what it allocates, so intermediates can be freed. */
export function recordingContext(backend: Backend): VjpContext & { allocated: TensorInfo[] } {
  const allocated: TensorInfo[] = [];
  return {
    allocated,
    run(op, inputs, attrs = {}) {
      const outs = runOp(backend, op, inputs, attrs);
      allocated.push(...outs);
      return outs;
    },
    reshape: reshapeInfo,
  };
}

function gradOutputsOf(def: OpDef, outputs: readonly TensorInfo[]): number[] {
  return def.gradOutputs ?? outputs.map((o, i) => (isFloat(o.dtype) ? i : -1)).filter((i) => i >= 0);
}

function gradInputsOf(def: OpDef, inputs: readonly TensorInfo[]): number[] {
  return def.gradInputs ?? inputs.map((t, i) => (isFloat(t.dtype) ? i : -1)).filter((i) => i >= 0);
}

/** Runs the op's backward rule on `backend`; returns host gradients per input (null where none). */
async function analyticGrads(backend: Backend, def: OpDef, c: OpCase, host: HostTensor[], dyHost: (HostTensor | null)[]): Promise<(number[] | null)[]> {
  const attrs = c.attrs ?? {};
  const inputs = host.map((h) => upload(backend, h));
  const outputs = runOp(backend, def.name, inputs, attrs);
  const dys = dyHost.map((d) => (d ? upload(backend, d) : null));
  const ctx = recordingContext(backend);
  const owned = new Set([...inputs, ...outputs, ...dys].filter((t): t is TensorInfo => !!t).map((t) => t.buffer));
  try {
    const grads = def.vjp!(ctx, inputs, outputs, dys, attrs, inputs.map(() => true));
    // A gradient comes back in its input's dtype (an f16 input gets an f16 gradient).
    grads.forEach((g, i) => {
      if (g && g.dtype !== inputs[i].dtype) {
        throw new Error(`the gradient of '${def.inputs[Math.min(i, def.inputs.length - 1)].name}' is ${g.dtype}, its input ${inputs[i].dtype}`);
      }
    });
    return await Promise.all(grads.map((g) => (g ? download(backend, g) : null)));
  } finally {
    const freed = new Set(owned);
    for (const t of [...inputs, ...outputs, ...dys]) if (t) backend.release(t.buffer);
    for (const t of ctx.allocated) {
      if (!freed.has(t.buffer)) {
        freed.add(t.buffer);
        backend.release(t.buffer);
      }
    }
  }
}

/**
 * Upstream gradients for a case: seeded values for every output that carries gradient, in
 * `dtype`; with 'f16', in each output's own dtype (f16, or f32 after a cast), rounded to it.
 */
function upstream(def: OpDef, c: OpCase, shapes: { shape: readonly number[]; dtype: DType }[], dtype: DType): (HostTensor | null)[] {
  const rand = seededRandom(hashString(`${def.name}/${c.name}/dy`));
  const carry = def.gradOutputs ?? shapes.map((s, i) => (isFloat(s.dtype) ? i : -1)).filter((i) => i >= 0);
  return shapes.map((s, i) => {
    if (!carry.includes(i)) return null;
    const t = dtype === 'f16' ? s.dtype : dtype;
    let values = drawValues(sizeOf(s.shape), { kind: 'uniform', lo: -1, hi: 1 }, rand);
    if (t === 'f32') values = values.map(Math.fround);
    if (t === 'f16') values = values.map(roundToHalf);
    return { shape: [...s.shape], dtype: t, values };
  });
}

/**
 * Central finite differences on reference in float64 against the op's backward rule.
 * Checks up to `samples` elements of each differentiable input.
 */
export async function gradCheck(def: OpDef, c: OpCase, samples = 24): Promise<CaseOutcome> {
  if (!def.vjp) return { failure: `${def.name} has no backward rule` };
  const ref = new ReferenceBackend();
  // Everything here runs in float64, a float dtype attribute (cast's target) included.
  const attrs = c.attrs?.dtype === 'f32' ? { ...c.attrs, dtype: 'f64' } : c.attrs ?? {};
  const host = caseInputs(def, c, 'f64');
  const infos = inferOp(def.name, host.map((h) => ({ shape: h.shape, dtype: h.dtype })), attrs);
  const dyHost = upstream(def, c, infos, 'f64');
  const analytic = await analyticGrads(ref, def, c, host, dyHost);

  const loss = async (h: HostTensor[]): Promise<number> => {
    const ins = h.map((x) => upload(ref, x));
    const outs = runOp(ref, def.name, ins, attrs);
    let L = 0;
    for (let k = 0; k < outs.length; k++) {
      const dy = dyHost[k];
      if (!dy) continue;
      const v = await download(ref, outs[k]);
      for (let j = 0; j < v.length; j++) L += v[j] * dy.values[j];
    }
    for (const t of [...ins, ...outs]) ref.release(t.buffer);
    return L;
  };

  const rand = seededRandom(hashString(`${def.name}/${c.name}/fd`));
  const gradInputs = gradInputsOf(def, host.map((h) => ({ dtype: h.dtype }) as TensorInfo));
  for (const i of gradInputs) {
    const g = analytic[i];
    const n = host[i].values.length;
    if (!g) return { failure: `backward rule gave no gradient for input '${def.inputs[Math.min(i, def.inputs.length - 1)].name}'` };
    const picks = n <= samples ? [...Array(n).keys()] : Array.from({ length: samples }, () => Math.floor(rand() * n));
    for (const e of picks) {
      const x0 = host[i].values[e];
      const h = 1e-6 * Math.max(1, Math.abs(x0));
      const plus = host.map((t, j) => (j === i ? { ...t, values: t.values.map((v, k) => (k === e ? x0 + h : v)) } : t));
      const minus = host.map((t, j) => (j === i ? { ...t, values: t.values.map((v, k) => (k === e ? x0 - h : v)) } : t));
      const fd = ((await loss(plus)) - (await loss(minus))) / (2 * h);
      const an = g[e];
      if (!(Math.abs(fd - an) <= 1e-5 + 1e-4 * Math.max(Math.abs(fd), Math.abs(an)))) {
        return { failure: `d/d${def.inputs[Math.min(i, def.inputs.length - 1)].name}[${e}]: finite difference ${fd}, backward rule ${an}` };
      }
    }
  }
  return { failure: null };
}

/**
 * The backend's gradients (through the op's rule, run on that backend) against reference's.
 * With floatDtype 'f16': f16 inputs and upstream gradients on the backend, the same numbers in
 * f32 on the reference, compared under F16_TOLERANCES.
 */
export async function checkGradParity(backend: Backend, def: OpDef, c: OpCase, floatDtype: DType = 'f32'): Promise<CaseOutcome> {
  if (!def.vjp) return { failure: null };
  const attrs = c.attrs ?? {};
  const host = caseInputs(def, c, floatDtype);
  const infos = inferOp(def.name, host.map((h) => ({ shape: h.shape, dtype: h.dtype })), attrs);
  const dyHost = upstream(def, c, infos, floatDtype);
  const expected = await analyticGrads(new ReferenceBackend(), def, c, host.map(asF32), dyHost.map((d) => d && asF32(d)));
  const before = backend.memory();
  let got: (number[] | null)[];
  try {
    got = await analyticGrads(backend, def, c, host, dyHost);
  } catch (e) {
    return { failure: `backward threw: ${(e as Error).stack ?? e}` };
  }
  for (let i = 0; i < got.length; i++) {
    if (!expected[i] || !got[i]) continue;
    const m = compare(got[i]!, expected[i]!, (floatDtype === 'f16' ? F16_TOLERANCES : TOLERANCES).loose);
    if (m) return { failure: `gradient of '${def.inputs[Math.min(i, def.inputs.length - 1)].name}': ${m.message}` };
  }
  await backend.sync();
  const after = backend.memory();
  if (after.buffers !== before.buffers || after.bytes !== before.bytes) {
    return { failure: `backward leaked ${after.buffers - before.buffers} buffers` };
  }
  return { failure: null };
}
