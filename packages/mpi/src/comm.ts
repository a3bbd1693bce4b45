// The MPI communicator as Promises: loads the native addon (build/Release/ibq_mpi.node,
// built at setup against the system's MPI), tells an MPI launch from a plain run, and says
// what to install when a launch finds no MPI. One MPI thread inside the addon makes every
// call, so awaiting one never blocks the event loop.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** Element types an all-reduce sums: Float32Array (f32), Float64Array (f64), Int32Array (i32, sum only), Uint16Array (bf16, f16). */
export type ReduceDType = 'f32' | 'f64' | 'i32' | 'bf16' | 'f16';
export type ReduceOp = 'sum' | 'avg';

interface Addon {
  init(): Promise<{ rank: number; size: number; localRank: number; localSize: number; threadLevel: number; library: string }>;
  barrier(): Promise<void>;
  broadcast(data: ArrayBufferView, root: number): Promise<void>;
  allReduce(data: ArrayBufferView, dtype: ReduceDType, op: ReduceOp, wire?: 'bf16'): Promise<void>;
  finalize(): Promise<void>;
  abort(code: number): void;
}

export const INSTALL_MPI = 'install MPI and rebuild: on Debian/Ubuntu `apt-get install mpich libmpich-dev` then `npm run setup` ' +
  '(or `npm run build`); on a cluster load its MPI module (or set MPICC to its mpicc) before `npm run build`';

export class MpiUnavailableError extends Error {
  constructor(why: string) {
    super(`MPI is not available: ${why}; ${INSTALL_MPI}`);
    this.name = 'MpiUnavailableError';
  }
}

/** How this process was started, from the launcher's environment. */
export interface MpiLaunch {
  /** Processes the launcher says the job has. */
  size: number;
  /** The variable that said so. */
  source: 'OMPI_COMM_WORLD_SIZE' | 'PMI_SIZE' | 'PMIX_SIZE' | 'SLURM_NTASKS';
}

/**
 * An MPI launch of more than one process (mpiexec of Open MPI or MPICH/Hydra, Slurm's srun),
 * or null for a plain run. SLURM_NTASKS alone counts only inside an srun step (SLURM_STEP_ID
 * set), not in the batch script that srun is called from.
 */
export function detectMpiLaunch(env: NodeJS.ProcessEnv = process.env): MpiLaunch | null {
  const num = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v) ? Number(v) : 0);
  const candidates: [MpiLaunch['source'], number][] = [
    ['OMPI_COMM_WORLD_SIZE', num(env.OMPI_COMM_WORLD_SIZE)],
    ['PMI_SIZE', num(env.PMI_SIZE)],
    ['PMIX_SIZE', num(env.PMIX_SIZE)],
    ['SLURM_NTASKS', env.SLURM_STEP_ID !== undefined ? num(env.SLURM_NTASKS) : 0],
  ];
  for (const [source, size] of candidates) if (size > 1) return { source, size };
  return null;
}

let addon: Addon | null = null;

/** The path of the addon: IBQ_MPI_ADDON, else build/Release/ibq_mpi.node of this package. */
export function addonPath(): string {
  if (process.env.IBQ_MPI_ADDON) return process.env.IBQ_MPI_ADDON;
  // Resolved through node_modules, so the bundled CLI finds the package's build folder too.
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('@ibq/mpi/package.json')), 'build/Release/ibq_mpi.node');
}

function loadAddon(): Addon {
  if (addon) return addon;
  const path = addonPath();
  if (!existsSync(path)) throw new MpiUnavailableError(`the MPI addon is not built (${path} is missing)`);
  // UCX (the transport of Debian's MPICH and of most Open MPI builds) patches malloc/mmap to
  // track memory for its registration cache, a known source of crashes (openucx/ucx#3831) and
  // a suspect in the one SIGSEGV inside V8 we saw. It reads this when the library loads, so it
  // is set before the addon loads; a launcher's explicit setting wins.
  process.env.UCX_MEM_EVENTS ??= 'n';
  try {
    addon = createRequire(import.meta.url)(path) as Addon;
  } catch (e) {
    throw new MpiUnavailableError(`${path} does not load (${(e as Error).message})`);
  }
  return addon;
}

/** Whether the addon is built and loads here. */
export function mpiAvailable(): true | string {
  try {
    loadAddon();
    return true;
  } catch (e) {
    return (e as Error).message;
  }
}

/** MPI_COMM_WORLD. Make one with initMpi(). */
export class Communicator {
  private done = false;
  constructor(
    private readonly native: Addon,
    readonly rank: number,
    readonly size: number,
    /** Rank among the processes on this node (for picking a device), and how many there are. */
    readonly localRank: number,
    readonly localSize: number,
    /** The MPI library's own version string. */
    readonly library: string,
  ) {}

  get isRoot(): boolean {
    return this.rank === 0;
  }

  barrier(): Promise<void> {
    return this.native.barrier();
  }

  /** Overwrites `data` on every rank with root's. Do not touch `data` until it resolves. */
  broadcast(data: ArrayBufferView, root = 0): Promise<void> {
    return this.native.broadcast(data, root);
  }

  /**
   * Sums (or averages) `data` over the ranks, in place. 16-bit floats travel as Uint16Array
   * and are summed in float32 by a custom MPI op; 'avg' divides them before the sum (f16 would
   * overflow after it) and f32/f64 after. `wire: 'bf16'` sends a Float32Array as bf16 (half
   * the bytes), converted piece by piece on the MPI thread. Do not touch `data` until it resolves.
   */
  allReduce(data: Float32Array | Float64Array | Int32Array | Uint16Array, o: { dtype?: ReduceDType; op?: ReduceOp; wire?: 'bf16' } = {}): Promise<void> {
    const dtype = o.dtype ?? (data instanceof Float32Array ? 'f32' : data instanceof Float64Array ? 'f64' : data instanceof Int32Array ? 'i32' : undefined);
    if (!dtype) throw new Error('allReduce: a Uint16Array needs dtype bf16 or f16');
    return o.wire ? this.native.allReduce(data, dtype, o.op ?? 'sum', o.wire) : this.native.allReduce(data, dtype, o.op ?? 'sum');
  }

  /** MPI_Finalize (collective: every rank calls it once, at the end). */
  async finalize(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.native.finalize();
  }

  /** Ends every process of the job at once (MPI_Abort), for an error this rank cannot recover from. */
  abort(code = 1): never {
    this.native.abort(code);
    process.exit(code);
  }
}

let world: Promise<Communicator> | null = null;

/** MPI_Init_thread (once per process; later calls return the same communicator). */
export function initMpi(): Promise<Communicator> {
  if (!world) {
    const native = loadAddon();
    world = native.init().then((w) => new Communicator(native, w.rank, w.size, w.localRank, w.localSize, w.library.split('\n')[0].trim()));
  }
  return world;
}
