// `npm run bench -w @ibq/ar -- [args]`: the sampling benchmarks (ar.bench.ts) and then the
// training one (train.bench.ts), each given the same arguments; `--only` names figures of either
// (throughput, latency, stream_chunk, big_token; train).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const runTs = join(here, '..', '..', '..', 'scripts', 'run-ts.mjs');
for (const file of ['ar.bench.ts', 'train.bench.ts']) {
  const r = spawnSync(process.execPath, [runTs, join(here, file), ...process.argv.slice(2)], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
