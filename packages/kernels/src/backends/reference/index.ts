// Registers every reference kernel. One file per op family, named as in src/ops/.
import '../../ops/index.js';
import './elementwise.js';
import './reduce.js';
import './matmul.js';
import './layout.js';
import './random.js';
import './conv.js';
import './norm.js';
import './attention.js';
import './loss.js';
import './quantize.js';
import './optim.js';
import './sample.js';

export { ReferenceBackend, RefBuffer, view } from './backend.js';
