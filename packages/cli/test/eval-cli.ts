// What the eval commands' CLI tests share (fid-command.test.ts, eval-shard.test.ts): the built
// CLI (dist/ibq.mjs) run in a child process, and the synthetic Inception weights of the parity
// tests (packages/eval/src/synthetic-weights.ts, BatchNorm statistics from
// inception_golden.npz) written to a .safetensors file.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readNpz } from '@ibq/data';
import { syntheticInceptionState } from '@ibq/eval';
import { writeSafetensors } from '@ibq/tensor';

export const REPO = fileURLToPath(new URL('../../..', import.meta.url));
export const CLI = join(REPO, 'packages/cli/dist/ibq.mjs');
/** packages/eval's fixtures: the golden files and the small image folders. */
export const FX = join(REPO, 'packages/eval/test/fixtures');

/** `ibq ...args` from the repository root; its exit code and output. */
export function ibq(args: string[], timeout = 240_000): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd: REPO, timeout, maxBuffer: 1 << 24 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout, err: stderr });
    });
  });
}

/** Writes the synthetic Inception weights to `path`. */
export async function writeSyntheticInception(path: string): Promise<void> {
  const inc = await readNpz(join(FX, 'inception_golden.npz'));
  const stats = new Map<string, Float32Array>();
  for (const [k, v] of Object.entries(inc)) if (k.startsWith('bn.')) stats.set(k.slice(3), v.data as Float32Array);
  await writeSafetensors(path, syntheticInceptionState(stats));
}
