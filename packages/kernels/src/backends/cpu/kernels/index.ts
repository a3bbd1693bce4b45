// Registers every cpu kernel. One file per op family, named as in src/ops/.
import './elementwise.js';
import './matmul.js';
import './conv.js';
import './reduce.js';
import './layout.js';
import './quantize.js';
import './misc.js';
import './random.js';
import './norm.js';
import './attention.js';
import './sample.js';
