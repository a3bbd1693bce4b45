// How a training command joins an MPI launch (mpiexec, srun, an MPIJob): detect it, initialise
// MPI, give each rank its share of the cores, silence ranks other than 0, and end the whole job
// when one rank fails (the others may be waiting for it in a collective), pin each rank's GPU
// on webgpu before Dawn starts, and say on every rank which device it took. Also the data
// position a resumed data-parallel run continues from.

import { availableParallelism } from 'node:os';
import type { LoaderPosition } from '@ibq/data';
import type { Backend } from '@ibq/kernels';
import { type Communicator, DataParallel, type GpuPin, GpuPinError, MpiUnavailableError, detectMpiLaunch, initMpi, pinGpuForLocalRank } from '@ibq/mpi';
import { type OptionValues, UsageError } from './command.js';
import type { Io } from './io.js';
import { positiveInt } from './options.js';

export const MPI_OPTIONS = {
  'allreduce-dtype': { type: 'string' },
  'bucket-mb': { type: 'string' },
} as const;

export const MPI_USAGE = `Under mpiexec / srun (one process per device; see packages/mpi), --batch-size is per process:
  --allreduce-dtype D  gradients on the wire: f32 (default) or bf16 (half the bytes)
  --bucket-mb N        gradient bytes per all-reduce (default 25)`;

/**
 * Runs a command's body once per process: with a DataParallel of the launch's ranks under
 * MPI (rank 0 with `io`, the others printing only errors and warnings), else with null.
 */
export async function underMpiLaunch(values: OptionValues, io: Io, body: (io: Io, dp: DataParallel | null) => Promise<number>): Promise<number> {
  const dp = await joinMpiLaunch(values, io);
  if (!dp) return body(io, null);
  try {
    rankGpus.set(dp, { io, pin: pinRankGpu(values.device as string | undefined, dp.comm) });
    const code = await body(dp.isRoot ? io : quietIo(io), dp);
    await dp.comm.finalize();
    return code;
  } catch (e) {
    // The other ranks may wait in a collective for this one: end the whole job.
    io.err(`rank ${dp.rank}: ${e instanceof Error ? e.message : String(e)}`);
    return dp.comm.abort(e instanceof UsageError ? 2 : 1);
  }
}

/**
 * In an MPI launch (see detectMpiLaunch), joins it and returns the ranks' DataParallel; null
 * for a plain run. Each rank gets its share of the node's cores unless IBQ_THREADS says.
 */
async function joinMpiLaunch(values: OptionValues, io: Io): Promise<DataParallel | null> {
  const launch = detectMpiLaunch();
  const wire = (values['allreduce-dtype'] as string | undefined) ?? 'f32';
  if (wire !== 'f32' && wire !== 'bf16') throw new UsageError(`--allreduce-dtype: expected f32 or bf16, got '${wire}'`);
  const bucketMb = positiveInt(values, 'bucket-mb', 25);
  if (!launch) return null;
  let comm: Communicator;
  try {
    comm = await initMpi();
  } catch (e) {
    if (e instanceof MpiUnavailableError) throw new UsageError(`this is a launch of ${launch.size} processes (${launch.source}=${launch.size}), but ${e.message}`);
    throw e;
  }
  if (comm.size !== launch.size) io.err(`warning: ${launch.source} says ${launch.size} processes but MPI_COMM_WORLD has ${comm.size}`);
  if (!process.env.IBQ_THREADS) process.env.IBQ_THREADS = String(Math.max(1, Math.floor(availableParallelism() / comm.localSize)));
  if (comm.isRoot) io.err(`data-parallel over ${comm.size} ranks (${comm.library}), ${process.env.IBQ_THREADS} cpu threads per rank, gradients in ${wire}`);
  return new DataParallel(comm, { wire, bucketBytes: bucketMb * 1024 * 1024 });
}

/** Each launch's GPU pin and the unfiltered output, for announceRankDevice. */
const rankGpus = new WeakMap<DataParallel, { io: Io; pin: GpuPin | null }>();

/**
 * Gives this rank its own GPU when the device may be webgpu (--device webgpu, or auto): the
 * local rank's GPU by PCI address, through Mesa's device-select layer (see @ibq/mpi's gpu.ts).
 * Runs before any backend is created, since Dawn reads the variables when it starts.
 */
function pinRankGpu(device: string | undefined, comm: Communicator): GpuPin | null {
  const want = device ?? 'auto';
  if (want !== 'webgpu' && want !== 'auto') return null;
  try {
    return pinGpuForLocalRank(comm.localRank, comm.localSize, { required: want === 'webgpu' });
  } catch (e) {
    if (e instanceof GpuPinError) throw new UsageError(`--device webgpu: ${e.message}`);
    throw e;
  }
}

/**
 * Prints on every rank (not only rank 0) the device it opened and how its GPU was chosen, so a
 * user sees that ranks got different GPUs. Call once the backend is created.
 */
export function announceRankDevice(dp: DataParallel | null, backend: Backend): void {
  const launch = dp && rankGpus.get(dp);
  if (!dp || !launch) return;
  let line = `rank ${dp.rank} (local ${dp.comm.localRank} of ${dp.comm.localSize}): ${backend.name}`;
  if (backend.name === 'webgpu') {
    const adapter = (backend.describe?.() as { adapter?: { description?: string; device?: string; vendor?: string } } | undefined)?.adapter;
    line += ` adapter '${adapter?.description || adapter?.device || adapter?.vendor || 'unknown'}'`;
    const pin = launch.pin;
    if (pin?.action === 'set') line += `, ${pin.variable}=${pin.value} (GPU ${pin.pci} from ${pin.listSource})`;
    if (pin?.action === 'set' && pin.layerMissing) line += `; warning: the pin has no effect, Mesa's device-select layer is not active (${pin.layerMissing}), so ranks may share a GPU`;
    else if (pin?.action === 'kept') line += `, as ${pin.variable}=${pin.value} says`;
    else if (pin?.action === 'none') line += `, not pinned: ${pin.reason}`;
  } else if (backend.name === 'cpu') {
    line += `, ${process.env.IBQ_THREADS} threads`;
  }
  launch.io.err(line);
}

/** What a rank other than 0 prints: errors and warnings only. */
function quietIo(io: Io): Io {
  return { ...io, out: () => {}, status: () => {}, err: (line: string) => { if (/\b(error|warning)\b/i.test(line)) io.err(line); } };
}

/** A checkpoint's data position, with the data-parallel shape of the run that wrote it. */
export interface SavedPosition extends Partial<LoaderPosition> {
  /** Items per micro-step over all ranks (absent in checkpoints of single-process runs before data parallelism). */
  globalBatch?: number;
  ranks?: number;
}

/**
 * Where to continue in the data: the saved position when the run's shape is unchanged (exact,
 * skipped items included); else the same number of items into the epoch, counted in global
 * batches of the new shape.
 */
export function resumePosition(saved: SavedPosition, batchSize: number, ranks: number): { position: Partial<LoaderPosition>; notice: string | null } {
  if (saved.epoch === undefined) return { position: {}, notice: null };
  const globalBatch = batchSize * ranks;
  const savedRanks = saved.ranks ?? 1;
  if (savedRanks === ranks && (saved.globalBatch ?? globalBatch) === globalBatch) return { position: { epoch: saved.epoch, batch: saved.batch, cursor: saved.cursor }, notice: null };
  // Items of the epoch already consumed: a single process's cursor counts them exactly; ranks count global batches.
  const items = savedRanks === 1 ? (saved.cursor ?? 0) : (saved.batch ?? 0) * (saved.globalBatch ?? globalBatch);
  const batch = Math.floor(items / globalBatch);
  const position: Partial<LoaderPosition> = { epoch: saved.epoch, batch, ...(ranks === 1 ? { cursor: items } : {}) };
  const lost = items - batch * globalBatch;
  const notice = `resuming a run of ${savedRanks} rank(s) (global batch ${saved.globalBatch ?? '?'}) on ${ranks} (global batch ${globalBatch}): ` +
    `continuing at image ${items} of epoch ${saved.epoch}` + (lost > 0 && ranks > 1 ? ` (from ${batch * globalBatch}: ${lost} images are seen again)` : '');
  return { position, notice };
}

/**
 * The position to resume from on every rank: rank 0 read `saved` from the checkpoint (the
 * others pass {}); it is broadcast, then mapped to this run's shape by resumePosition.
 */
export async function sharedResumePosition(dp: DataParallel | null, saved: SavedPosition, batchSize: number): Promise<{ position: Partial<LoaderPosition>; notice: string | null }> {
  let from = saved;
  if (dp) {
    const [has, epoch, batch, cursor, g, r] = await dp.broadcastNumbers([
      from.epoch === undefined ? 0 : 1, from.epoch ?? 0, from.batch ?? 0, from.cursor ?? 0, from.globalBatch ?? 0, from.ranks ?? 0,
    ]);
    from = has ? { epoch, batch, cursor, globalBatch: g || undefined, ranks: r || undefined } : {};
  }
  return resumePosition(from, batchSize, dp?.size ?? 1);
}
