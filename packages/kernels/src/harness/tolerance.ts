// Tolerance classes: the one place their thresholds are set.

import type { ToleranceClass } from '../op.js';

export interface Tolerance {
  /** Elementwise: |x-y| <= max(R*|x+y|, A). */
  R?: number;
  A?: number;
  /** Normalised MSE: sum((x-y)^2) / sum(y^2) <= nmse. */
  nmse?: number;
}

export const TOLERANCES: Record<ToleranceClass, Tolerance> = {
  exact: { R: 0, A: 0 },
  elementwise: { R: 1e-6, A: 1e-6 },
  transcendental: { R: 2e-5, A: 1e-5 },
  accumulate: { nmse: 1e-9 },
  loose: { nmse: 1e-6 },
};

/** f16 storage: the same classes, scaled. */
export const F16_TOLERANCES: Record<ToleranceClass, Tolerance> = {
  exact: { R: 0, A: 0 },
  elementwise: { R: 2e-3, A: 2e-3 },
  transcendental: { R: 4e-3, A: 4e-3 },
  accumulate: { nmse: 1e-5 },
  loose: { nmse: 1e-4 },
};

export interface Mismatch {
  message: string;
}

/** Compares `actual` to `expected` under a tolerance; returns null when they agree. */
export function compare(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tolerance): Mismatch | null {
  if (actual.length !== expected.length) return { message: `length ${actual.length} != ${expected.length}` };
  for (let i = 0; i < actual.length; i++) {
    const x = actual[i], y = expected[i];
    if (Number.isNaN(x) || Number.isNaN(y)) return { message: `NaN at ${i}: got ${x}, expected ${y}` };
    if (!Number.isFinite(x) || !Number.isFinite(y)) {
      if (x !== y) return { message: `infinity mismatch at ${i}: got ${x}, expected ${y}` };
    }
  }
  if (tol.nmse !== undefined) {
    let num = 0, den = 0;
    for (let i = 0; i < actual.length; i++) {
      if (!Number.isFinite(expected[i])) continue;
      const d = actual[i] - expected[i];
      num += d * d;
      den += expected[i] * expected[i];
    }
    if (num === 0) return null;
    const nmse = num / Math.max(den, 1e-300);
    if (nmse > tol.nmse) {
      let worst = 0;
      for (let i = 1; i < actual.length; i++) {
        if (Math.abs(actual[i] - expected[i]) > Math.abs(actual[worst] - expected[worst])) worst = i;
      }
      return { message: `normalised MSE ${nmse.toExponential(3)} > ${tol.nmse} (worst at ${worst}: got ${actual[worst]}, expected ${expected[worst]})` };
    }
    return null;
  }
  const R = tol.R ?? 0, A = tol.A ?? 0;
  for (let i = 0; i < actual.length; i++) {
    const x = actual[i], y = expected[i];
    if (x === y) continue;
    if (Math.abs(x - y) > Math.max(R * Math.abs(x + y), A)) {
      return { message: `at ${i}: got ${x}, expected ${y} (|diff| ${Math.abs(x - y).toExponential(3)}, R ${R}, A ${A})` };
    }
  }
  return null;
}
