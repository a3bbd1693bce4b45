// The command line in-process: argument errors, `devices` output, and `devices --check` on
// the reference backend (IBQ_BACKENDS=reference).
import { allOps } from '@ibq/kernels';
import { describe, expect, it } from 'vitest';
import { EXIT_OK, EXIT_USAGE, main, memoryIo } from '../src/index.js';

async function run(argv: string[], env: NodeJS.ProcessEnv = { IBQ_BACKENDS: 'reference' }) {
  const io = memoryIo(env);
  const code = await main(argv, io);
  return { code, out: io.stdout.join('\n'), err: io.stderr.join('\n') };
}

describe('argument errors', () => {
  it('no command: usage on stderr, exit 2', async () => {
    const r = await run([]);
    expect(r.code).toBe(EXIT_USAGE);
    expect(r.err).toContain('usage: ibq <command>');
    expect(r.err).toContain('devices');
  });

  it('--help lists the commands on stdout', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(EXIT_OK);
    expect(r.out).toMatch(/^usage: ibq <command>/);
    expect(r.out).toMatch(/devices\s+list the compute backends/);
  });

  it('an unknown command is named', async () => {
    const r = await run(['frobnicate']);
    expect(r.code).toBe(EXIT_USAGE);
    expect(r.err).toContain("ibq: unknown command 'frobnicate'");
    expect(r.err).toContain('usage: ibq <command>');
  });

  it('an unknown option is named, with the command usage', async () => {
    const r = await run(['devices', '--bogus']);
    expect(r.code).toBe(EXIT_USAGE);
    expect(r.err).toContain("ibq devices: unknown option '--bogus'");
    expect(r.err).toContain('usage: ibq devices');
    expect(r.out).toBe('');
  });

  it('a stray argument is rejected', async () => {
    const r = await run(['devices', 'now']);
    expect(r.code).toBe(EXIT_USAGE);
    expect(r.err).toContain("unexpected argument 'now'");
  });

  it('a string option without its value is rejected', async () => {
    const r = await run(['devices', '--backends']);
    expect(r.code).toBe(EXIT_USAGE);
    expect(r.err).toContain('--backends');
    expect(r.err).toContain('usage: ibq devices');
  });

  it('an unknown backend is rejected, from the flag or from IBQ_BACKENDS', async () => {
    const flag = await run(['devices', '--backends', 'reference,tpu']);
    expect(flag.code).toBe(EXIT_USAGE);
    expect(flag.err).toContain("--backends: unknown backend 'tpu' (known: reference, cpu, webgpu)");
    const env = await run(['devices'], { IBQ_BACKENDS: 'cuda' });
    expect(env.code).toBe(EXIT_USAGE);
    expect(env.err).toContain("IBQ_BACKENDS: unknown backend 'cuda'");
  });

  it('--threads must be a positive integer', async () => {
    const r = await run(['devices', '--threads', '0']);
    expect(r.code).toBe(EXIT_USAGE);
    expect(r.err).toContain("--threads: expected a positive integer, got '0'");
  });

  it('devices --help prints its usage', async () => {
    const r = await run(['devices', '--help']);
    expect(r.code).toBe(EXIT_OK);
    expect(r.out).toContain('usage: ibq devices [--check]');
  });
});

describe('ibq devices', () => {
  it('prints the host and the reference backend', async () => {
    const r = await run(['devices']);
    expect(r.code).toBe(EXIT_OK);
    expect(r.out).toMatch(/^host\n {2}cpu +.+\(\d+ cores?, \w+\)/);
    expect(r.out).toMatch(/wasm SIMD +(yes|no)/);
    expect(r.out).toMatch(/\nbackends\n {2}reference +available/);
    // Only the backend asked for is probed.
    expect(r.out.split('\nbackends\n')[1]).not.toMatch(/^ {2}(cpu|webgpu) /m);
    expect(r.out).not.toContain('self-check');
  });

  it('--check passes every op on reference, counted per op', async () => {
    const r = await run(['devices', '--check']);
    const n = allOps().length;
    expect(r.err).toBe('');
    expect(r.out).toContain('self-check');
    expect(r.out).toMatch(new RegExp(`\\n {2}reference +${n} passed, 0 failed, 0 not supported`));
    expect(r.code).toBe(EXIT_OK);
  });
});
