// DataParallel under a real `mpiexec -n 2`: gradients averaged across bucket boundaries that
// split tensors, f32 and bf16 on the wire, a gradient present on one rank only, broadcast of
// weights, the in-sync check, scalar averages and the any() vote.

import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mpiMissing, mpiexec } from './mpirun.js';

const missing = mpiMissing();
const PKG = resolve(fileURLToPath(new URL('..', import.meta.url)));
const REPO = resolve(PKG, '../..');
// Inside the repository, so that @ibq/mpi (and its addon) resolve from node_modules.
const OUT = join(REPO, `node_modules/.cache/ibq-mpi-dp-test-${process.pid}`);

beforeAll(async () => {
  if (missing) return;
  const { bundle } = await import(join(REPO, 'scripts/bundle.mjs'));
  await bundle({ entry: join(PKG, 'test/fixtures/dp-check.ts'), outdir: OUT, name: 'dp-check' });
});
afterAll(() => rmSync(OUT, { recursive: true, force: true }));

describe.skipIf(missing !== null)(`DataParallel under mpiexec -n 2${missing ? ` (skipped: ${missing})` : ''}`, () => {
  it('averages gradients bucket by bucket, broadcasts, votes', async () => {
    const r = await mpiexec(2, [process.execPath, join(OUT, 'dp-check.mjs')], { timeoutMs: 120_000, cwd: REPO });
    expect(r.code, r.stderr).toBe(0);
    const ranks = r.stdout.trim().split('\n').map((l) => JSON.parse(l)).sort((a, b) => a.rank - b.rank);
    expect(ranks).toHaveLength(2);
    for (const o of ranks) {
      for (const b of [12, 64, 1 << 20]) {
        expect(o[`f32/${b}`], `f32, bucket ${b} bytes`).toBeLessThan(1e-6);
        // bf16 keeps 8 bits of mantissa: a relative error of 2^-8 per rounding, two roundings.
        expect(o[`bf16/${b}`], `bf16, bucket ${b} bytes`).toBeLessThan(2 ** -7);
        expect(o[`bf16/${b}`]).toBeGreaterThan(0);
      }
      expect(o.inSyncBefore).toBe(false);
      expect(o.broadcastErr).toBe(0);
      expect(o.inSyncAfter).toBe(true);
      expect(o.average).toEqual([0.5, 10]);
      expect(o.numbers).toEqual([0.5, 2 ** 40]);
      expect([o.anyOne, o.anyNone]).toEqual([true, false]);
    }
  }, 180_000);
});
