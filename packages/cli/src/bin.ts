// Entry point of the `ibq` executable (bundled to dist/ibq.mjs). Dawn keeps Node's event
// loop alive after its device is destroyed, so the process exits explicitly once its
// output has been written.

import { main } from './main.js';

// A closed pipe (`ibq devices | head`) is not an error worth a stack trace.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

const code = await main(process.argv.slice(2)).catch((e: unknown) => {
  process.stderr.write(`ibq: ${(e as Error).stack ?? e}\n`);
  return 1;
});
process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
