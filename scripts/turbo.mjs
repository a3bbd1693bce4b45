// Runs the repository's Turborepo with its anonymous telemetry off (TURBO_TELEMETRY_DISABLED=1)
// on every platform, so `npm run build` and friends never print the telemetry notice or send
// anything. usage: node scripts/turbo.mjs <turbo arguments...>

import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..');
const turbo = join(ROOT, 'node_modules', '.bin', process.platform === 'win32' ? 'turbo.cmd' : 'turbo');

/** The environment every turbo run gets. */
export function turboEnv(env = process.env) {
  return { ...env, TURBO_TELEMETRY_DISABLED: '1' };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const r = spawnSync(turbo, process.argv.slice(2), { cwd: ROOT, stdio: 'inherit', env: turboEnv(), shell: process.platform === 'win32' });
  if (r.error) {
    console.error(`cannot run ${turbo}: ${r.error.message} (run npm ci first)`);
    process.exit(1);
  }
  process.exit(r.status ?? 1);
}
