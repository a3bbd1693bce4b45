// Seeded inputs for tests: a small deterministic generator (not the ops' Philox stream).

import type { Domain } from '../op.js';

/** Splitmix32-style generator: returns floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    z = (z ^ (z >>> 16)) >>> 0;
    return z / 4294967296;
  };
}

/** A stable 32-bit hash of a string, to derive per-case seeds. */
export function hashString(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

export function drawValues(n: number, domain: Domain, rand: () => number): number[] {
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const u = rand();
    if (domain.kind === 'uniform') out[i] = domain.lo + (domain.hi - domain.lo) * u;
    else if (domain.kind === 'int') out[i] = Math.min(domain.hi - 1, domain.lo + Math.floor((domain.hi - domain.lo) * u));
    else {
      const m = domain.lo + (domain.hi - domain.lo) * u;
      out[i] = rand() < 0.5 ? -m : m;
    }
  }
  return out;
}
