// The parity suite's coverage check fails when a present backend loses a kernel: remove a real
// cpu kernel, run the very assertion parity.test.ts runs, put the kernel back.
import { afterAll, describe, expect, it } from 'vitest';
import { getKernel, registerKernel, unregisterKernel } from '../src/index.js';
import { assertKernelCoverage, kernelCoverage, testBackends } from '../src/harness/index.js';

const { backends, destroyAll } = await testBackends();
afterAll(() => destroyAll());
const cpu = backends.find((b) => b.name === 'cpu');

describe.skipIf(!cpu)('kernel coverage (cpu)', () => {
  it('passes with every cpu kernel registered', () => {
    expect(() => assertKernelCoverage('cpu')).not.toThrow();
  });

  it('a removed cpu kernel fails the check, naming the op and the backend', () => {
    const fn = unregisterKernel('silu_grad', 'cpu');
    expect(fn).toBeDefined();
    try {
      expect(getKernel('silu_grad', 'cpu')).toBeUndefined();
      expect(() => assertKernelCoverage('cpu')).toThrow(/no kernel on 'cpu' for silu_grad/);
      // A reviewed exclusion with its reason lets it pass; a stale or unknown one does not.
      expect(() => assertKernelCoverage('cpu', { silu_grad: 'reviewed: reason' })).not.toThrow();
    } finally {
      registerKernel('silu_grad', 'cpu', fn!);
    }
    expect(kernelCoverage('cpu', { silu_grad: 'x' }).stale).toEqual(['silu_grad']);
    expect(() => assertKernelCoverage('cpu', { no_such_op: 'x' })).toThrow(/the table does not have: no_such_op/);
  });
});
