// The kernels benchmark: `npm run bench:kernels -- --backend cpu|webgpu [--threads N]
// [--runs N] [--filter op] [--quick] [--no-peers]`. Each backend's part lives in
// bench/<backend>.bench.ts and exports `run(options)`; every figure is one JSON line.

import { parseArgs } from './common.js';

const options = parseArgs(process.argv.slice(2));
const name = options.backend;
if (!/^[a-z]+$/.test(name) || name === 'kernels') throw new Error(`--backend must name a backend (cpu, webgpu), got '${name}'`);
let part: { run(o: typeof options): Promise<void> };
try {
  // A glob import: the bundler (scripts/run-ts.mjs, esbuild) includes every bench/*.bench.ts.
  part = await import(`./${name}.bench.ts`);
} catch (e) {
  throw new Error(`no benchmark part for backend '${name}' (bench/${name}.bench.ts): ${(e as Error).message}`);
}
await part.run(options);
process.exit(0);
