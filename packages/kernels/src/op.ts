// The op table's row type. Each op family lives in src/ops/<family>.ts: its rows (semantics,
// shape inference, input domains, tolerance, harness cases and backward rule) in one place.

import type { Attrs, DType, TensorInfo } from './types.js';

/** How an input's dtype is constrained: any float (f32/f16/f64, all float inputs of a call equal), i32, or any. */
export type InputKind = 'float' | 'i32' | 'any';

export interface InputSpec {
  name: string;
  kind: InputKind;
  /** May be omitted (trailing inputs only), e.g. conv2d's bias. */
  optional?: boolean;
  /** Takes any number (>= 1) of tensors: only as the last spec (concat). */
  variadic?: boolean;
}

export interface ShapeDtype {
  shape: readonly number[];
  dtype: DType;
}

/** Values the harness draws for an input. Integers are drawn from [lo, hi). */
export type Domain =
  | { kind: 'uniform'; lo: number; hi: number }
  | { kind: 'int'; lo: number; hi: number }
  /** Uniform magnitude in [lo, hi] with a random sign: keeps inputs away from kinks at 0. */
  | { kind: 'away'; lo: number; hi: number };

/** Tolerance classes; thresholds live in harness/tolerance.ts. */
export type ToleranceClass =
  | 'exact'          // bit-identical (layout ops, indices, integer math)
  | 'elementwise'    // |x-y| <= max(R|x+y|, A) with tight R, A: rounding of a few ops
  | 'transcendental' // as elementwise, looser: exp/log/tanh/erf...
  | 'accumulate'     // normalised MSE: sums, matmul, conv, norms, attention
  | 'loose';         // normalised MSE, looser: long chains (quantizer losses, gradients of fused ops)

export interface OpCase {
  name: string;
  /** Input shapes in input order (a variadic input contributes one shape per tensor). */
  shapes: number[][];
  attrs?: Attrs;
  /** Per-input dtypes, for inputs of kind 'any' (default: f32 for float inputs). */
  dtypes?: DType[];
  /** Per-input domain overriding the row's. */
  domains?: (Domain | undefined)[];
  /** Skip the finite-difference check for this case (too large, or non-smooth). */
  noGrad?: boolean;
}

/** What a backward rule may do: run ops on the backend of the forward call. */
export interface VjpContext {
  run(op: string, inputs: readonly TensorInfo[], attrs?: Attrs): TensorInfo[];
  /** A view of the same elements under another shape (no copy). */
  reshape(t: TensorInfo, shape: readonly number[]): TensorInfo;
}

/**
 * Backward rule: gradients for each input (null where the input gets none) from the
 * upstream gradients of the outputs (null where an output got none). Written with ops only,
 * so a new backend needs no autograd work. `needs[i]` is false when nobody wants input i's
 * gradient (a frozen weight): expensive rules skip it and return null there.
 */
export type VjpFn = (
  ctx: VjpContext,
  inputs: readonly TensorInfo[],
  outputs: readonly TensorInfo[],
  dys: readonly (TensorInfo | null)[],
  attrs: Attrs,
  needs: readonly boolean[],
) => (TensorInfo | null)[];

export interface OpDef {
  name: string;
  /** One or two sentences: exact semantics, including edge cases. */
  doc: string;
  inputs: InputSpec[];
  outputs: string[];
  /** Validates inputs and attrs (throw OpError) and returns output shapes and dtypes. */
  infer(inputs: readonly ShapeDtype[], attrs: Attrs): ShapeDtype[];
  /** Inputs written in place (optimizer updates). Such ops have no outputs. */
  mutates?: number[];
  /** Default domain for every input (or per input). */
  domain?: Domain | (Domain | undefined)[];
  /** Per output (or one for all); for mutating ops, per mutated input. */
  tolerance: ToleranceClass | ToleranceClass[];
  /** Harness cases: a regular shape, an odd one (5x7x11x13 where it fits), a size-1 dim, a broadcast, an empty tensor. */
  cases: OpCase[];
  /** Backward rule, if the op is differentiable. */
  vjp?: VjpFn;
  /** Outputs that carry gradient (default: every float output). */
  gradOutputs?: number[];
  /** Inputs that receive gradient (default: every float input). */
  gradInputs?: number[];
  /** For backward kernels: the forward op whose rule uses it (they are checked through that rule). */
  backwardOf?: string;
  /**
   * Set, to the reason, when the rule is deliberately not the derivative of the forward function
   * (straight-through estimators, stop-gradients): finite differences of the op cannot check it, so
   * the generic check skips it and the op's own test checks the rule against a surrogate forward.
   * Backend-vs-reference gradient parity still runs.
   */
  surrogateGradient?: string;
  /**
   * Under mixed precision (packages/tensor's autocast): 'low' runs the op with its float inputs in
   * the low-precision dtype (the GEMM-shaped ops, where f16 pays); 'f32' runs it in float32 (ops
   * that overflow or lose accuracy in f16: exponentials, long sums, norms, losses). Unset: the op
   * runs in the widest float dtype among its inputs.
   */
  autocast?: 'low' | 'f32';
}

const table = new Map<string, OpDef>();

export function defineOps(defs: OpDef[]): void {
  for (const d of defs) {
    if (table.has(d.name)) throw new Error(`op '${d.name}' is defined twice`);
    table.set(d.name, d);
  }
}

export function getOp(name: string): OpDef {
  const d = table.get(name);
  if (!d) throw new Error(`unknown op '${name}'`);
  return d;
}

export function hasOp(name: string): boolean {
  return table.has(name);
}

export function allOps(): OpDef[] {
  return [...table.values()];
}
