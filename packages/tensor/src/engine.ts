// Tensors, their storage lifetimes, scopes (tidy/keep/dispose) and the autograd tape.
// Every op goes through `apply`: it runs the kernel via the op table and, when gradients
// are on and an input requires them, records a tape node whose backward is the op row's vjp.

import {
  type Attrs,
  type Backend,
  type DType,
  type TensorInfo,
  type TypedArray,
  type VjpContext,
  getOp,
  isFloat,
  reshapeInfo,
  runOp,
  sizeOf,
} from '@ibq/kernels';

/** A device buffer shared by a tensor and its views; freed when the last holder lets go. */
class Storage {
  refs = 1;
  constructor(readonly backend: Backend, readonly info: TensorInfo) {}
  retain(): void {
    this.refs++;
  }
  releaseRef(): void {
    if (--this.refs === 0) this.backend.release(this.info.buffer);
    if (this.refs < 0) throw new Error('tensor storage released twice');
  }
}

interface TapeNode {
  op: string;
  attrs: Attrs;
  inputs: Tensor[];
  outputs: Tensor[];
  /** Storages this node holds so that backward can read them after the user disposed the tensors. */
  saved: Storage[];
}

let nextId = 1;

export class Tensor {
  readonly id = nextId++;
  /** Set for tensors that are leaves with requiresGrad or results of recorded ops. */
  requiresGrad = false;
  grad: Tensor | null = null;
  /** The tape node that produced this tensor (null for leaves). */
  node: TapeNode | null = null;
  private disposed = false;

  /** @internal use the factory functions and ops. */
  constructor(readonly storage: Storage, readonly shape: readonly number[]) {
    track(this);
  }

  get backend(): Backend {
    return this.storage.backend;
  }
  get dtype(): DType {
    return this.storage.info.dtype;
  }
  get size(): number {
    return sizeOf(this.shape);
  }
  get rank(): number {
    return this.shape.length;
  }
  get isDisposed(): boolean {
    return this.disposed;
  }

  /** The kernel-level view of this tensor. */
  get info(): TensorInfo {
    if (this.disposed) throw new Error(`tensor #${this.id} [${this.shape}] used after dispose`);
    return reshapeInfo(this.storage.info, this.shape);
  }

  /** Reads the values (async: a device readback). */
  async data(): Promise<TypedArray> {
    const info = this.info;
    return this.backend.read(info.buffer, info.offset, this.size);
  }

  /** Reads values as a nested-free plain array. */
  async array(): Promise<number[]> {
    return Array.from(await this.data());
  }

  /** Reads a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new Error(`item() needs a one-element tensor, got [${this.shape}]`);
    return (await this.data())[0];
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.storage.releaseRef();
    if (this.grad) {
      this.grad.dispose();
      this.grad = null;
    }
  }

  /** A view with another shape sharing the same storage (and a tape edge when tracking). */
  reshape(shape: readonly number[]): Tensor {
    const resolved = resolveShape(shape, this.size);
    return apply('__reshape', [this], { shape: resolved })[0];
  }

  /** The same values, cut off from the tape. */
  detach(): Tensor {
    this.storage.retain();
    return new Tensor(this.storage, this.shape);
  }

  toString(): string {
    return `Tensor#${this.id}(${this.dtype}[${this.shape}] on ${this.backend.name})`;
  }
}

function resolveShape(shape: readonly number[], size: number): number[] {
  const out = [...shape];
  const neg = out.indexOf(-1);
  if (neg >= 0) {
    const rest = out.reduce((a, d, i) => (i === neg ? a : a * d), 1);
    if (rest === 0 || size % rest !== 0) throw new Error(`cannot reshape ${size} elements to [${shape}]`);
    out[neg] = size / rest;
  }
  if (sizeOf(out) !== size) throw new Error(`cannot reshape ${size} elements to [${shape}]`);
  return out;
}

// ---------------------------------------------------------------------------------------
// Scopes

const scopes: Set<Tensor>[] = [];

function track(t: Tensor): void {
  const top = scopes[scopes.length - 1];
  if (top) top.add(t);
}

/** Keeps a tensor alive past the enclosing tidy(). */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

function collect(result: unknown, out: Set<Tensor>): void {
  if (result instanceof Tensor) out.add(result);
  else if (Array.isArray(result)) result.forEach((r) => collect(r, out));
  else if (result && typeof result === 'object' && !(ArrayBuffer.isView(result))) {
    for (const v of Object.values(result)) collect(v, out);
  }
}

/**
 * Runs fn and disposes every tensor it created, except those it returns (anywhere in an
 * array or plain object) and those passed to keep(). Async functions are not allowed:
 * a scope must not span an await (other work would land in it).
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } finally {
    scopes.pop();
  }
  if (result instanceof Promise) throw new Error('tidy() takes a synchronous function');
  const returned = new Set<Tensor>();
  collect(result, returned);
  const parent = scopes[scopes.length - 1];
  for (const t of scope) {
    if (returned.has(t)) parent?.add(t);
    else t.dispose();
  }
  return result;
}

export function dispose(x: unknown): void {
  const all = new Set<Tensor>();
  collect(x, all);
  for (const t of all) t.dispose();
}

// ---------------------------------------------------------------------------------------
// Gradient mode

let gradEnabled = true;

/** Runs fn with the tape off: nothing inside is recorded. */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

export function isGradEnabled(): boolean {
  return gradEnabled;
}

// ---------------------------------------------------------------------------------------
// Mixed precision

let autocastDtype: DType | null = null;

/**
 * Runs fn under mixed precision, as torch.autocast: each op's row says whether it runs in
 * `dtype` (matmul, conv2d, attention), in float32 (norms, softmax, sums, losses...) or in the
 * widest float dtype among its inputs; inputs are cast on the way in, and the casts are on the
 * tape, so float32 leaves (master weights) get float32 gradients. Nested calls take the innermost
 * dtype; null turns it off inside.
 */
export function autocast<T>(dtype: 'f16' | null, fn: () => T): T {
  const prev = autocastDtype;
  autocastDtype = dtype;
  try {
    return fn();
  } finally {
    autocastDtype = prev;
  }
}

/** The inputs of op `name` cast as the autocast policy wants (the same array when nothing changes). */
function autocastInputs(name: string, inputs: readonly Tensor[], low: DType): { inputs: readonly Tensor[]; casts: Tensor[] } {
  const floats = inputs.filter((t) => isFloat(t.dtype));
  const policy = getOp(name).autocast;
  let target: DType;
  if (policy === 'low') target = low;
  else if (policy === 'f32') target = floats.some((t) => t.dtype === 'f64') ? 'f64' : 'f32';
  else if (floats.every((t) => t.dtype === floats[0].dtype)) return { inputs, casts: [] };
  else target = floats.some((t) => t.dtype === 'f64') ? 'f64' : 'f32';
  const casts: Tensor[] = [];
  const cast = inputs.map((t) => {
    if (!isFloat(t.dtype) || t.dtype === target) return t;
    const c = apply('cast', [t], { dtype: target })[0];
    casts.push(c);
    return c;
  });
  return { inputs: casts.length ? cast : inputs, casts };
}

/** Autocast leaves alone explicit conversions and ops that write an input in place (a cast copy would take the write). */
const autocastExempt = (name: string) => name === 'cast' || !!getOp(name).mutates;

// ---------------------------------------------------------------------------------------
// Running ops

/** Wraps a kernel-level output as a tensor owning its buffer. */
export function fromInfo(backend: Backend, info: TensorInfo): Tensor {
  return new Tensor(new Storage(backend, info), info.shape);
}

/**
 * Runs op `name` on the inputs' backend and returns its outputs as tensors, recording a tape
 * node when gradients are on and an input requires them. `__reshape` is the one pseudo-op:
 * a view sharing storage.
 */
export function apply(name: string, inputs: readonly Tensor[], attrs: Attrs = {}, backend?: Backend): Tensor[] {
  const be = backend ?? inputs[0]?.backend;
  if (!be) throw new Error(`${name}: no input tensor and no backend given`);
  for (const t of inputs) {
    if (t.backend !== be) throw new Error(`${name}: inputs live on different backends (${t.backend.name} and ${be.name})`);
  }
  let casts: Tensor[] = [];
  if (autocastDtype && name !== '__reshape' && !autocastExempt(name)) ({ inputs, casts } = autocastInputs(name, inputs, autocastDtype));
  let outputs: Tensor[];
  if (name === '__reshape') {
    const src = inputs[0];
    src.storage.retain();
    outputs = [new Tensor(src.storage, attrs.shape as number[])];
  } else {
    const outs = runOp(be, name, inputs.map((t) => t.info), attrs);
    outputs = outs.map((o) => fromInfo(be, o));
  }
  if (gradEnabled && inputs.some((t) => t.requiresGrad) && (name === '__reshape' || getOp(name).vjp)) {
    const saved: Storage[] = [];
    for (const t of [...inputs, ...outputs]) {
      t.storage.retain();
      saved.push(t.storage);
    }
    const node: TapeNode = { op: name, attrs, inputs: [...inputs], outputs, saved };
    for (const o of outputs) {
      o.requiresGrad = true;
      o.node = node;
    }
  }
  // The cast copies live on through the tape node (if any) that holds their storage.
  for (const c of casts) c.dispose();
  return outputs;
}

// ---------------------------------------------------------------------------------------
// Backward

function topoOrder(root: Tensor): TapeNode[] {
  const order: TapeNode[] = [];
  const seen = new Set<TapeNode>();
  const stack: [TapeNode, boolean][] = root.node ? [[root.node, false]] : [];
  while (stack.length) {
    const [n, done] = stack.pop()!;
    if (done) {
      order.push(n);
      continue;
    }
    if (seen.has(n)) continue;
    seen.add(n);
    stack.push([n, true]);
    for (const i of n.inputs) if (i.node && !seen.has(i.node)) stack.push([i.node, false]);
  }
  return order.reverse();
}

function freeNode(n: TapeNode): void {
  for (const s of n.saved) s.releaseRef();
  n.saved = [];
  for (const o of n.outputs) if (o.node === n) o.node = null;
}

/**
 * Backpropagates from `loss` (a one-element tensor, or any tensor with `gradient` given)
 * into `.grad` of every leaf that requires it, accumulating into existing grads. The tape
 * below `loss` is freed afterwards unless retainGraph.
 */
export function backward(loss: Tensor, gradient?: Tensor, options: { retainGraph?: boolean } = {}): void {
  if (!loss.requiresGrad) throw new Error('backward(): the tensor does not require gradients');
  const be = loss.backend;
  type Buf = TensorInfo['buffer'];
  const grads = new Map<Tensor, TensorInfo>();
  /** Buffers created during backward; each is released once no pending gradient refers to it. */
  const owned = new Set<Buf>();
  const refs = new Map<Buf, number>();
  const hold = (g: TensorInfo) => refs.set(g.buffer, (refs.get(g.buffer) ?? 0) + 1);
  const drop = (g: TensorInfo) => {
    const n = (refs.get(g.buffer) ?? 0) - 1;
    if (n > 0) return refs.set(g.buffer, n);
    refs.delete(g.buffer);
    if (owned.delete(g.buffer)) be.release(g.buffer);
  };
  const setGrad = (t: Tensor, g: TensorInfo) => {
    hold(g);
    const prev = grads.get(t);
    grads.set(t, g);
    if (prev) drop(prev);
  };
  const seed = gradient
    ? gradient.info
    : (() => {
        if (loss.size !== 1) throw new Error(`backward(): loss must have one element (got [${loss.shape}]) or pass a gradient`);
        const [one] = runOp(be, 'fill', [], { shape: [...loss.shape], value: 1, dtype: loss.dtype });
        owned.add(one.buffer);
        return one;
      })();
  setGrad(loss, seed);

  let fresh: Buf[] = [];
  const ctx: VjpContext = {
    run(op, ins, attrs = {}) {
      const outs = runOp(be, op, ins, attrs);
      for (const o of outs) {
        owned.add(o.buffer);
        fresh.push(o.buffer);
      }
      return outs;
    },
    reshape: reshapeInfo,
  };

  const nodes = topoOrder(loss);
  for (const n of nodes) {
    const dys = n.outputs.map((o) => grads.get(o) ?? null);
    if (dys.every((d) => d === null)) continue;
    fresh = [];
    let gins: (TensorInfo | null)[];
    if (n.op === '__reshape') {
      gins = [reshapeInfo(dys[0]!, n.inputs[0].shape)];
    } else {
      const inputs = n.inputs.map((t) => reshapeInfo(t.storage.info, t.shape));
      const outputs = n.outputs.map((t) => reshapeInfo(t.storage.info, t.shape));
      gins = getOp(n.op).vjp!(ctx, inputs, outputs, dys, n.attrs, n.inputs.map((t) => t.requiresGrad));
    }
    n.inputs.forEach((t, i) => {
      const g = gins[i];
      if (!g || !t.requiresGrad) return;
      const prev = grads.get(t);
      setGrad(t, prev ? ctx.run('add', [prev, g])[0] : g);
    });
    for (const o of n.outputs) {
      const g = grads.get(o);
      if (g) {
        grads.delete(o);
        drop(g);
      }
    }
    // Scratch of this rule that no pending gradient refers to.
    for (const b of fresh) if (!refs.has(b) && owned.delete(b)) be.release(b);
  }

  // Leaves get their gradients as tensors owning a copy (so backward's scratch can be freed).
  for (const [t, g] of grads) {
    if (t.node || !t.requiresGrad || t.isDisposed) continue;
    const copy = runOp(be, 'cast', [g], { dtype: g.dtype })[0];
    const gt = noGrad(() => fromInfo(be, copy));
    keep(gt);
    if (t.grad) {
      const sum = noGrad(() => apply('add', [t.grad!, gt])[0]);
      keep(sum);
      t.grad.dispose();
      gt.dispose();
      t.grad = sum;
    } else t.grad = gt;
  }
  for (const b of owned) be.release(b);
  if (!options.retainGraph) for (const n of nodes) freeNode(n);
}
