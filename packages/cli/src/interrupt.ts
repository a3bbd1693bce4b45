// Ctrl-C / SIGTERM for the long loops of tokenize and train-ar, with the interface of the
// `signals` branch's stop.ts (`await stop.boundary(); if (stop.requested) break;`), so those
// loops switch to it by changing one import when it lands. A second signal exits at once:
// every file is written atomically, so what is on disk stays whole.

import type { Io } from './io.js';

export interface Stop {
  /** A signal arrived: finish the current unit of work, save, and return. */
  readonly requested: boolean;
  /** The signal's exit code (130 for SIGINT, 143 for SIGTERM), once requested. */
  readonly exitCode: number;
  /** Yields to the event loop so that a pending signal is seen; call at step / batch boundaries. */
  boundary(): Promise<void>;
  /** Stops listening. */
  close(): void;
}

export function watchStop(io: Io, what: string): Stop {
  let requested = false;
  let exitCode = 0;
  const handler = (signal: NodeJS.Signals) => {
    const code = signal === 'SIGTERM' ? 143 : 130;
    if (requested) process.exit(code);
    requested = true;
    exitCode = code;
    io.err(`\n${signal}: ${what} (again to quit at once)`);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    get requested() {
      return requested;
    },
    get exitCode() {
      return exitCode;
    },
    boundary: () => new Promise<void>((r) => setImmediate(r)),
    close() {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}
