// @ibq/mpi: MPI (the system's, through a native addon) and data-parallel training on it.
export { Communicator, INSTALL_MPI, type MpiLaunch, MpiUnavailableError, type ReduceDType, type ReduceOp, addonPath, detectMpiLaunch, initMpi, mpiAvailable } from './comm.js';
export { DataParallel, type DataParallelOptions } from './data-parallel.js';
export { GpuPinError, type GpuPin, deviceSelectLayerMissing, driPrimeTag, listGpus, pinGpuForLocalRank } from './gpu.js';
