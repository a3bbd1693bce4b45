// The `ibq` command line: finds the subcommand, parses its options with node:util parseArgs,
// runs it and returns the exit code. Exiting is the caller's job (bin.ts), so that tests can
// call main() in-process.

import { parseArgs } from 'node:util';
import { type Command, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError } from './command.js';
import { convertCommand } from './commands/convert.js';
import { decodeCommand } from './commands/decode.js';
import { demoCommand } from './commands/demo.js';
import { devicesCommand } from './commands/devices.js';
import { encodeCommand } from './commands/encode.js';
import { reconstructCommand } from './commands/reconstruct.js';
import { tokenizeCommand } from './commands/tokenize.js';
import { trainArCommand } from './commands/train-ar.js';
import { trainCommand } from './commands/train.js';
import { sampleCommand } from './commands/sample.js';
import { mergeSamplesCommand } from './commands/merge-samples.js';
import { type Io, processIo } from './io.js';

export const VERSION = '0.1.0';

/** Every subcommand; later ones (encode, train, sample...) are added here. */
export const COMMANDS: readonly Command[] = [
  demoCommand, devicesCommand, trainCommand, convertCommand, encodeCommand, decodeCommand, reconstructCommand,
  sampleCommand, mergeSamplesCommand, tokenizeCommand, trainArCommand,
];

export function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'usage: ibq <command> [options]',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    "Run 'ibq <command> --help' for a command's options.",
  ].join('\n');
}

/** parseArgs' messages, reworded with the command's name. */
function parseError(command: Command, e: unknown): UsageError {
  const err = e as NodeJS.ErrnoException;
  const msg = err.message;
  if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const flag = /'([^']+)'/.exec(msg)?.[1] ?? msg;
    return new UsageError(`unknown option '${flag}'`);
  }
  if (err.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
    const arg = /'([^']+)'/.exec(msg)?.[1] ?? msg;
    return new UsageError(`unexpected argument '${arg}'`);
  }
  if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') return new UsageError(msg.replace(/^Option /, 'option '));
  return new UsageError(`${command.name}: ${msg}`);
}

export async function main(argv: readonly string[], io: Io = processIo()): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    io.err(usage());
    return EXIT_USAGE;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    io.out(usage());
    return EXIT_OK;
  }
  if (name === '--version' || name === '-v') {
    io.out(VERSION);
    return EXIT_OK;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    io.err(`ibq: ${name.startsWith('-') ? `unknown option '${name}'` : `unknown command '${name}'`}`);
    io.err('');
    io.err(usage());
    return EXIT_USAGE;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.out(command.usage);
    return EXIT_OK;
  }
  try {
    let values;
    let positionals: string[];
    try {
      ({ values, positionals } = parseArgs({ args: [...rest], options: command.options, strict: true, allowPositionals: !!command.positionals }));
    } catch (e) {
      throw parseError(command, e);
    }
    const spec = command.positionals;
    if (spec && positionals.length < spec.min) throw new UsageError(`missing ${spec.names.slice(positionals.length).join(' ')}`);
    if (spec?.max !== undefined && positionals.length > spec.max) throw new UsageError(`unexpected argument '${positionals[spec.max]}'`);
    return await command.run(values, io, positionals);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`ibq ${command.name}: ${e.message}`);
      io.err('');
      io.err(command.usage);
      return EXIT_USAGE;
    }
    io.err(`ibq ${command.name}: ${(e as Error).stack ?? e}`);
    return EXIT_FAILURE;
  }
}
