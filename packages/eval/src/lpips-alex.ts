// LPIPS, AlexNet variant (spec eval.md §3: the `LPIPS_ALEX` the reference's evaluation prints),
// for evaluation: torchvision's alexnet `features` (key layout `features.<index>.weight|bias`,
// `classifier.*` ignored) tapped after relu1..relu5 (features[1], [4], [7], [9], [11]: 64, 192,
// 384, 256, 256 channels), with the LPIPS v0.1 alex heads (`lin0..lin4.model.1.weight`) and the
// same scaling layer, normalisation and per-tap spatial mean as the VGG variant (lpips.ts).
// Forward only: its max pools (the max_pool2d op) have no gradient rule, and evaluation needs none.

import type { Backend } from '@ibq/kernels';
import {
  type HostTensor, type Tensor, conv2d, dispose, div, keep, maxPool2d, mean, noGrad, relu, square, sub, tensor, tidy,
} from '@ibq/tensor';
import { LPIPS_SCALE, LPIPS_SHIFT, normalizeChannels } from './lpips.js';
import { openWeightFile } from './weight-file.js';

export const ALEX_CHANNELS = [64, 192, 384, 256, 256] as const;
/** features.<index>: [out, in, kernel, stride, padding] of each conv. */
const ALEX_CONVS: readonly [number, number, number, number, number, number][] = [
  [0, 64, 3, 11, 4, 2], [3, 192, 64, 5, 1, 2], [6, 384, 192, 3, 1, 1], [8, 256, 384, 3, 1, 1], [10, 256, 256, 3, 1, 1],
];

export function alexStateShapes(): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const [i, o, c, k] of ALEX_CONVS) {
    out.set(`features.${i}.weight`, [o, c, k, k]);
    out.set(`features.${i}.bias`, [o]);
  }
  return out;
}

export function alexHeadShapes(): Map<string, number[]> {
  return new Map(ALEX_CHANNELS.map((c, k) => [`lin${k}.model.1.weight`, [1, c, 1, 1]]));
}

export class LpipsAlex {
  private readonly w: Tensor[];
  private readonly b: Tensor[];
  private readonly heads: Tensor[];
  private readonly shift: Tensor;
  private readonly scale: Tensor;

  /** `backbone`: torchvision alexnet keys (features.*); `heads`: lin0..lin4.model.1.weight. */
  constructor(backbone: Map<string, HostTensor>, heads: Map<string, HostTensor>, readonly backend?: Backend) {
    const t = (h: HostTensor) => keep(tensor(Float32Array.from(h.data as ArrayLike<number>), h.shape, { backend }));
    this.w = ALEX_CONVS.map(([i]) => t(backbone.get(`features.${i}.weight`)!));
    this.b = ALEX_CONVS.map(([i]) => t(backbone.get(`features.${i}.bias`)!));
    this.heads = ALEX_CHANNELS.map((_, k) => t(heads.get(`lin${k}.model.1.weight`)!));
    this.shift = keep(tensor([...LPIPS_SHIFT], [1, 3, 1, 1], { backend }));
    this.scale = keep(tensor([...LPIPS_SCALE], [1, 3, 1, 1], { backend }));
  }

  dispose(): void {
    dispose([...this.w, ...this.b, ...this.heads, this.shift, this.scale]);
  }

  /** relu1..relu5 of an image batch in [-1, 1]. */
  features(x: Tensor): Tensor[] {
    const conv = (k: number, h: Tensor) => relu(conv2d(h, this.w[k], this.b[k], { stride: ALEX_CONVS[k][4], padding: ALEX_CONVS[k][5] }));
    const h0 = div(sub(x, this.shift), this.scale);
    const r1 = conv(0, h0);
    const r2 = conv(1, maxPool2d(r1, 3, { stride: 2 }));
    const r3 = conv(2, maxPool2d(r2, 3, { stride: 2 }));
    const r4 = conv(3, r3);
    const r5 = conv(4, r4);
    return [r1, r2, r3, r4, r5];
  }

  /** Per-image LPIPS and per-tap values ([N] and [N, 5]) of two NCHW batches in [-1, 1]. */
  async forward(x0: Tensor, x1: Tensor): Promise<{ total: Float32Array; layers: Float32Array }> {
    const per = noGrad(() => tidy(() => {
      const f0 = this.features(x0), f1 = this.features(x1);
      return f0.map((a, k) => keep(mean(conv2d(square(sub(normalizeChannels(a), normalizeChannels(f1[k]))), this.heads[k], null), [1, 2, 3])));
    }));
    const n = x0.shape[0];
    const layers = new Float32Array(n * 5), total = new Float32Array(n);
    for (let k = 0; k < 5; k++) {
      const v = await per[k].data();
      for (let i = 0; i < n; i++) {
        layers[i * 5 + k] = v[i];
        total[i] += v[i];
      }
    }
    dispose(per);
    return { total, layers };
  }
}

/** Loads torchvision's alexnet .pth (classifier.* ignored) and the LPIPS v0.1 alex heads; errors name the file and keys. */
export async function loadLpipsAlex(alexnet: string, heads: string, backend?: Backend): Promise<LpipsAlex> {
  const read = async (path: string, want: Map<string, number[]>, what: string, ignore: (k: string) => boolean) => {
    const f = await openWeightFile(path, { unknownGlobals: 'reject' }).catch((e: Error) => {
      throw new Error(`${path}: cannot read ${what}: ${e.message}`);
    });
    try {
      const missing = [...want.keys()].filter((k) => !f.shapes.has(k));
      const bad = [...want].filter(([k, s]) => f.shapes.has(k) && f.shapes.get(k)!.join(',') !== s.join(','))
        .map(([k, s]) => `${k}: file [${f.shapes.get(k)}] vs expected [${s}]`);
      const extra = [...f.shapes.keys()].filter((k) => !want.has(k) && !ignore(k));
      if (missing.length || bad.length || extra.length) {
        throw new Error(`${path}: not ${what}${missing.length ? `; missing keys: ${missing.join(', ')}` : ''}${bad.length ? `; shape mismatches: ${bad.join('; ')}` : ''}${extra.length ? `; unexpected keys: ${extra.slice(0, 10).join(', ')}` : ''}`);
      }
      const out = new Map<string, HostTensor>();
      for (const k of want.keys()) out.set(k, await f.read(k));
      return out;
    } finally {
      await f.close();
    }
  };
  const b = await read(alexnet, alexStateShapes(), "torchvision's alexnet weights (features.<index>.weight|bias)", (k) => k.startsWith('classifier.'));
  const h = await read(heads, alexHeadShapes(), 'the LPIPS v0.1 alex heads (lin0..lin4.model.1.weight)', () => false);
  return new LpipsAlex(b, h, backend);
}
