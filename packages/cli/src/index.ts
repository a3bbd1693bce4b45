// @ibq/cli as a library: the command table and main(), for tests and for embedding.
export { main, usage, COMMANDS, VERSION } from './main.js';
export { type Command, UsageError, EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM } from './command.js';
export { StopController, type StopSignal, signalExitCode, watchStopSignals } from './stop.js';
export { type Io, processIo, memoryIo } from './io.js';
export { selfCheck, checkOp, type SelfCheckReport, type OpResult, type OpStatus } from './selfcheck.js';
export { hostInfo, wasmSimdSupported, type HostInfo } from './host.js';
