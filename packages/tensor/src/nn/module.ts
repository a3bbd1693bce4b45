// Module: named children, parameters and buffers whose state-dict keys are PyTorch's for
// the same module tree (e.g. `encoder.down.0.block.0.norm1.weight`).

import type { TypedArray } from '@ibq/kernels';
import { type HostTensor, int64ToInt32, toFloat32 } from '@ibq/formats';
import { Tensor } from '../engine.js';

/** Entries come from files (host memory); read device tensors with hostTensor() first. */
export type StateEntry = HostTensor;
export type { HostTensor };

export async function hostTensor(t: Tensor): Promise<HostTensor> {
  return { dtype: t.dtype as HostTensor['dtype'], shape: [...t.shape], data: (await t.data()) as HostTensor['data'] };
}

export class StateDictError extends Error {
  constructor(readonly missing: string[], readonly unexpected: string[], readonly mismatched: string[]) {
    const parts: string[] = [];
    const list = (what: string, keys: string[]) => {
      if (keys.length) parts.push(`${keys.length} ${what}:\n  ${keys.slice(0, 50).join('\n  ')}${keys.length > 50 ? `\n  ... and ${keys.length - 50} more` : ''}`);
    };
    list('missing keys', missing);
    list('unexpected keys', unexpected);
    list('shape mismatches', mismatched);
    super(`state dict does not fit the model:\n${parts.join('\n')}`);
    this.name = 'StateDictError';
  }
}

export class Module {
  training = true;
  private readonly _params = new Map<string, Tensor>();
  private readonly _buffers = new Map<string, { tensor: Tensor; persistent: boolean }>();
  private readonly _children = new Map<string, Module>();

  /** Registers a trainable parameter under `name` (requiresGrad is set). */
  protected param(name: string, t: Tensor): Tensor {
    t.requiresGrad = true;
    this._params.set(name, t);
    return t;
  }

  /** Registers a buffer (running statistics...); persistent ones are part of the state dict. */
  protected buffer(name: string, t: Tensor, persistent = true): Tensor {
    this._buffers.set(name, { tensor: t, persistent });
    return t;
  }

  /** Replaces a buffer's tensor (running stats updates); disposes the old one. */
  protected setBuffer(name: string, t: Tensor): void {
    const b = this._buffers.get(name);
    if (!b) throw new Error(`no buffer '${name}'`);
    if (b.tensor !== t) b.tensor.dispose();
    b.tensor = t;
  }

  protected getBuffer(name: string): Tensor {
    const b = this._buffers.get(name);
    if (!b) throw new Error(`no buffer '${name}'`);
    return b.tensor;
  }

  protected module<M extends Module>(name: string, m: M): M {
    this._children.set(name, m);
    return m;
  }

  children(): [string, Module][] {
    return [...this._children];
  }

  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, p] of this._params) out.push([prefix + n, p]);
    for (const [n, c] of this._children) out.push(...c.namedParameters(`${prefix}${n}.`));
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, p]) => p);
  }

  namedBuffers(prefix = '', persistentOnly = true): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, b] of this._buffers) if (b.persistent || !persistentOnly) out.push([prefix + n, b.tensor]);
    for (const [n, c] of this._children) out.push(...c.namedBuffers(`${prefix}${n}.`, persistentOnly));
    return out;
  }

  /** Parameters and persistent buffers by their PyTorch names, in registration order. */
  stateDict(): Map<string, Tensor> {
    const m = new Map<string, Tensor>();
    // PyTorch orders each module's own params, then its buffers, then its children.
    const walk = (mod: Module, prefix: string) => {
      for (const [n, p] of mod._params) m.set(prefix + n, p);
      for (const [n, b] of mod._buffers) if (b.persistent) m.set(prefix + n, b.tensor);
      for (const [n, c] of mod._children) walk(c, `${prefix}${n}.`);
    };
    walk(this, '');
    return m;
  }

  /**
   * Copies values into the parameters and buffers. With strict (default), any missing,
   * unexpected or shape-mismatched key fails the whole load with one error listing them all;
   * nothing is written unless the dict fits. Without strict, only fitting keys are loaded and
   * the lists come back.
   */
  loadStateDict(dict: Map<string, StateEntry> | Record<string, StateEntry>, options: { strict?: boolean } = {}): { missing: string[]; unexpected: string[] } {
    const strict = options.strict ?? true;
    const entries = dict instanceof Map ? dict : new Map(Object.entries(dict));
    const own = this.stateDict();
    const missing = [...own.keys()].filter((k) => !entries.has(k));
    const unexpected = [...entries.keys()].filter((k) => !own.has(k));
    const mismatched: string[] = [];
    for (const [k, t] of own) {
      const e = entries.get(k);
      if (!e) continue;
      const shape = e.shape;
      const numel = shape.reduce((a, d) => a * d, 1);
      // PyTorch stores 0-d scalars ([]) where we may hold [1]; accept equal element counts only then.
      const same = shape.length === t.shape.length ? shape.every((d, i) => d === t.shape[i]) : numel === 1 && t.size === 1;
      if (!same) mismatched.push(`${k}: checkpoint [${shape}] vs model [${t.shape}]`);
    }
    if (strict && (missing.length || unexpected.length || mismatched.length)) throw new StateDictError(missing, unexpected, mismatched);
    const bad = new Set(mismatched.map((m) => m.slice(0, m.indexOf(':'))));
    for (const [k, t] of own) {
      const e = entries.get(k);
      if (!e || bad.has(k)) continue;
      writeInto(t, e, k);
    }
    return { missing, unexpected };
  }

  train(mode = true): this {
    this.training = mode;
    for (const [, c] of this._children) c.train(mode);
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Frees every parameter and buffer. */
  dispose(): void {
    for (const [, p] of this.namedParameters()) p.dispose();
    for (const [, b] of this.namedBuffers('', false)) b.dispose();
  }
}

function writeInto(t: Tensor, e: StateEntry, key: string): void {
  let values: TypedArray;
  if (t.dtype === 'f32') values = toFloat32(e);
  else if (t.dtype === 'i32') {
    if (e.dtype === 'i64') values = int64ToInt32(e.data as BigInt64Array, key);
    else if (e.dtype === 'i32') values = e.data as Int32Array;
    else values = Int32Array.from(toFloat32(e));
  } else throw new Error(`loadStateDict: cannot load '${key}' into a ${t.dtype} tensor`);
  t.backend.write(t.info.buffer, values, t.info.offset);
}
