// `npm run bench:kernels -- [--backend cpu ...]`: runs the kernel benchmarks
// (packages/kernels/bench/kernels.bench.ts) with the arguments given. The benchmark prints
// one JSON line per figure; see packages/kernels/README.md.

import { existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { REPO_ROOT } from './bundle.mjs';
import { runTs } from './run-ts.mjs';

const BENCH = join(REPO_ROOT, 'packages', 'kernels', 'bench', 'kernels.bench.ts');

if (!existsSync(BENCH)) {
  console.error(`bench:kernels: ${relative(REPO_ROOT, BENCH)} does not exist yet: the kernel benchmarks have not been written.`);
  process.exit(1);
}
process.exitCode = await runTs(BENCH, process.argv.slice(2), { what: 'benchmark' });
