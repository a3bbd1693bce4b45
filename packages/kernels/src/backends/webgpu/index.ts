// The webgpu backend (loaded lazily by backends/index.ts): the backend class and every
// WGSL kernel family, registered under the name 'webgpu'.
import '../../ops/index.js';
import './elementwise.js';
import './reduce.js';
import './matmul.js';
import './layout.js';
import './conv.js';
import './norm.js';
import './optim.js';
import './random.js';
import './loss.js';
import './attention.js';
import './quantize.js';
import './sample.js';

export { WebGpuBackend, GpuBuffer, type WebGpuOptions } from './backend.js';
