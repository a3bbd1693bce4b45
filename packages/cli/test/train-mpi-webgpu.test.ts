// `ibq train --device webgpu` under a real `mpiexec -n 2`: each rank pins its own GPU (DRI_PRIME
// from its local rank) before Dawn starts and says which adapter it took; too few GPUs is a clear
// error. On lavapipe there is one software device, so IBQ_GPU_PCI_LIST gives the ranks two
// distinct PCI addresses (the device-select layer, finding neither, leaves lavapipe) and the test
// checks the variable each rank set and that training still runs.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mpiMissing, mpiexec } from '../../mpi/test/mpirun.js';

const CLI_DIR = resolve(fileURLToPath(new URL('..', import.meta.url)));
const REPO = resolve(CLI_DIR, '../..');
// Inside the repository, so that @ibq/mpi's addon and webgpu resolve from node_modules as for dist/.
const OUT = join(REPO, `node_modules/.cache/ibq-mpi-webgpu-test-${process.pid}`);
const IBQ = join(OUT, 'ibq.mjs');
const dir = mkdtempSync(join(tmpdir(), 'ibq-train-mpi-webgpu-'));
const MICRO = fileURLToPath(new URL('../../ibq/configs/micro_test.yaml', import.meta.url));
const ENV = { XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? tmpdir() };

const missingMpi = mpiMissing();
/** null when Dawn finds an adapter here (lavapipe in CI), else why not. */
function webgpuMissing(): string | null {
  const probe = spawnSync(process.execPath, [join(CLI_DIR, 'dist/ibq.mjs'), 'devices', '--backends', 'webgpu'], { encoding: 'utf8', env: { ...process.env, ...ENV } });
  return probe.status === 0 && /^ {2}webgpu +available/m.test(probe.stdout) ? null : 'no webgpu adapter';
}
const missing = missingMpi ?? (existsSync(join(CLI_DIR, 'dist/ibq.mjs')) ? webgpuMissing() : 'the CLI is not built (npm run build)');

const trainArgs = (out: string) => [
  process.execPath, IBQ, 'train', '--config', MICRO, '--data', 'fashion-mnist', '--device', 'webgpu', '--out', out,
  '--batch-size', '1', '--steps', '1', '--log-every', '1', '--image-every', '1000', '--checkpoint-every', '1000',
];

beforeAll(async () => {
  if (missing) return;
  const built = await new Promise<number | null>((done) => spawn(process.execPath, [join(CLI_DIR, 'build.mjs'), '--outdir', OUT], { stdio: 'ignore' }).on('close', done));
  expect(built).toBe(0);
});
afterAll(() => {
  rmSync(OUT, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(missing !== null)(`ibq train --device webgpu under mpiexec -n 2${missing ? ` (skipped: ${missing})` : ''}`, () => {
  it('each rank pins its own GPU, says which adapter it took, and the step runs', async () => {
    const out = join(dir, 'pinned');
    const r = await mpiexec(2, trainArgs(out), { cwd: REPO, env: { ...ENV, IBQ_GPU_PCI_LIST: '0000:0a:00.0,0000:0b:00.0' }, timeoutMs: 180_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^rank 0 \(local 0 of 2\): webgpu adapter '[^']+', DRI_PRIME=pci-0000_0a_00_0! \(GPU 0000:0a:00\.0 from IBQ_GPU_PCI_LIST\)$/m);
    expect(r.stderr).toMatch(/^rank 1 \(local 1 of 2\): webgpu adapter '[^']+', DRI_PRIME=pci-0000_0b_00_0! \(GPU 0000:0b:00\.0 from IBQ_GPU_PCI_LIST\)$/m);
    expect(r.stdout + r.stderr).toMatch(/finished at step 1/);
    expect(existsSync(join(out, 'checkpoint.safetensors'))).toBe(true);
  }, 200_000);

  it("keeps the user's DRI_PRIME on every rank", async () => {
    const r = await mpiexec(2, trainArgs(join(dir, 'user')), { cwd: REPO, env: { ...ENV, DRI_PRIME: '1' }, timeoutMs: 180_000 });
    expect(r.code, r.stderr).toBe(0);
    for (const rank of [0, 1]) expect(r.stderr).toMatch(new RegExp(`^rank ${rank} \\(local ${rank} of 2\\): webgpu adapter '[^']+', as DRI_PRIME=1 says$`, 'm'));
  }, 200_000);

  it('fewer GPUs than ranks on the node: a clear error naming the counts, no run', async () => {
    const out = join(dir, 'toofew');
    const r = await mpiexec(2, trainArgs(out), { cwd: REPO, env: { ...ENV, IBQ_GPU_PCI_LIST: '0000:0a:00.0' }, timeoutMs: 60_000 });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--device webgpu: 2 ranks on this node need one GPU each, but there are 1 GPU\(s\) in IBQ_GPU_PCI_LIST/);
    expect(existsSync(join(out, 'checkpoint.safetensors'))).toBe(false);
  }, 80_000);
});
