// Option helpers every command shares: the --device option and the checks that turn option
// values into numbers, required strings and existing files (a bad value is a UsageError that
// names the option). Commands import these from here.

import { existsSync } from 'node:fs';
import { type OptionSpec, type OptionValues, UsageError } from './command.js';

export const DEVICE_OPTION: OptionSpec = { device: { type: 'string' } };

export function positiveInt(values: OptionValues, name: string, dflt: number): number {
  const v = values[name];
  if (v === undefined) return dflt;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isInteger(n) || n < 1) throw new UsageError(`--${name}: expected a positive integer, got '${String(v)}'`);
  return n;
}

export function positiveIntOrZero(values: OptionValues, name: string): number {
  const v = values[name];
  if (v === undefined) return 0;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isInteger(n) || n < 0) throw new UsageError(`--${name}: expected a non-negative integer, got '${String(v)}'`);
  return n;
}

export function requiredString(values: OptionValues, name: string): string {
  const v = values[name];
  if (typeof v !== 'string' || v === '') throw new UsageError(`--${name} is required`);
  return v;
}

export function existingFile(path: string, what: string): string {
  if (!existsSync(path)) throw new UsageError(`${what} '${path}' does not exist`);
  return path;
}
