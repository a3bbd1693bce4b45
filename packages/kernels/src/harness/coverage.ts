// Kernel coverage: every op of the table must have a kernel on every backend present, unless
// the (op, backend) pair is on that backend's reviewed exclusion list with its reason. The
// parity suite asserts this, so a backend cannot silently lose an op.
import { getKernel } from '../dispatch.js';
import { allOps } from '../op.js';

/**
 * Reviewed per-backend exclusions: op -> why the backend has no kernel for it. Adding a row
 * here is a decision to be reviewed, not a way to silence a failure. Empty today: every
 * backend has every op.
 */
export const KERNEL_EXCLUSIONS: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  cpu: {},
  webgpu: {},
};

export interface KernelCoverage {
  /** Ops with no kernel on the backend and no exclusion. */
  missing: string[];
  /** Excluded ops that do have a kernel (the exclusion is stale). */
  stale: string[];
  /** Excluded names that are not ops of the table. */
  unknown: string[];
}

export function kernelCoverage(backend: string, exclusions: Readonly<Record<string, string>> = KERNEL_EXCLUSIONS[backend] ?? {}): KernelCoverage {
  const names = allOps().map((d) => d.name);
  const known = new Set(names);
  return {
    missing: names.filter((op) => !getKernel(op, backend) && !(op in exclusions)),
    stale: Object.keys(exclusions).filter((op) => known.has(op) && getKernel(op, backend) !== undefined),
    unknown: Object.keys(exclusions).filter((op) => !known.has(op)),
  };
}

/** Throws an error naming every uncovered op of `backend` (what the parity suite runs). */
export function assertKernelCoverage(backend: string, exclusions?: Readonly<Record<string, string>>): void {
  const { missing, stale, unknown } = kernelCoverage(backend, exclusions);
  const problems: string[] = [];
  if (missing.length) problems.push(`no kernel on '${backend}' for ${missing.join(', ')} (write one, or add a reviewed exclusion with its reason to KERNEL_EXCLUSIONS)`);
  if (stale.length) problems.push(`'${backend}' has kernels for the excluded ${stale.join(', ')}: remove the exclusion`);
  if (unknown.length) problems.push(`exclusions for '${backend}' name ops the table does not have: ${unknown.join(', ')}`);
  if (problems.length) throw new Error(problems.join('; '));
}
