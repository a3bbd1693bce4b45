// Convolution family, NCHW: conv2d and its data / weight gradients, nearest 2x upsampling and
// its gradient, bilinear resize (PyTorch's and TF1's), max and average pooling. PyTorch semantics (cross-correlation, no dilation, groups 1).

import { defineOps, type OpCase, type ShapeDtype, type VjpContext } from '../op.js';
import { boolAttr, intArrayAttr } from '../shape.js';
import { OpError, type TensorInfo } from '../types.js';

/** Stride and padding of a conv2d-family call, validated; every backend's kernels read them through this. */
export interface Conv2dGeometry {
  sh: number;
  sw: number;
  /** Padding: top, bottom, left, right. */
  pt: number;
  pb: number;
  pl: number;
  pr: number;
}

export function conv2dGeometry(op: string, attrs: Record<string, unknown>): Conv2dGeometry {
  const stride = intArrayAttr(op, attrs, 'stride', [1, 1]);
  if (stride.length !== 2 || stride.some((s) => s < 1)) {
    throw new OpError(op, `attribute 'stride' must be [sh, sw] with both >= 1, got ${JSON.stringify(stride)}`);
  }
  const padding = intArrayAttr(op, attrs, 'padding', [0, 0, 0, 0]);
  if (padding.length !== 4 || padding.some((p) => p < 0)) {
    throw new OpError(op, `attribute 'padding' must be [top, bottom, left, right] with all >= 0, got ${JSON.stringify(padding)}`);
  }
  return { sh: stride[0], sw: stride[1], pt: padding[0], pb: padding[1], pl: padding[2], pr: padding[3] };
}

/** Output height and width of a convolution over an H x W input with a KH x KW kernel. */
export function conv2dOutputSize(op: string, g: Conv2dGeometry, H: number, W: number, KH: number, KW: number): [number, number] {
  const ph = H + g.pt + g.pb, pw = W + g.pl + g.pr;
  if (ph < KH || pw < KW) {
    throw new OpError(op, `kernel ${KH}x${KW} is larger than the padded input ${ph}x${pw} (attribute 'padding')`);
  }
  return [Math.floor((ph - KH) / g.sh) + 1, Math.floor((pw - KW) / g.sw) + 1];
}

function rank4(op: string, name: string, t: ShapeDtype): readonly number[] {
  if (t.shape.length !== 4) throw new OpError(op, `input '${name}' must be rank 4, got [${t.shape}]`);
  return t.shape;
}

function pairAttr(op: string, attrs: Record<string, unknown>, name: string, min: number): [number, number] {
  const v = intArrayAttr(op, attrs, name);
  if (v.length !== 2 || v.some((d) => d < min)) {
    throw new OpError(op, `attribute '${name}' must be two integers >= ${min}, got ${JSON.stringify(v)}`);
  }
  return [v[0], v[1]];
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Sums an [N, O, H, W] gradient to [O] (the bias gradient), one contiguous axis range at a time. */
function sumToChannels(ctx: VjpContext, dy: TensorInfo): TensorInfo {
  const spatial = ctx.run('sum', [dy], { axes: [2, 3], keepDims: false })[0];
  return ctx.run('sum', [spatial], { axes: [0], keepDims: false })[0];
}

const pad = (p: number[]) => ({ padding: p });

// Each case: [N, C, H, W] x [O, C, KH, KW] (+ bias [O]) with stride and padding; odd sizes, 3x3
// and 4x4 kernels, stride 2, the IBQ Downsample padding [0,1,0,1], 1x1, size-1 dims, empty batch.
// The 'winograd' cases are stride-1 3x3 convolutions with enough channels and pixels that the
// cpu backend's 'auto' runs them (and their gradients) through F(4x4,3x3) Winograd transforms
// (backends/cpu/kernels/conv.ts chooseConv; its tests force each algorithm on every case); the
// small ones keep its direct path covered.
const convCases: OpCase[] = [
  { name: 'winograd', shapes: [[4, 16, 13, 14], [16, 16, 3, 3], [16]], attrs: { stride: [1, 1], ...pad([1, 1, 1, 1]) } },
  { name: 'winograd-pad-0210', shapes: [[2, 16, 15, 12], [20, 16, 3, 3]], attrs: { stride: [1, 1], ...pad([0, 2, 1, 0]) } },
  { name: 'regular', shapes: [[2, 4, 8, 8], [6, 4, 3, 3], [6]], attrs: { stride: [1, 1], ...pad([1, 1, 1, 1]) } },
  { name: 'odd-3x3-stride2', shapes: [[2, 5, 7, 11], [3, 5, 3, 3], [3]], attrs: { stride: [2, 2], ...pad([1, 1, 1, 1]) } },
  { name: 'downsample-pad-0101', shapes: [[2, 5, 7, 11], [4, 5, 3, 3], [4]], attrs: { stride: [2, 2], ...pad([0, 1, 0, 1]) } },
  { name: 'odd-4x4-no-bias', shapes: [[2, 5, 7, 11], [3, 5, 4, 4]], attrs: { stride: [2, 1], ...pad([2, 1, 0, 3]) } },
  { name: '1x1', shapes: [[2, 5, 7, 11], [7, 5, 1, 1], [7]], attrs: { stride: [1, 1], ...pad([0, 0, 0, 0]) } },
  { name: 'dropped-rows', shapes: [[1, 2, 8, 9], [3, 2, 3, 2], [3]], attrs: { stride: [2, 3], ...pad([0, 0, 0, 0]) } },
  { name: 'size-1', shapes: [[1, 1, 1, 5], [2, 1, 1, 3], [2]], attrs: { stride: [1, 1], ...pad([0, 0, 1, 1]) } },
  { name: 'empty-batch', shapes: [[0, 3, 5, 5], [2, 3, 3, 3], [2]], attrs: { stride: [1, 1], ...pad([1, 1, 1, 1]) } },
];

/** The [dy, w] and [x, dy] shapes of the gradient kernels for a conv2d case. */
function gradCases(kind: 'input' | 'weight'): OpCase[] {
  return convCases.map((c) => {
    const [x, w] = c.shapes;
    const g = conv2dGeometry('conv2d', c.attrs!);
    const [oh, ow] = conv2dOutputSize('conv2d', g, x[2], x[3], w[2], w[3]);
    const dy = [x[0], w[0], oh, ow];
    return kind === 'input'
      ? { name: c.name, shapes: [dy, w], attrs: { ...c.attrs, inputSize: [x[2], x[3]] } }
      : { name: c.name, shapes: [x, dy], attrs: { ...c.attrs, kernelSize: [w[2], w[3]] } };
  });
}

const nchwCases = (scale: number): OpCase[] => [
  { name: 'regular', shapes: [[2, 3, 4 * scale, 4 * scale]] },
  { name: 'odd', shapes: [[2, 5, 7 * scale, 11 * scale]] },
  { name: 'size-1', shapes: [[1, 1, scale, scale]] },
  { name: 'empty-batch', shapes: [[0, 3, 4 * scale, 4 * scale]] },
];

defineOps([
  {
    name: 'conv2d',
    autocast: 'low',
    doc: 'y[n,o,i,j] = bias[o] + sum over c,kh,kw of x[n,c,i*sh+kh-pt, j*sw+kw-pl] * w[o,c,kh,kw], reading 0 outside x '
      + '(cross-correlation, as torch.nn.functional.conv2d); padding is [top, bottom, left, right] and may be asymmetric; '
      + "y is [N, O, floor((H+pt+pb-KH)/sh)+1, floor((W+pl+pr-KW)/sw)+1]. Defaults: stride [1,1], padding [0,0,0,0].",
    inputs: [{ name: 'x', kind: 'float' }, { name: 'w', kind: 'float' }, { name: 'bias', kind: 'float', optional: true }],
    outputs: ['y'],
    infer: ([x, w, bias], attrs) => {
      const op = 'conv2d';
      const [N, C, H, W] = rank4(op, 'x', x);
      const [O, Cw, KH, KW] = rank4(op, 'w', w);
      if (Cw !== C) throw new OpError(op, `w has ${Cw} input channels but x has ${C}`);
      if (KH < 1 || KW < 1) throw new OpError(op, `kernel must be at least 1x1, got ${KH}x${KW}`);
      if (bias && !sameShape(bias.shape, [O])) throw new OpError(op, `input 'bias' must be [${O}], got [${bias.shape}]`);
      const [oh, ow] = conv2dOutputSize(op, conv2dGeometry(op, attrs), H, W, KH, KW);
      return [{ shape: [N, O, oh, ow], dtype: x.dtype }];
    },
    tolerance: 'accumulate',
    cases: convCases,
    vjp: (ctx, inputs, _outputs, [dy], attrs, needs) => {
      const [x, w, bias] = inputs;
      if (!dy) return inputs.map(() => null);
      const dx = needs[0] ? ctx.run('conv2d_grad_input', [dy, w], { ...attrs, inputSize: [x.shape[2], x.shape[3]] })[0] : null;
      const dw = needs[1] ? ctx.run('conv2d_grad_weight', [x, dy], { ...attrs, kernelSize: [w.shape[2], w.shape[3]] })[0] : null;
      return bias ? [dx, dw, needs[2] ? sumToChannels(ctx, dy) : null] : [dx, dw];
    },
  },
  {
    name: 'conv2d_grad_input',
    doc: 'The gradient of conv2d with respect to x: dx[n,c,h,w] = sum of dy[n,o,i,j] * w[o,c,kh,kw] over h = i*sh+kh-pt, '
      + 'w = j*sw+kw-pl (a transposed convolution); inputSize [H, W] fixes the rows and columns a stride drops (their gradient is 0).',
    inputs: [{ name: 'dy', kind: 'float' }, { name: 'w', kind: 'float' }],
    outputs: ['dx'],
    infer: ([dy, w], attrs) => {
      const op = 'conv2d_grad_input';
      const [N, O, OH, OW] = rank4(op, 'dy', dy);
      const [Ow, C, KH, KW] = rank4(op, 'w', w);
      if (Ow !== O) throw new OpError(op, `w has ${Ow} output channels but dy has ${O}`);
      if (KH < 1 || KW < 1) throw new OpError(op, `kernel must be at least 1x1, got ${KH}x${KW}`);
      const [H, W] = pairAttr(op, attrs, 'inputSize', 0);
      const [oh, ow] = conv2dOutputSize(op, conv2dGeometry(op, attrs), H, W, KH, KW);
      if (oh !== OH || ow !== OW) {
        throw new OpError(op, `dy is ${OH}x${OW} but a conv2d over attribute 'inputSize' [${H}, ${W}] gives ${oh}x${ow}`);
      }
      return [{ shape: [N, C, H, W], dtype: dy.dtype }];
    },
    tolerance: 'accumulate',
    cases: gradCases('input'),
    backwardOf: 'conv2d',
  },
  {
    name: 'conv2d_grad_weight',
    doc: 'The gradient of conv2d with respect to w: dw[o,c,kh,kw] = sum over n,i,j of dy[n,o,i,j] * x[n,c,i*sh+kh-pt, j*sw+kw-pl] '
      + '(0 outside x); kernelSize is [KH, KW]. An empty batch gives zeros.',
    inputs: [{ name: 'x', kind: 'float' }, { name: 'dy', kind: 'float' }],
    outputs: ['dw'],
    infer: ([x, dy], attrs) => {
      const op = 'conv2d_grad_weight';
      const [N, C, H, W] = rank4(op, 'x', x);
      const [Nd, O, OH, OW] = rank4(op, 'dy', dy);
      if (Nd !== N) throw new OpError(op, `dy has batch ${Nd} but x has ${N}`);
      const [KH, KW] = pairAttr(op, attrs, 'kernelSize', 1);
      const [oh, ow] = conv2dOutputSize(op, conv2dGeometry(op, attrs), H, W, KH, KW);
      if (oh !== OH || ow !== OW) {
        throw new OpError(op, `dy is ${OH}x${OW} but a conv2d of x with attribute 'kernelSize' [${KH}, ${KW}] gives ${oh}x${ow}`);
      }
      return [{ shape: [O, C, KH, KW], dtype: x.dtype }];
    },
    tolerance: 'accumulate',
    cases: gradCases('weight'),
    backwardOf: 'conv2d',
  },
  {
    name: 'upsample_nearest2x',
    doc: 'Nearest-neighbour upsampling by 2 of an NCHW tensor: y[n,c,i,j] = x[n,c,floor(i/2),floor(j/2)], y is [N, C, 2H, 2W] '
      + "(F.interpolate(scale_factor=2, mode='nearest')).",
    inputs: [{ name: 'x', kind: 'float' }],
    outputs: ['y'],
    infer: ([x]) => {
      const [N, C, H, W] = rank4('upsample_nearest2x', 'x', x);
      return [{ shape: [N, C, 2 * H, 2 * W], dtype: x.dtype }];
    },
    tolerance: 'exact',
    cases: nchwCases(1),
    vjp: (ctx, _inputs, _outputs, [dy]) => [dy ? ctx.run('upsample_nearest2x_grad', [dy])[0] : null],
  },
  {
    name: 'upsample_nearest2x_grad',
    doc: 'The gradient of upsample_nearest2x: dx[n,c,i,j] = sum of the 2x2 block dy[n,c,2i..2i+1,2j..2j+1]; dy is [N, C, 2H, 2W] (even sizes).',
    inputs: [{ name: 'dy', kind: 'float' }],
    outputs: ['dx'],
    infer: ([dy]) => {
      const op = 'upsample_nearest2x_grad';
      const [N, C, H2, W2] = rank4(op, 'dy', dy);
      if (H2 % 2 !== 0 || W2 % 2 !== 0) throw new OpError(op, `dy must have even height and width, got [${dy.shape}]`);
      return [{ shape: [N, C, H2 / 2, W2 / 2], dtype: dy.dtype }];
    },
    tolerance: 'accumulate',
    cases: nchwCases(2),
    backwardOf: 'upsample_nearest2x',
  },
  {
    name: 'resize_bilinear',
    doc: "Bilinear resize of an NCHW tensor to size [OH, OW], as F.interpolate(mode='bilinear', align_corners=False, antialias=False): "
      + 'the source row of output row i is max((i+0.5)*H/OH - 0.5, 0), its neighbours floor(src) and floor(src)+1 clamped to the '
      + 'last row, weighted by the fraction; columns likewise. With halfPixel false (default true), the source row is i*H/OH '
      + "instead: TensorFlow 1's legacy ResizeBilinear (align_corners=False, half_pixel_centers=False), the ADM evaluator's resize. "
      + 'H, W, OH, OW must be >= 1. No gradient.',
    inputs: [{ name: 'x', kind: 'float' }],
    outputs: ['y'],
    infer: ([x], attrs) => {
      const op = 'resize_bilinear';
      const [N, C, H, W] = rank4(op, 'x', x);
      if (H < 1 || W < 1) throw new OpError(op, `input 'x' must have height and width >= 1, got [${x.shape}]`);
      const [OH, OW] = pairAttr(op, attrs, 'size', 1);
      boolAttr(op, attrs, 'halfPixel', true);
      return [{ shape: [N, C, OH, OW], dtype: x.dtype }];
    },
    tolerance: 'accumulate',
    cases: [
      { name: 'upscale-2x', shapes: [[2, 3, 4, 5]], attrs: { size: [8, 10] } },
      { name: 'odd-mixed', shapes: [[2, 5, 7, 11]], attrs: { size: [13, 5] } },
      { name: 'downscale', shapes: [[2, 3, 16, 12]], attrs: { size: [5, 7] } },
      { name: 'same-size', shapes: [[1, 2, 6, 7]], attrs: { size: [6, 7] } },
      { name: 'size-1-input', shapes: [[1, 2, 1, 1]], attrs: { size: [3, 4] } },
      { name: 'size-1-output', shapes: [[1, 1, 5, 6]], attrs: { size: [1, 1] } },
      { name: 'empty-batch', shapes: [[0, 3, 4, 4]], attrs: { size: [2, 2] } },
      { name: 'tf1-upscale', shapes: [[2, 3, 5, 7]], attrs: { size: [12, 9], halfPixel: false } },
      { name: 'tf1-downscale', shapes: [[1, 3, 16, 13]], attrs: { size: [5, 6], halfPixel: false } },
      { name: 'tf1-size-1', shapes: [[1, 2, 1, 4]], attrs: { size: [3, 1], halfPixel: false } },
    ],
  },
  ...(['max_pool2d', 'avg_pool2d'] as const).map((name) => ({
    name,
    doc: name === 'max_pool2d'
      ? 'Max pooling of an NCHW tensor (F.max_pool2d, ceil_mode false, no dilation): y[n,c,i,j] = the maximum of x over rows '
        + 'i*sh-pt .. i*sh-pt+KH-1 and columns j*sw-pl .. j*sw-pl+KW-1 inside x (padding never wins: it is -inf). '
        + 'y is [N, C, floor((H+pt+pb-KH)/sh)+1, floor((W+pl+pr-KW)/sw)+1]; padding at most half the kernel. No gradient.'
      : 'Average pooling of an NCHW tensor (F.avg_pool2d, ceil_mode false): the sum of x over the window (as max_pool2d\'s) '
        + 'divided by KH*KW when countIncludePad (default true), else by the number of window elements inside x '
        + "(TensorFlow's SAME average pool, pytorch-fid's patched Inception blocks). No gradient.",
    inputs: [{ name: 'x', kind: 'float' as const }],
    outputs: ['y'],
    infer: ([x]: readonly ShapeDtype[], attrs: Record<string, unknown>) => {
      const [N, C, H, W] = rank4(name, 'x', x);
      const { kh, kw, g } = poolGeometry(name, attrs);
      const [oh, ow] = conv2dOutputSize(name, g, H, W, kh, kw);
      return [{ shape: [N, C, oh, ow], dtype: x.dtype }];
    },
    tolerance: (name === 'max_pool2d' ? 'exact' : 'elementwise') as 'exact' | 'elementwise',
    cases: poolCases(name === 'avg_pool2d'),
  })),
]);

/** Kernel size, stride (default: the kernel) and padding of a pooling call, validated. */
export function poolGeometry(op: string, attrs: Record<string, unknown>): { kh: number; kw: number; g: Conv2dGeometry; countIncludePad: boolean } {
  const [kh, kw] = pairAttr(op, attrs, 'kernelSize', 1);
  const g = conv2dGeometry(op, { stride: [kh, kw], ...attrs });
  if (2 * Math.max(g.pt, g.pb) > kh || 2 * Math.max(g.pl, g.pr) > kw) {
    throw new OpError(op, `padding ${JSON.stringify([g.pt, g.pb, g.pl, g.pr])} must be at most half the kernel ${kh}x${kw}`);
  }
  return { kh, kw, g, countIncludePad: boolAttr(op, attrs, 'countIncludePad', true) };
}

function poolCases(avg: boolean): OpCase[] {
  const cases: OpCase[] = [
    { name: 'inception-3x3-s2', shapes: [[2, 3, 9, 11]], attrs: { kernelSize: [3, 3], stride: [2, 2] } },
    { name: '3x3-s1-pad1', shapes: [[2, 5, 7, 6]], attrs: { kernelSize: [3, 3], stride: [1, 1], padding: [1, 1, 1, 1] } },
    { name: '2x2-default-stride', shapes: [[1, 4, 8, 7]], attrs: { kernelSize: [2, 2] } },
    { name: 'rect-asym-pad', shapes: [[2, 3, 5, 9]], attrs: { kernelSize: [2, 4], stride: [1, 3], padding: [1, 0, 2, 1] } },
    { name: 'size-1', shapes: [[1, 1, 1, 1]], attrs: { kernelSize: [3, 3], stride: [1, 1], padding: [1, 1, 1, 1] } },
    { name: 'empty-batch', shapes: [[0, 3, 4, 4]], attrs: { kernelSize: [3, 3], stride: [2, 2] } },
  ];
  if (!avg) return cases;
  return [
    ...cases,
    { name: 'exclude-pad-3x3', shapes: [[2, 5, 7, 6]], attrs: { kernelSize: [3, 3], stride: [1, 1], padding: [1, 1, 1, 1], countIncludePad: false } },
    { name: 'exclude-pad-asym', shapes: [[2, 3, 5, 9]], attrs: { kernelSize: [2, 4], stride: [1, 3], padding: [1, 0, 2, 1], countIncludePad: false } },
  ];
}
