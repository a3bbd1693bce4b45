// Bundles the `ibq` command into dist/ibq.mjs (esbuild; `webgpu`, a native addon, stays
// external and is loaded only when the webgpu backend is asked for).
// usage: node build.mjs [--outdir <folder>]

import { chmodSync, copyFileSync, existsSync, readdirSync, statSync } from 'node:fs';
import { relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT, bundle } from '../../scripts/bundle.mjs';

const here = new URL('.', import.meta.url).pathname;
const { values } = parseArgs({ options: { outdir: { type: 'string' } } });
const outdir = resolve(values.outdir ?? resolve(here, 'dist'));

const { outfile, warnings } = await bundle({
  entry: resolve(here, 'src/bin.ts'),
  outdir,
  name: 'ibq',
  // Native addons cannot be bundled; they load from node_modules at run time.
  external: ['webgpu', 'sharp'],
  executable: true,
}).catch((e) => {
  console.error(e.message);
  process.exit(1);
});
chmodSync(outfile, 0o755);

// The cpu backend's wasm (built by the kernels package) is looked for beside the bundle too.
const kernelsBuild = resolve(REPO_ROOT, 'packages/kernels/build');
if (existsSync(kernelsBuild)) {
  for (const f of readdirSync(kernelsBuild).filter((f) => f.endsWith('.wasm'))) copyFileSync(resolve(kernelsBuild, f), resolve(outdir, f));
}
for (const w of warnings) console.warn(`warning: ${w}`);
console.log(`built ${relative(REPO_ROOT, outfile)} (${(statSync(outfile).size / 1024).toFixed(0)} KiB)`);
