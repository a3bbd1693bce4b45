// Test data for the trainer tests: no dataset needed, the same images in every run.

/** Deterministic smooth images in [-1, 1]: batch i ([n,3,r,r]) of a fixed synthetic dataset. */
export function syntheticBatch(i: number, n: number, r: number): Float32Array {
  const out = new Float32Array(n * 3 * r * r);
  for (let b = 0; b < n; b++) {
    const fx = 0.2 + 0.1 * ((i * n + b) % 7), fy = 0.3 + 0.05 * ((i * n + b) % 5);
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < r; y++)
        for (let x = 0; x < r; x++) out[((b * 3 + c) * r + y) * r + x] = Math.sin(fx * x + c) * Math.cos(fy * y - c) * 0.9;
  }
  return out;
}
