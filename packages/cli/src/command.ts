// The shape of one `ibq` subcommand. main.ts parses its options with node:util parseArgs
// from `options` and hands the values to `run`.

import type { ParseArgsConfig } from 'node:util';
import type { Io } from './io.js';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;
export type OptionValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** The positional arguments a command takes: their names (for messages) and how many. */
export interface PositionalSpec {
  names: string[];
  min: number;
  /** Default: unbounded. */
  max?: number;
}

export interface Command {
  name: string;
  /** One line for the command list. */
  summary: string;
  /** Usage and option descriptions, printed for --help and after a usage error. */
  usage: string;
  options: OptionSpec;
  /** Positional arguments; a command without this takes none. */
  positionals?: PositionalSpec;
  /** Returns the process exit code. Throw UsageError for bad arguments. */
  run(values: OptionValues, io: Io, positionals: string[]): Promise<number>;
}

/** Bad arguments: main prints the message and the command's usage, and exits with 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * Exit codes: 0 success (a finished run), 1 a check or the work failed, 2 bad usage, and for
 * a run stopped by a signal (stop.ts) the shell's 128 + signal number: 130 SIGINT, 143 SIGTERM.
 */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
export const EXIT_SIGINT = 130;
export const EXIT_SIGTERM = 143;
