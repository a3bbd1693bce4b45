// Every op in the table, on every backend present, against reference; every backward rule
// by finite differences on reference, and each backend's gradients against reference's.
import { afterAll, describe, expect, it } from 'vitest';
import { NotSupportedError, allOps, getKernel, runOp } from '../src/index.js';
import { KERNEL_EXCLUSIONS, assertKernelCoverage, checkCase, checkGradParity, gradCheck, testBackends } from '../src/harness/index.js';

const { backends, destroyAll } = await testBackends();
afterAll(() => destroyAll());

const ops = allOps();

describe('op table', () => {
  it.each(ops.map((d) => d.name))('%s has a reference kernel and harness cases', (name) => {
    const def = ops.find((d) => d.name === name)!;
    expect(getKernel(name, 'reference'), `no reference kernel for ${name}`).toBeDefined();
    expect(def.cases.length).toBeGreaterThan(0);
  });
});

for (const backend of backends) {
  describe(`parity on ${backend.name}`, () => {
    // A missing kernel fails here unless it is on the backend's reviewed exclusion list.
    it('every op has a kernel, or a reviewed exclusion with its reason', () => {
      assertKernelCoverage(backend.name);
    });
    for (const def of ops) {
      if (!getKernel(def.name, backend.name)) {
        // An excluded (op, backend) pair must be a clear error naming both, never a detour.
        it(`${def.name} is reported as not supported (excluded: ${KERNEL_EXCLUSIONS[backend.name]?.[def.name] ?? 'NOT EXCLUDED'})`, () => {
          const call = () => runOp(backend, def.name, [], def.cases[0].attrs ?? {});
          expect(call).toThrow(NotSupportedError);
          expect(call).toThrow(`op '${def.name}' is not supported on backend '${backend.name}'`);
        });
        continue;
      }
      it(def.name, async () => {
        const failures: string[] = [];
        for (const c of def.cases) {
          const { failure } = await checkCase(backend, def, c);
          if (failure) failures.push(`${c.name}: ${failure}`);
          if (def.vjp && !c.noGrad) {
            const g = await checkGradParity(backend, def, c);
            if (g.failure) failures.push(`${c.name} (gradient): ${g.failure}`);
          }
        }
        expect(failures).toEqual([]);
      });
    }
  });
}

describe('backward rules by finite differences (reference, float64)', () => {
  // Surrogate-gradient rules (straight-through) are checked by their op's own test.
  for (const def of ops.filter((d) => d.vjp && !d.surrogateGradient)) {
    it(def.name, async () => {
      const failures: string[] = [];
      for (const c of def.cases.filter((c) => !c.noGrad)) {
        const { failure } = await gradCheck(def, c);
        if (failure) failures.push(`${c.name}: ${failure}`);
      }
      expect(failures).toEqual([]);
    });
  }
});
