// The backend self-check behind `ibq devices --check`: every op of the table, every harness
// case, on one backend against the reference backend (kernels' checkCase: guarded offsets,
// tolerance, input immutability, leaks). An op without a kernel on the backend, or whose
// cases the backend declines through supports(), is "not supported", never a failure.

import { type Backend, type OpDef, allOps, getKernel } from '@ibq/kernels';
import { caseInputs, checkCase } from '@ibq/kernels/harness';

export type OpStatus = 'passed' | 'failed' | 'not supported';

export interface OpResult {
  op: string;
  status: OpStatus;
  /** Failing cases as "case: message"; for 'not supported', the reason(s). */
  details: string[];
  /** Cases the backend declined while others ran (the op still counts as passed or failed). */
  declinedCases: number;
}

export interface SelfCheckReport {
  backend: string;
  results: OpResult[];
  passed: number;
  failed: number;
  notSupported: number;
  ms: number;
}

export async function checkOp(backend: Backend, def: OpDef): Promise<OpResult> {
  if (!getKernel(def.name, backend.name)) {
    return { op: def.name, status: 'not supported', details: ['no kernel registered'], declinedCases: 0 };
  }
  const failures: string[] = [];
  const declined: string[] = [];
  let ran = 0;
  for (const c of def.cases) {
    const dtypes = caseInputs(def, c).map((t) => t.dtype);
    const ok = backend.supports(def.name, dtypes, c.attrs ?? {});
    if (ok !== true) {
      declined.push(`${c.name}: ${ok}`);
      continue;
    }
    ran++;
    let failure: string | null;
    try {
      ({ failure } = await checkCase(backend, def, c));
    } catch (e) {
      failure = `threw: ${(e as Error).stack ?? e}`;
    }
    if (failure) failures.push(`${c.name}: ${failure}`);
  }
  if (ran === 0) return { op: def.name, status: 'not supported', details: declined, declinedCases: declined.length };
  return {
    op: def.name,
    status: failures.length ? 'failed' : 'passed',
    details: failures,
    declinedCases: declined.length,
  };
}

/** Runs every op (or those given) on `backend`; `progress` is told which op is next. */
export async function selfCheck(
  backend: Backend,
  ops: readonly OpDef[] = allOps(),
  progress: (done: number, total: number, op: string) => void = () => {},
): Promise<SelfCheckReport> {
  const start = performance.now();
  const results: OpResult[] = [];
  for (const [i, def] of ops.entries()) {
    progress(i, ops.length, def.name);
    results.push(await checkOp(backend, def));
  }
  const count = (s: OpStatus) => results.filter((r) => r.status === s).length;
  return {
    backend: backend.name,
    results,
    passed: count('passed'),
    failed: count('failed'),
    notSupported: count('not supported'),
    ms: performance.now() - start,
  };
}
