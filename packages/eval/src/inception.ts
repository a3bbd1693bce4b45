// InceptionV3 as pytorch-fid's FID network (spec eval.md §2, §7): torchvision's inception_v3
// skeleton with 1008 classes and no aux head, the Mixed blocks patched as pytorch-fid patches
// them (FIDInceptionA for 5b-5d, FIDInceptionC for 6b-6e, FIDInceptionE_1 for 7b,
// FIDInceptionE_2 for 7c: average pools without the padding in their count; 7c's pool branch a
// 3x3 max pool), feature taps 64 / 192 / 768 / 2048, the ADM suite's spatial tap and the
// unbiased logits for the Inception Score. Weights in the official key layout
// (pt_inception-2015-12-05-6726825d.pth: `Conv2d_1a_3x3.conv.weight`, `...bn.running_var`,
// `Mixed_5b.branch1x1.conv.weight`, ..., `fc.weight`).
//
// Every BasicConv2d (conv without bias, BatchNorm eps 0.001, ReLU) runs as one conv with the
// BatchNorm folded into its weight and bias (in float64 on the host, at load time): the same
// function in eval mode, one op instead of three.
//
// Input modes:
// - 'pytorch' (pytorch-fid): float images in [0, 1], bilinear resize to 299 (align_corners
//   false, half-pixel), then 2x - 1;
// - 'adm' (the ADM evaluator's TF graph): uint8 values as floats in [0, 255], TF1's legacy
//   ResizeBilinear to 299 (no half-pixel offset), then (x - 128) / 128.

import type { Backend } from '@ibq/kernels';
import {
  type HostTensor, type Tensor, avgPool2d, concat, conv2d, dispose, keep, matmul, maxPool2d, mean, noGrad, permute, relu,
  resizeBilinear, scale, slice, tensor, tidy,
} from '@ibq/tensor';

export const INCEPTION_SIZE = 299;
export const INCEPTION_CLASSES = 1008;
export const INCEPTION_BN_EPS = 0.001;
/** pytorch-fid's release file and the sha256 prefix its URL carries (torch hub's convention). */
export const FID_WEIGHTS_FILE = 'pt_inception-2015-12-05-6726825d.pth';
export const FID_WEIGHTS_SHA256_PREFIX = '6726825d';
/** Feature dimensions pytorch-fid offers (`--dims`). */
export const INCEPTION_DIMS = [64, 192, 768, 2048] as const;
export type InceptionDims = (typeof INCEPTION_DIMS)[number];
export type InceptionMode = 'pytorch' | 'adm';
/** The ADM suite's sFID tap: mixed_6/conv (Mixed_6d.branch1x1 here), first 7 channels, 17x17x7 = 2023 at 299. */
export const SPATIAL_CHANNELS = 7;

/** One BasicConv2d: name (key prefix), channels, kernel [kh, kw], stride, padding [ph, pw]. */
export interface BasicConvSpec {
  name: string;
  inChannels: number;
  outChannels: number;
  kernel: [number, number];
  stride: number;
  padding: [number, number];
}

function conv(name: string, cin: number, cout: number, k: number | [number, number], stride = 1, pad: number | [number, number] = 0): BasicConvSpec {
  return {
    name, inChannels: cin, outChannels: cout, kernel: typeof k === 'number' ? [k, k] : k, stride,
    padding: typeof pad === 'number' ? [pad, pad] : pad,
  };
}

// torchvision's blocks (InceptionA..E), with their children's names.
const blockA = (n: string, cin: number, pool: number) => [
  conv(`${n}.branch1x1`, cin, 64, 1),
  conv(`${n}.branch5x5_1`, cin, 48, 1), conv(`${n}.branch5x5_2`, 48, 64, 5, 1, 2),
  conv(`${n}.branch3x3dbl_1`, cin, 64, 1), conv(`${n}.branch3x3dbl_2`, 64, 96, 3, 1, 1), conv(`${n}.branch3x3dbl_3`, 96, 96, 3, 1, 1),
  conv(`${n}.branch_pool`, cin, pool, 1),
];
const blockB = (n: string, cin: number) => [
  conv(`${n}.branch3x3`, cin, 384, 3, 2),
  conv(`${n}.branch3x3dbl_1`, cin, 64, 1), conv(`${n}.branch3x3dbl_2`, 64, 96, 3, 1, 1), conv(`${n}.branch3x3dbl_3`, 96, 96, 3, 2),
];
const blockC = (n: string, c7: number) => [
  conv(`${n}.branch1x1`, 768, 192, 1),
  conv(`${n}.branch7x7_1`, 768, c7, 1), conv(`${n}.branch7x7_2`, c7, c7, [1, 7], 1, [0, 3]), conv(`${n}.branch7x7_3`, c7, 192, [7, 1], 1, [3, 0]),
  conv(`${n}.branch7x7dbl_1`, 768, c7, 1), conv(`${n}.branch7x7dbl_2`, c7, c7, [7, 1], 1, [3, 0]),
  conv(`${n}.branch7x7dbl_3`, c7, c7, [1, 7], 1, [0, 3]), conv(`${n}.branch7x7dbl_4`, c7, c7, [7, 1], 1, [3, 0]),
  conv(`${n}.branch7x7dbl_5`, c7, 192, [1, 7], 1, [0, 3]),
  conv(`${n}.branch_pool`, 768, 192, 1),
];
const blockD = (n: string) => [
  conv(`${n}.branch3x3_1`, 768, 192, 1), conv(`${n}.branch3x3_2`, 192, 320, 3, 2),
  conv(`${n}.branch7x7x3_1`, 768, 192, 1), conv(`${n}.branch7x7x3_2`, 192, 192, [1, 7], 1, [0, 3]),
  conv(`${n}.branch7x7x3_3`, 192, 192, [7, 1], 1, [3, 0]), conv(`${n}.branch7x7x3_4`, 192, 192, 3, 2),
];
const blockE = (n: string, cin: number) => [
  conv(`${n}.branch1x1`, cin, 320, 1),
  conv(`${n}.branch3x3_1`, cin, 384, 1), conv(`${n}.branch3x3_2a`, 384, 384, [1, 3], 1, [0, 1]), conv(`${n}.branch3x3_2b`, 384, 384, [3, 1], 1, [1, 0]),
  conv(`${n}.branch3x3dbl_1`, cin, 448, 1), conv(`${n}.branch3x3dbl_2`, 448, 384, 3, 1, 1),
  conv(`${n}.branch3x3dbl_3a`, 384, 384, [1, 3], 1, [0, 1]), conv(`${n}.branch3x3dbl_3b`, 384, 384, [3, 1], 1, [1, 0]),
  conv(`${n}.branch_pool`, cin, 192, 1),
];

/** Every BasicConv2d of the FID network, in forward order. */
export const INCEPTION_CONVS: readonly BasicConvSpec[] = [
  conv('Conv2d_1a_3x3', 3, 32, 3, 2), conv('Conv2d_2a_3x3', 32, 32, 3), conv('Conv2d_2b_3x3', 32, 64, 3, 1, 1),
  conv('Conv2d_3b_1x1', 64, 80, 1), conv('Conv2d_4a_3x3', 80, 192, 3),
  ...blockA('Mixed_5b', 192, 32), ...blockA('Mixed_5c', 256, 64), ...blockA('Mixed_5d', 288, 64),
  ...blockB('Mixed_6a', 288),
  ...blockC('Mixed_6b', 128), ...blockC('Mixed_6c', 160), ...blockC('Mixed_6d', 160), ...blockC('Mixed_6e', 192),
  ...blockD('Mixed_7a'),
  ...blockE('Mixed_7b', 1280), ...blockE('Mixed_7c', 2048),
];

/** The official state dict's keys and shapes (num_batches_tracked entries are optional and ignored). */
export function inceptionStateShapes(): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const c of INCEPTION_CONVS) {
    out.set(`${c.name}.conv.weight`, [c.outChannels, c.inChannels, ...c.kernel]);
    for (const k of ['weight', 'bias', 'running_mean', 'running_var']) out.set(`${c.name}.bn.${k}`, [c.outChannels]);
  }
  out.set('fc.weight', [INCEPTION_CLASSES, 2048]);
  out.set('fc.bias', [INCEPTION_CLASSES]);
  return out;
}

/** What a forward pass returns; each entry only when asked for. Rows are images. */
export interface InceptionOutputs {
  /** Spatial means of the taps, [N, dims] (pytorch-fid's adaptive_avg_pool2d of blocks 0-2; block 3 is pooled already). */
  pool64?: Tensor;
  pool192?: Tensor;
  pool768?: Tensor;
  pool2048?: Tensor;
  /** The ADM spatial tap flattened in TF's HWC order, [N, h*w*7]. */
  spatial?: Tensor;
  /** pool2048 x fc.weight^T without the bias, [N, 1008] (the ADM suite's IS logits). */
  logitsUnbiased?: Tensor;
}
export type InceptionTap = keyof InceptionOutputs;

interface FoldedConv {
  spec: BasicConvSpec;
  weight: Tensor;
  bias: Tensor;
}

export class InceptionV3 {
  private readonly convs = new Map<string, FoldedConv>();
  /** fc.weight [1008, 2048] (the IS logits use it without fc.bias, as the ADM suite does). */
  private readonly fcWeight: Tensor;
  readonly backend: Backend | undefined;

  /** Builds the network from a state dict in the official layout (validated by loadInception). */
  constructor(state: Map<string, HostTensor>, options: { backend?: Backend } = {}) {
    this.backend = options.backend;
    const get = (k: string) => {
      const t = state.get(k);
      if (!t) throw new Error(`InceptionV3: state dict has no '${k}'`);
      return t;
    };
    try {
      for (const spec of INCEPTION_CONVS) {
        const w = get(`${spec.name}.conv.weight`).data;
        const g = get(`${spec.name}.bn.weight`).data, b = get(`${spec.name}.bn.bias`).data;
        const m = get(`${spec.name}.bn.running_mean`).data, v = get(`${spec.name}.bn.running_var`).data;
        const per = w.length / spec.outChannels;
        const fw = new Float32Array(w.length), fb = new Float32Array(spec.outChannels);
        for (let o = 0; o < spec.outChannels; o++) {
          const s = Number(g[o]) / Math.sqrt(Number(v[o]) + INCEPTION_BN_EPS);
          for (let i = 0; i < per; i++) fw[o * per + i] = Number(w[o * per + i]) * s;
          fb[o] = Number(b[o]) - Number(m[o]) * s;
        }
        const shape = [spec.outChannels, spec.inChannels, ...spec.kernel];
        this.convs.set(spec.name, {
          spec,
          weight: keep(tensor(fw, shape, { backend: this.backend })),
          bias: keep(tensor(fb, [spec.outChannels], { backend: this.backend })),
        });
      }
      const fc = get('fc.weight');
      this.fcWeight = keep(tensor(Float32Array.from(fc.data as ArrayLike<number>), [INCEPTION_CLASSES, 2048], { backend: this.backend }));
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  dispose(): void {
    for (const c of this.convs.values()) dispose([c.weight, c.bias]);
    this.convs.clear();
    // fcWeight is unset when the constructor failed before it.
    (this.fcWeight as Tensor | undefined)?.dispose();
  }

  private basic(name: string, x: Tensor): Tensor {
    const c = this.convs.get(name)!;
    const [ph, pw] = c.spec.padding;
    return relu(conv2d(x, c.weight, c.bias, { stride: c.spec.stride, padding: [ph, ph, pw, pw] }));
  }

  private chain(names: string[], x: Tensor): Tensor {
    return names.reduce((h, n) => this.basic(n, h), x);
  }

  /** TF's average pool: 3x3, stride 1, padding 1, the padding not counted. */
  private static avgPoolSame(x: Tensor): Tensor {
    return avgPool2d(x, 3, { stride: 1, padding: 1, countIncludePad: false });
  }

  private mixedA(n: string, x: Tensor): Tensor {
    return concat([
      this.basic(`${n}.branch1x1`, x),
      this.chain([`${n}.branch5x5_1`, `${n}.branch5x5_2`], x),
      this.chain([`${n}.branch3x3dbl_1`, `${n}.branch3x3dbl_2`, `${n}.branch3x3dbl_3`], x),
      this.basic(`${n}.branch_pool`, InceptionV3.avgPoolSame(x)),
    ], 1);
  }

  private mixedB(n: string, x: Tensor): Tensor {
    return concat([
      this.basic(`${n}.branch3x3`, x),
      this.chain([`${n}.branch3x3dbl_1`, `${n}.branch3x3dbl_2`, `${n}.branch3x3dbl_3`], x),
      maxPool2d(x, 3, { stride: 2 }),
    ], 1);
  }

  /** Returns the block output and its 1x1 branch (the ADM spatial tap of Mixed_6d). */
  private mixedC(n: string, x: Tensor): { out: Tensor; branch1x1: Tensor } {
    const branch1x1 = this.basic(`${n}.branch1x1`, x);
    const out = concat([
      branch1x1,
      this.chain([`${n}.branch7x7_1`, `${n}.branch7x7_2`, `${n}.branch7x7_3`], x),
      this.chain([1, 2, 3, 4, 5].map((k) => `${n}.branch7x7dbl_${k}`), x),
      this.basic(`${n}.branch_pool`, InceptionV3.avgPoolSame(x)),
    ], 1);
    return { out, branch1x1 };
  }

  private mixedD(n: string, x: Tensor): Tensor {
    return concat([
      this.chain([`${n}.branch3x3_1`, `${n}.branch3x3_2`], x),
      this.chain([1, 2, 3, 4].map((k) => `${n}.branch7x7x3_${k}`), x),
      maxPool2d(x, 3, { stride: 2 }),
    ], 1);
  }

  /** FIDInceptionE_1 (avg pool without padding count) or FIDInceptionE_2 (3x3 max pool, stride 1, padding 1). */
  private mixedE(n: string, x: Tensor, pool: 'avg' | 'max'): Tensor {
    const b3 = this.basic(`${n}.branch3x3_1`, x);
    const d3 = this.chain([`${n}.branch3x3dbl_1`, `${n}.branch3x3dbl_2`], x);
    const pooled = pool === 'avg' ? InceptionV3.avgPoolSame(x) : maxPool2d(x, 3, { stride: 1, padding: 1 });
    return concat([
      this.basic(`${n}.branch1x1`, x),
      concat([this.basic(`${n}.branch3x3_2a`, b3), this.basic(`${n}.branch3x3_2b`, b3)], 1),
      concat([this.basic(`${n}.branch3x3dbl_3a`, d3), this.basic(`${n}.branch3x3dbl_3b`, d3)], 1),
      this.basic(`${n}.branch_pool`, pooled),
    ], 1);
  }

  /**
   * The network on an already prepared NCHW input (values the first conv expects, any size
   * >= 75x75): the taps asked for, computed only as far as needed. Results are kept (the
   * caller disposes them); intermediates are freed.
   */
  forward(x: Tensor, taps: readonly InceptionTap[]): InceptionOutputs {
    if (x.rank !== 4 || x.shape[1] !== 3) throw new Error(`InceptionV3: input must be [N, 3, H, W], got [${x.shape}]`);
    if (x.shape[2] < 75 || x.shape[3] < 75) throw new Error(`InceptionV3: input must be at least 75x75, got ${x.shape[2]}x${x.shape[3]}`);
    const want = new Set(taps);
    const last = want.has('pool2048') || want.has('logitsUnbiased') ? 3 : want.has('pool768') || want.has('spatial') ? 2 : want.has('pool192') ? 1 : 0;
    const out: InceptionOutputs = {};
    const spatialMean = (t: Tensor) => mean(t, [2, 3]);
    return noGrad(() => tidy(() => {
      let h = this.chain(['Conv2d_1a_3x3', 'Conv2d_2a_3x3', 'Conv2d_2b_3x3'], x);
      h = maxPool2d(h, 3, { stride: 2 });
      if (want.has('pool64')) out.pool64 = keep(spatialMean(h));
      if (last < 1) return out;
      h = maxPool2d(this.chain(['Conv2d_3b_1x1', 'Conv2d_4a_3x3'], h), 3, { stride: 2 });
      if (want.has('pool192')) out.pool192 = keep(spatialMean(h));
      if (last < 2) return out;
      h = this.mixedA('Mixed_5b', h);
      h = this.mixedA('Mixed_5c', h);
      h = this.mixedA('Mixed_5d', h);
      h = this.mixedB('Mixed_6a', h);
      h = this.mixedC('Mixed_6b', h).out;
      h = this.mixedC('Mixed_6c', h).out;
      const d = this.mixedC('Mixed_6d', h);
      if (want.has('spatial')) {
        const [n, , sh, sw] = d.branch1x1.shape;
        const first = slice(d.branch1x1, [0, 0, 0, 0], [n, SPATIAL_CHANNELS, sh, sw]);
        out.spatial = keep(permute(first, [0, 2, 3, 1]).reshape([n, sh * sw * SPATIAL_CHANNELS]));
      }
      h = this.mixedC('Mixed_6e', d.out).out;
      if (want.has('pool768')) out.pool768 = keep(spatialMean(h));
      if (last < 3) return out;
      h = this.mixedD('Mixed_7a', h);
      h = this.mixedE('Mixed_7b', h, 'avg');
      h = this.mixedE('Mixed_7c', h, 'max');
      const pool = spatialMean(h);
      if (want.has('pool2048')) out.pool2048 = keep(pool);
      if (want.has('logitsUnbiased')) out.logitsUnbiased = keep(matmul(pool, this.fcWeight, false, true));
      return out;
    }));
  }

  /**
   * Prepares a batch for the network as the given protocol does:
   * - 'pytorch': x is NCHW float in [0, 1]; bilinear (half-pixel) resize to 299 unless
   *   `resize` is false, then 2x - 1;
   * - 'adm': x is NCHW float holding uint8 values 0..255; TF1 legacy resize to 299, then
   *   (x - 128) / 128.
   */
  prepare(x: Tensor, mode: InceptionMode, resize = true): Tensor {
    return tidy(() => {
      // Both protocols resize unconditionally (at 299 already, the resize is the identity).
      const sized = resize ? resizeBilinear(x, [INCEPTION_SIZE, INCEPTION_SIZE], { halfPixel: mode === 'pytorch' }) : x;
      // 2x - 1, and (x - 128)/128 = x/128 - 1 exactly (1/128 is a power of two).
      return mode === 'pytorch' ? scale(sized, 2, -1) : scale(sized, 1 / 128, -1);
    });
  }
}

/** Converts NHWC uint8 images (the .npz sample layout) to an NCHW float tensor of the values / divisor (float32 division). */
export function uint8NhwcToTensor(u8: Uint8Array, n: number, h: number, w: number, backend?: Backend, divisor = 1): Tensor {
  const out = new Float32Array(n * 3 * h * w);
  for (let b = 0; b < n; b++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const src = ((b * h + y) * w + x) * 3;
        for (let c = 0; c < 3; c++) out[((b * 3 + c) * h + y) * w + x] = u8[src + c] / divisor;
      }
    }
  }
  return tensor(out, [n, 3, h, w], { backend });
}

