// The op table: every family's rows. Import order does not matter.
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

export {};
