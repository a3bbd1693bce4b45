// A counter-based random stream: (seed, offset) fully describes it, so the same seed gives
// the same numbers on every backend, and the state saved in a checkpoint resumes it exactly.
// Each draw takes the next `n` counters of the op table's Philox stream.

import type { Backend } from '@ibq/kernels';
import { Tensor, apply } from './engine.js';
import { getBackend } from './ops.js';

export interface GeneratorState {
  seed: number;
  offset: number;
}

export class Generator {
  constructor(public seed = 0, public offset = 0) {
    if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`Generator: seed must be a non-negative integer, got ${seed}`);
  }

  /** Reserves `n` counters (rounded up to whole Philox blocks of 4) and returns the first. */
  take(n: number): number {
    const at = this.offset;
    this.offset += Math.ceil(n / 4) * 4;
    return at;
  }

  state(): GeneratorState {
    return { seed: this.seed, offset: this.offset };
  }

  static from(s: GeneratorState): Generator {
    return new Generator(s.seed, s.offset);
  }

  uniform(shape: readonly number[], low = 0, high = 1, backend: Backend = getBackend()): Tensor {
    const n = shape.reduce((a, d) => a * d, 1);
    return apply('random_uniform', [], { shape: [...shape], seed: this.seed, offset: this.take(n), low, high }, backend)[0];
  }

  normal(shape: readonly number[], mean = 0, std = 1, backend: Backend = getBackend()): Tensor {
    const n = shape.reduce((a, d) => a * d, 1);
    return apply('random_normal', [], { shape: [...shape], seed: this.seed, offset: this.take(n + (n % 2)), mean, std }, backend)[0];
  }

  /** Dropout with a fresh slice of the stream; identity when p is 0. */
  dropout(x: Tensor, p: number): Tensor {
    if (p === 0) return x;
    return apply('dropout', [x], { p, seed: this.seed, offset: this.take(x.size) })[0];
  }
}
