// The cpu backend: AssemblyScript SIMD kernels in wasm, worker_threads over shared memory.
// Importing this registers every cpu kernel (one file per op family under kernels/).
import '../../ops/index.js';
import './kernels/index.js';

export { CpuBackend, CpuBuffer, type CpuOptions } from './backend.js';
