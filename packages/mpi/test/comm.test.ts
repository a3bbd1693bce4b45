// The MPI addon under a real `mpiexec -n 2`: every call, every wire type, and an event loop
// that keeps running while a rank waits in a collective.

import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { addonPath, detectMpiLaunch } from '../src/comm.js';
import { mpiMissing, mpiexec } from './mpirun.js';

const missing = mpiMissing();
const script = fileURLToPath(new URL('./fixtures/comm-check.mjs', import.meta.url));

describe('detectMpiLaunch', () => {
  it('reads the launchers of Open MPI, MPICH/PMI, PMIx and Slurm', () => {
    expect(detectMpiLaunch({})).toBeNull();
    expect(detectMpiLaunch({ OMPI_COMM_WORLD_SIZE: '4' })).toEqual({ source: 'OMPI_COMM_WORLD_SIZE', size: 4 });
    expect(detectMpiLaunch({ PMI_SIZE: '2' })).toEqual({ source: 'PMI_SIZE', size: 2 });
    expect(detectMpiLaunch({ PMI_SIZE: '1' })).toBeNull();
    // The batch script of an allocation is not a launch; an srun step is.
    expect(detectMpiLaunch({ SLURM_NTASKS: '8' })).toBeNull();
    expect(detectMpiLaunch({ SLURM_NTASKS: '8', SLURM_STEP_ID: '0' })).toEqual({ source: 'SLURM_NTASKS', size: 8 });
  });
});

describe.skipIf(missing !== null)(`MPI addon under mpiexec -n 2${missing ? ` (skipped: ${missing})` : ''}`, () => {
  it('barrier, broadcast and all-reduce in f32, f64, i32, bf16 and f16, and f32 over a bf16 wire', async () => {
    const r = await mpiexec(2, [process.execPath, script, addonPath()], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l)).sort((a, b) => a.rank - b.rank);
    expect(lines.map((l) => l.rank)).toEqual([0, 1]);
    for (const l of lines) {
      expect(l.size).toBe(2);
      expect(l.localSize).toBe(2);
      expect(l.f32sum).toEqual([3, -5, Math.fround(1e-3) * 2]);
      expect(l.f32avgHead).toEqual([1, 2, 3]);
      expect(l.f64avg).toBe(0.75);
      expect(l.i32sum).toBe(3);
      expect(l.bf16).toEqual([0x4080, 0x4000]);
      expect(l.f16).toEqual([0x7c00, 0x7b53]);
      expect(l.bf16wire).toEqual([2, 0.333984375]);
      expect(l.broadcast).toEqual([7, 1]);
      expect(l.mismatch).toMatch(/does not match the array/);
    }
    expect(lines.map((l) => l.localRank).sort()).toEqual([0, 1]);
    // Rank 0 waited ~1 s in the barrier with its timer firing every 20 ms.
    expect(lines[0].ticksDuringBarrier).toBeGreaterThan(5);
  });
});
