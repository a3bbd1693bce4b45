// cpu kernels for src/ops/conv.ts. conv2d and both gradients are implicit GEMMs: the B
// operand is gathered from the image one KC x NC block at a time inside the GEMM driver
// (assembly/gemm.ts), so no im2col matrix is ever materialised.
//   forward:      y[n]  [O, OH*OW] = w [O, C*KH*KW] . im2col(x[n])
//   data grad:    dx[n] [C, H*W]   = w^T (as [C, O*KH*KW]) . gather(dy[n])
//   weight grad:  dw    [O, C*KH*KW] = sum_n dy[n] [O, OH*OW] . im2col(x[n])^T

import { registerKernel, reshapeInfo, runOp } from '../../../dispatch.js';
import { conv2dGeometry, poolGeometry } from '../../../ops/conv.js';
import { boolAttr } from '../../../shape.js';
import type { TensorInfo } from '../../../types.js';
import { sizeOf } from '../../../types.js';
import type { CpuBackend } from '../backend.js';
import { B_CONV_DY, B_IM2COL, B_IM2COL_T, B_MATRIX, type ConvGeometryDesc, runGemm } from './gemm.js';
import { type ConvAlgorithm, winogradConv, winogradWeightGrad } from './winograd.js';

const C_ = 'cpu';

/** [top, bottom, left, right] padding. */
function padsOf(attrs: Record<string, unknown>): number[] {
  const g = conv2dGeometry('conv2d', attrs);
  return [g.pt, g.pb, g.pl, g.pr];
}

function geometry(attrs: Record<string, unknown>, x: readonly number[], w: readonly number[], y: readonly number[]): ConvGeometryDesc {
  const g = conv2dGeometry('conv2d', attrs);
  return { C: x[1], H: x[2], W: x[3], KH: w[2], KW: w[3], sh: g.sh, sw: g.sw, pt: g.pt, pl: g.pl, OH: y[2], OW: y[3], O: w[0] };
}

/**
 * The algorithm for one convolution: Winograd for stride-1 3x3 kernels (the data
 * gradient also needs padding <= 2 on every side, so that it is a plain convolution of dy),
 * chosen by the backend's `conv` option or, under 'auto', by the rule measured in the kernels
 * README.
 */
export function chooseConv(b: CpuBackend, cv: ConvGeometryDesc, pads: readonly number[], kind: 'forward' | 'input' | 'weight'): ConvAlgorithm {
  if (cv.KH !== 3 || cv.KW !== 3 || cv.sh !== 1 || cv.sw !== 1) return 'direct';
  if (kind === 'input' && pads.some((p) => p > 2)) return 'direct';
  const forced = b.convAlgorithm;
  if (forced !== 'auto') return forced;
  // The Winograd tiles cover the output of the transformed convolution: dx for the data gradient.
  const [H, W] = kind === 'input' ? [cv.H, cv.W] : [cv.OH, cv.OW];
  return autoConv(Math.min(cv.C, cv.O), H, W);
}

/** Channels below which the transforms outweigh the GEMM (a tokenizer's RGB convolutions). */
const MIN_CHANNELS = 16;
/** Channels per tile of one image up to which a Winograd tile size pays (see autoConv). */
const CHANNELS_PER_TILE = 32;

/**
 * `auto`, from the layer's geometry alone, never the batch size: the same layer then takes the
 * same path in any batch, so a batch split across ranks (or a reconstruction in smaller
 * batches) gives the bits of the whole. F(4x4,3x3) where an image has a 4x4 tile for every 32
 * channels, else F(2x2) where it has a 2x2 tile for every 32, else the direct path. Measured on a
 * quiet machine with 2 threads (kernels README): F(4x4) ran 1.5-3.4x the direct path on every
 * layer of config S (batch 16) and of the official tokenizer; at batch 1 on the official 16px
 * layer (512 channels) it ran 1.0-1.4x, where F(2x2) ran 1.6x, but config S's 8px layer has the
 * same tiles per channel and F(4x4) was the faster there, and the training step counts more.
 */
function autoConv(channels: number, H: number, W: number): ConvAlgorithm {
  if (channels < MIN_CHANNELS) return 'direct';
  const tiles = (m: number) => Math.ceil(H / m) * Math.ceil(W / m);
  if (tiles(4) * CHANNELS_PER_TILE >= channels) return 'winograd4';
  if (tiles(2) * CHANNELS_PER_TILE >= channels) return 'winograd2';
  return 'direct';
}

/** A 1x1 kernel at stride 1 with no padding: x[n] is the B operand as it lies ([C, H*W]). */
function isPointwise(cv: ConvGeometryDesc): boolean {
  return cv.KH === 1 && cv.KW === 1 && cv.sh === 1 && cv.sw === 1 && cv.pt === 0 && cv.pl === 0 && cv.OH === cv.H && cv.OW === cv.W;
}

function perImage(n: number, aStep: number, bStep: number, cStep: number): [number, number, number][] {
  return Array.from({ length: n }, (_, i) => [i * aStep * 4, i * bStep * 4, i * cStep * 4] as [number, number, number]);
}

registerKernel<CpuBackend>('conv2d', C_, (b, [x, w, bias], [y], attrs) => {
  const cv = geometry(attrs, x.shape, w.shape, y.shape);
  const N = x.shape[0], CKK = cv.C * cv.KH * cv.KW, P = cv.OH * cv.OW;
  const algo = chooseConv(b, cv, padsOf(attrs), 'forward');
  if (algo !== 'direct') {
    winogradConv(b, algo, {
      x: b.addr(x), w: b.addr(w), bias: bias ? b.addr(bias) : 0, y: b.addr(y),
      N, Cin: cv.C, H: cv.H, W: cv.W, Cout: cv.O, OH: cv.OH, OW: cv.OW, pt: cv.pt, pl: cv.pl, dgrad: false,
    });
    return;
  }
  const pointwise = isPointwise(cv);
  runGemm(b, {
    M: cv.O, N: P, K: CKK,
    a: b.addr(w), sAm: CKK, sAk: 1,
    // A 1x1 convolution reads x[n] as a plain [C, H*W] matrix.
    bKind: pointwise ? B_MATRIX : B_IM2COL, b: b.addr(x), sBk: P, sBn: 1,
    c: b.addr(y), ldc: P,
    bias: bias ? b.addr(bias) : 0,
    conv: cv,
    batches: perImage(N, 0, cv.C * cv.H * cv.W, cv.O * P),
  });
});

registerKernel<CpuBackend>('conv2d_grad_input', C_, (b, [dy, w], [dx], attrs) => {
  const cv = geometry(attrs, dx.shape, w.shape, dy.shape);
  const N = dx.shape[0], HW = cv.H * cv.W, K = cv.O * cv.KH * cv.KW;
  const pads = padsOf(attrs);
  const algo = chooseConv(b, cv, pads, 'input');
  if (algo !== 'direct') {
    // dx = the full correlation of dy with the flipped kernel: a stride-1 convolution of dy
    // padded by 2 - p on each side, whose output is exactly H x W.
    winogradConv(b, algo, {
      x: b.addr(dy), w: b.addr(w), bias: 0, y: b.addr(dx),
      N, Cin: cv.O, H: cv.OH, W: cv.OW, Cout: cv.C, OH: cv.H, OW: cv.W, pt: 2 - pads[0], pl: 2 - pads[2], dgrad: true,
    });
    return;
  }
  if (isPointwise(cv)) {
    // dx[n] [C, HW] = w^T [C, O] . dy[n] [O, HW]: plain matrices, w read transposed.
    runGemm(b, {
      M: cv.C, N: HW, K: cv.O,
      a: b.addr(w), sAm: 1, sAk: cv.C,
      bKind: B_MATRIX, b: b.addr(dy), sBk: HW, sBn: 1,
      c: b.addr(dx), ldc: HW,
      batches: perImage(N, 0, cv.O * HW, cv.C * HW),
    });
    return;
  }
  if (cv.sh > 1 || cv.sw > 1) {
    stridedDataGrad(b, cv, N, b.addr(dy), b.addr(w), b.addr(dx));
    return;
  }
  // w read as [C, O*KH*KW], transposed once here: the GEMM then packs a plain matrix with
  // vector shuffles instead of gathering w element by element again for every image.
  const [wt] = runOp(b, 'permute', [reshapeInfo(w, [cv.O, cv.C, cv.KH * cv.KW])], { perm: [1, 0, 2] });
  try {
    runGemm(b, {
      M: cv.C, N: HW, K,
      a: b.addr(wt), sAm: K, sAk: 1,
      bKind: B_CONV_DY, b: b.addr(dy), sBk: 0, sBn: 0,
      c: b.addr(dx), ldc: HW,
      conv: cv,
      batches: perImage(N, 0, cv.O * cv.OH * cv.OW, cv.C * HW),
    });
  } finally {
    b.release(wt.buffer);
  }
});

/** Bytes of the column matrices of one chunk of images in stridedDataGrad. */
const COLS_BYTES = 16 << 20;

/**
 * The data gradient of a strided convolution: cols[n] [C*KH*KW, OH*OW] = w^T . dy[n] (a GEMM
 * with no zero products), then col2im adds each column into dx (assembly/col2im.ts). Images
 * go in chunks whose columns fit COLS_BYTES.
 */
function stridedDataGrad(b: CpuBackend, cv: ConvGeometryDesc, N: number, dy: number, w: number, dx: number): void {
  const CKK = cv.C * cv.KH * cv.KW, P = cv.OH * cv.OW;
  const perImageFloats = CKK * P;
  const chunk = Math.max(1, Math.min(N, Math.floor(COLS_BYTES / 4 / Math.max(1, perImageFloats))));
  const cols = b.allocBytes(chunk * perImageFloats * 4);
  const counter = b.allocBytes(64);
  try {
    for (let n0 = 0; n0 < N; n0 += chunk) {
      const n1 = Math.min(N, n0 + chunk);
      runGemm(b, {
        M: CKK, N: P, K: cv.O,
        // w [O, C*KH*KW] read transposed.
        a: w, sAm: 1, sAk: CKK,
        bKind: B_MATRIX, b: dy + n0 * cv.O * P * 4, sBk: P, sBn: 1,
        c: cols, ldc: P,
        batches: perImage(n1 - n0, 0, cv.O * P, perImageFloats),
      });
      b.mem().i32[counter / 4] = 0;
      const jobs = (n1 - n0) * cv.C;
      const parts = Math.max(1, Math.min(b.threads, Math.floor(jobs / 4)));
      b.pool.run('col2im', Array.from({ length: parts }, () =>
        [cols, dx, n0, n1, cv.C, cv.H, cv.W, cv.KH, cv.KW, cv.sh, cv.sw, cv.pt, cv.pl, cv.OH, cv.OW, perImageFloats, counter]));
    }
  } finally {
    b.freeBytes(cols);
    b.freeBytes(counter);
  }
}

registerKernel<CpuBackend>('conv2d_grad_weight', C_, (b, [x, dy], [dw], attrs) => {
  const cv = geometry(attrs, x.shape, dw.shape, dy.shape);
  const N = x.shape[0], CKK = cv.C * cv.KH * cv.KW, P = cv.OH * cv.OW;
  if (N === 0) {
    b.x.fill32(b.addr(dw), sizeOf(dw.shape), 0);
    return;
  }
  const algo = chooseConv(b, cv, padsOf(attrs), 'weight');
  if (algo !== 'direct') {
    winogradWeightGrad(b, algo, {
      x: b.addr(x), dy: b.addr(dy), dw: b.addr(dw),
      N, C: cv.C, H: cv.H, W: cv.W, O: cv.O, OH: cv.OH, OW: cv.OW, pt: cv.pt, pl: cv.pl,
    });
    return;
  }
  runGemm(b, {
    M: cv.O, N: CKK, K: P,
    a: b.addr(dy), sAm: P, sAk: 1,
    // A 1x1 convolution reads x[n]^T as a transposed [C, H*W] matrix.
    ...(isPointwise(cv) ? { bKind: B_MATRIX, sBk: 1, sBn: P } : { bKind: B_IM2COL_T, sBk: 0, sBn: 0 }), b: b.addr(x),
    c: b.addr(dw), ldc: CKK,
    conv: cv,
    batches: perImage(N, cv.O * P, cv.C * cv.H * cv.W, 0),
    reduceBatches: true,
  });
});

function planes(t: TensorInfo): number {
  return t.shape[0] * t.shape[1];
}

registerKernel<CpuBackend>('upsample_nearest2x', C_, (b, [x], [y]) => {
  const [, , H, W] = x.shape;
  const xp = b.addr(x), yp = b.addr(y);
  b.pool.run('upsample2x', b.split(planes(x), Math.ceil(65536 / (H * W + 1))).map(([s, e]) => [xp, yp, s, e, H, W]));
});

registerKernel<CpuBackend>('upsample_nearest2x_grad', C_, (b, [dy], [dx]) => {
  const [, , H, W] = dx.shape;
  const dyp = b.addr(dy), dxp = b.addr(dx);
  b.pool.run('upsample2xGrad', b.split(planes(dx), Math.ceil(65536 / (H * W + 1))).map(([s, e]) => [dyp, dxp, s, e, H, W]));
});

/** PyTorch's taps for align_corners=False, or TF1 legacy ones (as the reference computes them, in float64). */
function taps(outSize: number, inSize: number, halfPixel: boolean): [number, number, number][] {
  return Array.from({ length: outSize }, (_, dst) => {
    const src = halfPixel ? Math.max((dst + 0.5) * (inSize / outSize) - 0.5, 0) : dst * (inSize / outSize);
    const i0 = Math.floor(src);
    return [i0, i0 < inSize - 1 ? i0 + 1 : i0, src - i0];
  });
}

registerKernel<CpuBackend>('resize_bilinear', C_, (b, [x], [y], attrs) => {
  const [, , H, W] = x.shape;
  const [, , OH, OW] = y.shape;
  const halfPixel = boolAttr('resize_bilinear', attrs, 'halfPixel', true);
  const table = b.allocBytes((OH + OW) * 12);
  try {
    const m = b.mem();
    [...taps(OH, H, halfPixel), ...taps(OW, W, halfPixel)].forEach(([i0, i1, wt], k) => {
      m.i32[table / 4 + 3 * k] = i0;
      m.i32[table / 4 + 3 * k + 1] = i1;
      m.f32[table / 4 + 3 * k + 2] = wt;
    });
    const xp = b.addr(x), yp = b.addr(y);
    b.pool.run('resizeBilinear', b.split(planes(x), Math.ceil(65536 / (OH * OW + 1))).map(([s, e]) =>
      [xp, yp, s, e, H, W, OH, OW, table, table + OH * 12]));
  } finally {
    b.freeBytes(table);
  }
});

for (const op of ['max_pool2d', 'avg_pool2d'] as const) {
  registerKernel<CpuBackend>(op, C_, (b, [x], [y], attrs) => {
    const { kh, kw, g, countIncludePad } = poolGeometry(op, attrs);
    const [, , H, W] = x.shape;
    const [, , OH, OW] = y.shape;
    const xp = b.addr(x), yp = b.addr(y);
    b.pool.run('pool2d', b.split(planes(x), Math.ceil(65536 / (OH * OW * kh * kw + 1))).map(([s, e]) =>
      [xp, yp, s, e, H, W, OH, OW, kh, kw, g.sh, g.sw, g.pt, g.pl, op === 'max_pool2d' ? 1 : 0, countIncludePad ? 1 : 0]));
  });
}
