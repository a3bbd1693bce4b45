// `ibq devices [--check]`: the host, every backend found (with what its describe() reports,
// or why it is absent), and with --check a parity self-check of each one.

import { BACKEND_NAMES, type Backend, type BackendName, type BackendOptions, type BackendProbe, probeBackends } from '@ibq/kernels';
import { type Command, EXIT_FAILURE, EXIT_OK, type OptionValues, UsageError } from '../command.js';
import { formatBytes, formatRecord, formatSeconds, wrapList } from '../format.js';
import { hostInfo } from '../host.js';
import type { Io } from '../io.js';
import { type SelfCheckReport, selfCheck } from '../selfcheck.js';

const NAME_WIDTH = 11;

function parseBackendList(text: string, source: string): BackendName[] {
  const names = text.split(',').map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) throw new UsageError(`${source}: no backend named`);
  for (const n of names) {
    if (!BACKEND_NAMES.includes(n as BackendName)) {
      throw new UsageError(`${source}: unknown backend '${n}' (known: ${BACKEND_NAMES.join(', ')})`);
    }
  }
  return names as BackendName[];
}

function parseThreads(text: string, source: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${source}: expected a positive integer, got '${text}'`);
  return n;
}

function backendNames(values: OptionValues, io: Io): BackendName[] {
  if (typeof values.backends === 'string') return parseBackendList(values.backends, '--backends');
  if (io.env.IBQ_BACKENDS !== undefined) return parseBackendList(io.env.IBQ_BACKENDS, 'IBQ_BACKENDS');
  return [...BACKEND_NAMES];
}

function backendOptions(values: OptionValues, io: Io): BackendOptions {
  if (typeof values.threads === 'string') return { threads: parseThreads(values.threads, '--threads') };
  if (io.env.IBQ_THREADS) return { threads: parseThreads(io.env.IBQ_THREADS, 'IBQ_THREADS') };
  return {};
}

/** Probes one backend at a time so that a backend that breaks while starting is reported, not fatal. */
async function probeEach(names: BackendName[], options: BackendOptions): Promise<(BackendProbe & { error?: string })[]> {
  const out: (BackendProbe & { error?: string })[] = [];
  for (const name of names) {
    try {
      out.push(...(await probeBackends([name], options)));
    } catch (e) {
      out.push({ name, error: (e as Error).stack ?? String(e) });
    }
  }
  return out;
}

function describeBackend(backend: Backend): string[] {
  const indent = '    ';
  if (!backend.describe) return [`${indent}(this backend describes nothing more)`];
  try {
    return formatRecord(backend.describe(), indent);
  } catch (e) {
    return [`${indent}describe() failed: ${(e as Error).message}`];
  }
}

function printHost(io: Io): void {
  const h = hostInfo();
  io.out('host');
  for (const line of formatRecord({
    cpu: `${h.cpuModel} (${h.cores} ${h.cores === 1 ? 'core' : 'cores'}, ${h.arch})`,
    memory: formatBytes(h.memoryBytes),
    'wasm SIMD': h.wasmSimd,
    node: h.node,
    os: h.platform,
  }, '  ')) io.out(line);
}

function firstLine(text: string, max = 160): string {
  const line = text.split('\n')[0];
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

function printReport(report: SelfCheckReport, verbose: boolean, io: Io): void {
  io.out(`  ${report.backend.padEnd(NAME_WIDTH)}${report.passed} passed, ${report.failed} failed, ${report.notSupported} not supported  (${formatSeconds(report.ms)})`);
  const indent = '    ';
  for (const r of report.results.filter((r) => r.status === 'failed')) {
    io.out(`${indent}FAILED ${r.op}`);
    for (const d of r.details) io.out(`${indent}  ${verbose ? d.split('\n').join(`\n${indent}  `) : firstLine(d)}`);
  }
  const unsupported = report.results.filter((r) => r.status === 'not supported');
  if (unsupported.length) {
    const head = `${indent}not supported: `;
    if (verbose) {
      io.out(`${indent}not supported:`);
      for (const r of unsupported) io.out(`${indent}  ${r.op}: ${r.details.join('; ')}`);
    } else {
      io.out(head + wrapList(unsupported.map((r) => r.op), head.length, indent + '  '));
    }
  }
  const partial = report.results.filter((r) => r.status !== 'not supported' && r.declinedCases > 0);
  if (partial.length) {
    io.out(`${indent}cases declined by supports(): ${partial.map((r) => `${r.op} (${r.declinedCases})`).join(', ')}`);
  }
}

export const devicesCommand: Command = {
  name: 'devices',
  summary: 'list the compute backends found on this machine; --check self-tests each one',
  usage: `usage: ibq devices [--check] [--backends <names>] [--threads <n>] [--verbose]

Lists the host and each backend (${BACKEND_NAMES.join(', ')}): what it reports about
itself, or why it is unavailable.

  --check            run every op's harness cases on each backend found, against the
                     reference backend; exits with 1 if any op fails
  --backends <names> comma-separated backends to probe (default: IBQ_BACKENDS, or all)
  --threads <n>      worker threads for the cpu backend (default: IBQ_THREADS, or all cores)
  --verbose          print every failure in full and why each op is not supported

Environment: IBQ_BACKENDS, IBQ_THREADS; IBQ_REQUIRE_WEBGPU=1 makes a missing webgpu
backend an error.`,
  options: {
    check: { type: 'boolean' },
    backends: { type: 'string' },
    threads: { type: 'string' },
    verbose: { type: 'boolean' },
  },
  async run(values, io) {
    const names = backendNames(values, io);
    const options = backendOptions(values, io);
    const verbose = values.verbose === true;

    printHost(io);
    io.status('probing backends...');
    const probes = await probeEach(names, options);
    let code = EXIT_OK;
    try {
      io.out('');
      io.out('backends');
      for (const p of probes) {
        if (p.backend) {
          io.out(`  ${p.name.padEnd(NAME_WIDTH)}available`);
          for (const line of describeBackend(p.backend)) io.out(line);
        } else if (p.error) {
          io.out(`  ${p.name.padEnd(NAME_WIDTH)}ERROR while starting: ${firstLine(p.error)}`);
          if (verbose) io.out(p.error.split('\n').map((l) => `    ${l}`).join('\n'));
          code = EXIT_FAILURE;
        } else {
          io.out(`  ${p.name.padEnd(NAME_WIDTH)}unavailable: ${p.reason}`);
        }
      }
      const webgpu = probes.find((p) => p.name === 'webgpu');
      if (webgpu && !webgpu.backend && io.env.IBQ_REQUIRE_WEBGPU === '1') {
        io.err(`ibq devices: IBQ_REQUIRE_WEBGPU=1 but the webgpu backend is unavailable: ${webgpu.reason ?? webgpu.error}`);
        code = EXIT_FAILURE;
      }

      if (values.check) {
        const available = probes.filter((p) => p.backend);
        io.out('');
        io.out(`self-check (each op's harness cases against the reference backend)`);
        if (available.length === 0) {
          io.out('  no backend available');
          code = EXIT_FAILURE;
        }
        for (const p of available) {
          const report = await selfCheck(p.backend!, undefined, (done, total, op) => io.status(`checking ${p.name}: ${op} (${done + 1}/${total})`));
          io.status('');
          printReport(report, verbose, io);
          if (report.failed > 0) code = EXIT_FAILURE;
        }
      }
    } finally {
      io.status('');
      for (const p of probes) p.backend?.destroy();
    }
    return code;
  },
};
