// `npm test`: builds (turbo, cached), runs the whole vitest suite (every project) with its
// usual console output, and ends with one line of totals taken from vitest's JSON report:
//   N passed, N failed[, N skipped]
// Exits non-zero if a test or a test file failed, or vitest crashed.
//
// usage: node scripts/test.mjs [--no-build] [vitest arguments...]
//   e.g. npm test -- --project kernels -t matmul

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { turboEnv } from './turbo.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = join(ROOT, 'node_modules', '.bin');

/**
 * @typedef {{ status: string, assertionResults?: { status: string }[] }} FileResult
 * @typedef {{ numPassedTests?: number, numFailedTests?: number, numPendingTests?: number, numTodoTests?: number, success?: boolean, testResults?: FileResult[] }} JsonReport
 * @typedef {{ passed: number, failed: number, skipped: number, brokenFiles: number }} Totals
 */

/**
 * Counts from vitest's JSON report (Jest's format).
 * @param {JsonReport} report
 * @returns {Totals}
 */
export function totalsOf(report) {
  const passed = report.numPassedTests ?? 0;
  const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
  // A file that fails before its tests run (an import error, a throwing top-level await)
  // has no failed test to count; it counts as one failure so that it cannot go unnoticed.
  const brokenFiles = (report.testResults ?? []).filter(
    (f) => f.status === 'failed' && !(f.assertionResults ?? []).some((a) => a.status === 'failed'),
  ).length;
  const failed = (report.numFailedTests ?? 0) + brokenFiles;
  return { passed, failed, skipped, brokenFiles };
}

/** @param {Totals} totals */
export function totalsLine({ passed, failed, skipped }) {
  return `${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`;
}

function main() {
  let args = process.argv.slice(2);
  const build = !args.includes('--no-build');
  args = args.filter((a) => a !== '--no-build');

  if (!existsSync(join(BIN, 'vitest'))) {
    console.error("npm test: vitest is not installed; run 'npm run setup' first");
    return 1;
  }
  if (build) {
    // Tests use what the build makes (the cpu backend's wasm, the CLI bundle).
    const b = spawnSync(join(BIN, 'turbo'), ['run', 'build', '--output-logs=errors-only'], { cwd: ROOT, stdio: 'inherit', env: turboEnv() });
    if (b.status !== 0) {
      console.error(`npm test: the build failed (exit ${b.status ?? b.signal}); no tests were run`);
      return 1;
    }
  }

  const dir = mkdtempSync(join(tmpdir(), 'ibq-test-'));
  const reportFile = join(dir, 'vitest-report.json');
  try {
    const r = spawnSync(
      join(BIN, 'vitest'),
      ['run', '--reporter=default', '--reporter=json', `--outputFile.json=${reportFile}`, ...args],
      { cwd: ROOT, stdio: 'inherit' },
    );
    if (r.error) {
      console.error(`npm test: could not start vitest: ${r.error.message}`);
      return 1;
    }
    /** @type {JsonReport} */
    let report;
    try {
      report = JSON.parse(readFileSync(reportFile, 'utf8'));
    } catch {
      console.error(`npm test: vitest ended (exit ${r.status ?? r.signal}) without writing its report: it crashed or was interrupted`);
      return 1;
    }
    const totals = totalsOf(report);
    if (totals.brokenFiles) console.error(`npm test: ${totals.brokenFiles} test file(s) failed outside any test (counted in the failures below)`);
    const ok = r.status === 0 && totals.failed === 0 && report.success !== false;
    if (!ok && totals.failed === 0) {
      console.error(`npm test: vitest exited with ${r.status ?? r.signal} (an error outside the tests, e.g. an unhandled rejection); see above`);
    }
    // The last line, alone: what CI and people read.
    console.log(totalsLine(totals));
    return ok ? 0 : 1;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = main();
}
