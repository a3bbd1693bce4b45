// Where a command writes. Commands never touch process.stdout directly, so tests can run
// them in-process and read what they printed.

export interface Io {
  /** Writes one line (or several) to standard output. */
  out(text: string): void;
  /** Writes one line (or several) to standard error. */
  err(text: string): void;
  /** Rewrites a transient status line on a terminal; a no-op when not a terminal. */
  status(text: string): void;
  readonly env: NodeJS.ProcessEnv;
}

export function processIo(): Io {
  const tty = process.stderr.isTTY === true;
  let statusShown = false;
  const clearStatus = () => {
    if (statusShown) process.stderr.write('\r\x1b[2K');
    statusShown = false;
  };
  return {
    out(text) {
      clearStatus();
      process.stdout.write(`${text}\n`);
    },
    err(text) {
      clearStatus();
      process.stderr.write(`${text}\n`);
    },
    status(text) {
      if (!tty) return;
      const width = Math.max(20, (process.stderr.columns || 80) - 1);
      process.stderr.write(`\r\x1b[2K${text.length > width ? `${text.slice(0, width - 1)}…` : text}`);
      statusShown = text.length > 0;
    },
    env: process.env,
  };
}

/** An Io that keeps everything written, for tests and for callers that post-process output. */
export function memoryIo(env: NodeJS.ProcessEnv = {}): Io & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return {
    stdout,
    stderr,
    out: (text) => void stdout.push(text),
    err: (text) => void stderr.push(text),
    status: () => {},
    env,
  };
}
