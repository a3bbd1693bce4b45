#!/usr/bin/env node
// The `ibq` command as npm links it (node_modules/.bin/ibq, `npx ibq`, `npm link`): a tracked
// file, so npm can link it at `npm ci` time, before the bundle exists. It runs the bundle
// that `npm run build` writes (dist/ibq.mjs), or says how to build it.
import { existsSync } from 'node:fs';

const bundle = new URL('../dist/ibq.mjs', import.meta.url);
if (!existsSync(bundle)) {
  process.stderr.write(`ibq: the command is not built yet (no ${bundle.pathname}): run \`npm run build\` in the repository\n`);
  process.exit(1);
}
await import(bundle.href);
