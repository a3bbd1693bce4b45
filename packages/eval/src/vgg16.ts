// VGG16 `features` (torchvision, configuration 'D', no batch norm) cut into the five slices
// the LPIPS network taps (spec training.md §4): slice1 = features[0..3] (relu1_2),
// slice2 = [4..8] (relu2_2), slice3 = [9..15] (relu3_3), slice4 = [16..22] (relu4_3),
// slice5 = [23..29] (relu5_3). Children keep torchvision's layer indices, so the state-dict
// keys are `slice<k>.<index>.weight|bias` as in the reference's `net.*` entries.
//
// The widths (channels of the five stages) are a parameter so that tests can use a narrow
// network of the same structure; they default to VGG16's 64, 128, 256, 512, 512.

import { type Tensor, argmax, cast, equal, isGradEnabled, max, mul, nn, permute, relu, slice, sum, tensor } from '@ibq/tensor';

export type Vgg16Widths = readonly [number, number, number, number, number];
export const VGG16_WIDTHS: Vgg16Widths = [64, 128, 256, 512, 512];

/** [start, end) of each slice in `features`. */
export const VGG16_SLICES: readonly (readonly [number, number])[] = [[0, 4], [4, 9], [9, 16], [16, 23], [23, 30]];

export type VggLayer =
  | { index: number; kind: 'conv'; inChannels: number; outChannels: number }
  | { index: number; kind: 'relu' }
  | { index: number; kind: 'pool' };

export function checkWidths(widths: readonly number[]): Vgg16Widths {
  if (widths.length !== 5 || !widths.every((w) => Number.isSafeInteger(w) && w > 0)) {
    throw new Error(`VGG16 widths must be five positive integers, got [${widths.join(', ')}]`);
  }
  return widths as unknown as Vgg16Widths;
}

/**
 * features[0..29] as torchvision's make_layers(cfg 'D') numbers them: conv3x3(pad 1) + ReLU
 * per entry of [w0, w0, M, w1, w1, M, w2, w2, w2, M, w3, w3, w3, M, w4, w4, w4], M = MaxPool2d(2, 2).
 * (features[30], the last pool, is not used by LPIPS.)
 */
export function vgg16Layers(widths: readonly number[] = VGG16_WIDTHS): VggLayer[] {
  const [a, b, c, d, e] = checkWidths(widths);
  const cfg: (number | 'M')[] = [a, a, 'M', b, b, 'M', c, c, c, 'M', d, d, d, 'M', e, e, e];
  const layers: VggLayer[] = [];
  let cin = 3;
  for (const v of cfg) {
    if (v === 'M') layers.push({ index: layers.length, kind: 'pool' });
    else {
      layers.push({ index: layers.length, kind: 'conv', inChannels: cin, outChannels: v });
      layers.push({ index: layers.length, kind: 'relu' });
      cin = v;
    }
  }
  return layers; // 30 layers: indices 0..29
}

/**
 * MaxPool2d(kernel 2, stride 2, floor mode) on NCHW: an odd last row / column is dropped.
 *
 * Written as reshape [N,C,H/2,2,W/2,2] -> permute -> a reduction over the window. When a
 * gradient is being recorded, the window's value is picked with a one-hot mask of its FIRST
 * maximal element (argmax, row-major within the window), so the gradient goes to that element
 * alone, as PyTorch's max_pool2d does. A plain `max` reduction would give every tied element
 * the full gradient. Ties at 0 after ReLU would not matter (ReLU's gradient is 0 there), but
 * ties at positive values do occur: a flat image region gives identical activations at
 * neighbouring positions. Without gradients, `max` gives the same values more cheaply.
 */
export function maxPool2x2(x: Tensor): Tensor {
  if (x.rank !== 4) throw new Error(`maxPool2x2: expected NCHW, got [${x.shape}]`);
  const [n, c, h, w] = x.shape;
  const ho = Math.floor(h / 2), wo = Math.floor(w / 2);
  if (ho === 0 || wo === 0) throw new Error(`maxPool2x2: input [${x.shape}] is too small for a 2x2 pool`);
  const even = h === 2 * ho && w === 2 * wo ? x : slice(x, [0, 0, 0, 0], [n, c, 2 * ho, 2 * wo]);
  const win = permute(even.reshape([n, c, ho, 2, wo, 2]), [0, 1, 2, 4, 3, 5]).reshape([n, c, ho, wo, 4]);
  if (!(isGradEnabled() && x.requiresGrad)) return max(win, 4);
  const first = cast(argmax(win, 4, true), 'f32'); // [n, c, ho, wo, 1]
  const onehot = equal(first, tensor([0, 1, 2, 3], [4], { backend: x.backend }));
  return sum(mul(win, onehot), 4);
}

/** A torch.nn.Sequential whose children keep their indices in the full `features` list. */
export class VggSlice extends nn.Module {
  private readonly steps: { layer: VggLayer; conv?: nn.Conv2d }[] = [];
  constructor(layers: readonly VggLayer[]) {
    super();
    for (const layer of layers) {
      if (layer.kind === 'conv') {
        const conv = this.module(String(layer.index), new nn.Conv2d(layer.inChannels, layer.outChannels, 3, { padding: 1 }));
        this.steps.push({ layer, conv });
      } else this.steps.push({ layer }); // ReLU and MaxPool2d have no state
    }
  }
  forward(x: Tensor): Tensor {
    let h = x;
    for (const { layer, conv } of this.steps) {
      if (layer.kind === 'conv') h = conv!.forward(h);
      else if (layer.kind === 'relu') h = relu(h);
      else h = maxPool2x2(h);
    }
    return h;
  }
}

/** The reference's `vgg16` wrapper: slice1..slice5; forward returns the five taps. */
export class Vgg16Features extends nn.Module {
  readonly slice1: VggSlice;
  readonly slice2: VggSlice;
  readonly slice3: VggSlice;
  readonly slice4: VggSlice;
  readonly slice5: VggSlice;
  readonly widths: Vgg16Widths;
  constructor(widths: readonly number[] = VGG16_WIDTHS) {
    super();
    this.widths = checkWidths(widths);
    const layers = vgg16Layers(widths);
    const s = VGG16_SLICES.map(([a, b], k) => this.module(`slice${k + 1}`, new VggSlice(layers.slice(a, b))));
    [this.slice1, this.slice2, this.slice3, this.slice4, this.slice5] = s;
  }
  get slices(): VggSlice[] {
    return [this.slice1, this.slice2, this.slice3, this.slice4, this.slice5];
  }
  /** relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 of an already scaled NCHW input. */
  forward(x: Tensor): Tensor[] {
    const taps: Tensor[] = [];
    let h = x;
    for (const s of this.slices) {
      h = s.forward(h);
      taps.push(h);
    }
    return taps;
  }
}

/** The state-dict keys and shapes of Vgg16Features (`slice<k>.<index>.weight|bias`). */
export function vgg16StateShapes(widths: readonly number[] = VGG16_WIDTHS): Map<string, number[]> {
  const layers = vgg16Layers(widths);
  const out = new Map<string, number[]>();
  VGG16_SLICES.forEach(([a, b], k) => {
    for (const l of layers.slice(a, b)) {
      if (l.kind !== 'conv') continue;
      out.set(`slice${k + 1}.${l.index}.weight`, [l.outChannels, l.inChannels, 3, 3]);
      out.set(`slice${k + 1}.${l.index}.bias`, [l.outChannels]);
    }
  });
  return out;
}

/** torchvision's `features.<index>.*` key for a `slice<k>.<index>.*` key, and back. */
export function sliceKeyToFeatures(key: string): string {
  const m = /^slice[1-5]\.(\d+)\.(weight|bias)$/.exec(key);
  if (!m) throw new Error(`not a VGG slice key: ${key}`);
  return `features.${m[1]}.${m[2]}`;
}
