// LPIPS, VGG variant with the v0.1 linear heads (spec training.md §4, eval.md §3): the
// tokenizer's perceptual training loss and the evaluation metric.
//
//   d(x0, x1) = sum over taps k of  mean_hw( lin_k( (n(f_k(s(x0))) - n(f_k(s(x1))))^2 ) )
//
// s: scaling layer (x - shift) / scale; f_k: VGG16 features at relu1_2 .. relu5_3;
// n: unit-normalise over channels, x / (sqrt(sum_c x^2) + 1e-10); lin_k: 1x1 conv to one
// channel, no bias. Inputs are NCHW in [-1, 1]; the result is [N, 1, 1, 1].
//
// The module tree and parameter names are the reference's (`scaling_layer.shift|scale`,
// `net.slice<k>.<torchvision index>.weight|bias`, `lin<k>.model.1.weight`), so the
// `loss.perceptual_loss.*` entries of a tokenizer checkpoint load strictly with the prefix
// stripped. Every parameter is frozen (requiresGrad false); gradients flow to the inputs only.
//
// Dropout: each reference head is Dropout(0.5) then the conv (`model.0`, `model.1`). The
// reference keeps LPIPS in eval mode (spec training.md §4), so the dropout is the identity;
// this port has no dropout at all: LPIPS here is always deterministic, whatever train() says.

import {
  type HostTensor,
  type Tensor,
  add,
  conv2d,
  div,
  keep,
  maximum,
  mean,
  nn,
  noGrad,
  sqrt,
  square,
  sub,
  sum,
  tensor,
  tidy,
} from '@ibq/tensor';
import { type WeightFile, openWeightFile } from './weight-file.js';
import { VGG16_WIDTHS, Vgg16Features, checkWidths, sliceKeyToFeatures, vgg16StateShapes } from './vgg16.js';

export { VGG16_WIDTHS, Vgg16Features, maxPool2x2, vgg16Layers, vgg16StateShapes, type Vgg16Widths } from './vgg16.js';

/** The scaling layer's constants (per RGB channel), as the reference's buffers. */
export const LPIPS_SHIFT = [-0.030, -0.088, -0.188] as const;
export const LPIPS_SCALE = [0.458, 0.448, 0.450] as const;
/** The key prefix of the LPIPS weights in a tokenizer checkpoint's state dict. */
export const CHECKPOINT_LPIPS_PREFIX = 'loss.perceptual_loss.';
const NORM_EPS = 1e-10;
/**
 * Floor under sum(x^2) before the square root. PyTorch's gradient is NaN (0/0 in sqrt's
 * backward) at positions where every channel of a tap is 0; with this floor it is finite
 * there (and then zeroed by the ReLU below, the correct value). Forward values change only
 * where sum(x^2) < 1e-30, i.e. by < 1e-15 against the 1e-10 epsilon: not at all in float32.
 */
const SUMSQ_FLOOR = 1e-30;

export interface LpipsOptions {
  /** Channels of the five VGG stages; default VGG16's 64, 128, 256, 512, 512 (tests use narrower). */
  widths?: readonly number[];
}

export class ScalingLayer extends nn.Module {
  constructor() {
    super();
    // keep(): a module built inside a tidy() must not lose its buffers when the scope ends.
    this.buffer('shift', keep(tensor([...LPIPS_SHIFT], [1, 3, 1, 1])));
    this.buffer('scale', keep(tensor([...LPIPS_SCALE], [1, 3, 1, 1])));
  }
  forward(x: Tensor): Tensor {
    return div(sub(x, this.getBuffer('shift')), this.getBuffer('scale'));
  }
}

/** `model.1`: the reference's Sequential(Dropout, Conv2d) without the (eval-mode) Dropout. */
class LinModel extends nn.Module {
  readonly conv: nn.Conv2d;
  constructor(channels: number) {
    super();
    this.conv = this.module('1', new nn.Conv2d(channels, 1, 1, { bias: false }));
  }
}

/** NetLinLayer: a 1x1 conv from the tap's channels to one, no bias. */
export class NetLinLayer extends nn.Module {
  readonly model: LinModel;
  constructor(readonly channels: number) {
    super();
    this.model = this.module('model', new LinModel(channels));
  }
  get weight(): Tensor {
    return this.model.conv.weight;
  }
  forward(x: Tensor): Tensor {
    return conv2d(x, this.model.conv.weight, null);
  }
}

/** x / (sqrt(sum over channels of x^2) + 1e-10). */
export function normalizeChannels(x: Tensor): Tensor {
  const norm = sqrt(maximum(sum(square(x), 1, true), SUMSQ_FLOOR));
  return div(x, add(norm, NORM_EPS));
}

export interface LpipsLayers {
  /** Sum over the five taps, [N, 1, 1, 1]. */
  total: Tensor;
  /** Each tap's spatial mean, [N, 1, 1, 1]. */
  layers: Tensor[];
}

export class LPIPS extends nn.Module {
  readonly scaling_layer: ScalingLayer;
  readonly net: Vgg16Features;
  readonly lins: NetLinLayer[];
  readonly widths: readonly number[];

  /** Random weights (PyTorch's default init): load real ones with loadLpips / loadLpipsState. */
  constructor(options: LpipsOptions = {}) {
    super();
    this.widths = checkWidths(options.widths ?? VGG16_WIDTHS);
    this.scaling_layer = this.module('scaling_layer', new ScalingLayer());
    this.net = this.module('net', new Vgg16Features(this.widths));
    this.lins = this.widths.map((c, k) => this.module(`lin${k}`, new NetLinLayer(c)));
    for (const p of this.parameters()) p.requiresGrad = false;
    this.eval();
  }

  /** The five taps (relu1_2 .. relu5_3) of an image in [-1, 1]. */
  features(x: Tensor): Tensor[] {
    return this.net.forward(this.scaling_layer.forward(x));
  }

  /** LPIPS per image and per tap. Intermediates are the caller's (use tidy). */
  forwardLayers(x0: Tensor, x1: Tensor): LpipsLayers {
    if (x0.rank !== 4 || x0.shape[1] !== 3 || x0.shape.some((d, i) => d !== x1.shape[i]) || x1.rank !== 4) {
      throw new Error(`LPIPS: inputs must be two NCHW RGB batches of one shape, got [${x0.shape}] and [${x1.shape}]`);
    }
    const f0 = this.features(x0);
    const f1 = this.features(x1);
    const layers = f0.map((a, k) => {
      const d = square(sub(normalizeChannels(a), normalizeChannels(f1[k])));
      return mean(this.lins[k].forward(d), [2, 3], true);
    });
    const total = layers.slice(1).reduce((acc, l) => add(acc, l), layers[0]);
    return { total, layers };
  }

  /**
   * LPIPS(x0, x1) per image, [N, 1, 1, 1] (the reference's perceptual_loss(inputs,
   * reconstructions)); differentiable in both inputs. Runs in a tidy scope.
   */
  forward(x0: Tensor, x1: Tensor): Tensor {
    return tidy(() => this.forwardLayers(x0, x1).total);
  }
}

/** Per-image LPIPS as numbers (evaluation: no tape, intermediates freed). */
export async function lpipsPerImage(net: LPIPS, x0: Tensor, x1: Tensor): Promise<Float32Array> {
  const d = noGrad(() => net.forward(x0, x1));
  try {
    return Float32Array.from(await d.data());
  } finally {
    d.dispose();
  }
}

/** The LPIPS module's state-dict keys and shapes (without building it). */
export function lpipsStateShapes(widths: readonly number[] = VGG16_WIDTHS): Map<string, number[]> {
  const w = checkWidths(widths);
  const out = new Map<string, number[]>([
    ['scaling_layer.shift', [1, 3, 1, 1]],
    ['scaling_layer.scale', [1, 3, 1, 1]],
  ]);
  for (const [k, s] of vgg16StateShapes(w)) out.set(`net.${k}`, s);
  w.forEach((c, k) => out.set(`lin${k}.model.1.weight`, [1, c, 1, 1]));
  return out;
}

// ---------------------------------------------------------------------------------------
// Weights

/**
 * Where LPIPS weights come from:
 * - `checkpoint`: a tokenizer checkpoint (official Lightning `.ckpt`, or `.safetensors`) with
 *   the `loss.perceptual_loss.*` entries (`prefix` to override);
 * - `vgg16` + `heads`: torchvision's ImageNet VGG16 (`vgg16-397923af.pth`: `features.*`,
 *   `classifier.*` ignored) and the LPIPS v0.1 heads (`vgg.pth`: `lin0..4.model.1.weight`).
 */
export type LpipsWeightsSource = { checkpoint: string; prefix?: string } | { vgg16: string; heads: string };

/** Weights that do not fit: names the file(s) and lists the keys, in the file's own naming. */
export class LpipsWeightsError extends Error {
  override readonly name = 'LpipsWeightsError';
  constructor(readonly problems: { file: string; what: string; missing: string[]; unexpected: string[]; mismatched: string[]; other?: string }[]) {
    super(problems.map(describeProblem).join('\n'));
  }
}

function describeProblem(p: LpipsWeightsError['problems'][number]): string {
  const parts = [`${p.file}: not usable as ${p.what}`];
  if (p.other) parts.push(`  ${p.other}`);
  // Every missing key (an LPIPS network has 33); unexpected ones can be thousands.
  const list = (label: string, keys: string[], limit: number) => {
    if (!keys.length) return;
    const shown = keys.slice(0, limit).join(', ');
    parts.push(`  ${keys.length} ${label}: ${shown}${keys.length > limit ? `, ... and ${keys.length - limit} more` : ''}`);
  };
  list('missing keys', p.missing, 100);
  list('unexpected keys', p.unexpected, 20);
  list('shape mismatches', p.mismatched, 100);
  return parts.join('\n');
}

/** What a source provides for each LPIPS key: a file entry, or a constant. */
interface Plan {
  entries: Map<string, { file: WeightFile; key: string } | HostTensor>;
  files: WeightFile[];
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

/** Matches a file's keys against `want` (file key -> LPIPS key, shape); unexpected keys fail unless ignored. */
function match(file: WeightFile, what: string, want: Map<string, { target: string; shape: number[] }>, ignore: (k: string) => boolean, plan: Plan, problems: LpipsWeightsError['problems']): void {
  const missing: string[] = [], mismatched: string[] = [];
  for (const [fk, { target, shape }] of want) {
    const s = file.shapes.get(fk);
    if (!s) missing.push(fk);
    else if (!sameShape(s, shape)) mismatched.push(`${fk}: file [${s}] vs expected [${shape}]`);
    else plan.entries.set(target, { file, key: fk });
  }
  const unexpected = [...file.shapes.keys()].filter((k) => !want.has(k) && !ignore(k));
  if (missing.length || unexpected.length || mismatched.length) problems.push({ file: file.path, what, missing, unexpected, mismatched });
}

async function planSource(source: LpipsWeightsSource, widths: readonly number[]): Promise<Plan> {
  const shapes = lpipsStateShapes(widths);
  const plan: Plan = { entries: new Map(), files: [] };
  const problems: LpipsWeightsError['problems'] = [];
  const open = async (path: string, what: string): Promise<WeightFile | null> => {
    try {
      const f = await openWeightFile(path);
      plan.files.push(f);
      return f;
    } catch (e) {
      problems.push({ file: path, what, missing: [], unexpected: [], mismatched: [], other: (e as Error).message });
      return null;
    }
  };
  const widthNote = widths.join(',') === VGG16_WIDTHS.join(',') ? '' : ` (widths ${widths.join(',')})`;
  try {
    if ('checkpoint' in source) {
      const prefix = source.prefix ?? CHECKPOINT_LPIPS_PREFIX;
      const what = `a tokenizer checkpoint with LPIPS-VGG weights under '${prefix}*'${widthNote}`;
      const f = await open(source.checkpoint, what);
      if (f) {
        const want = new Map([...shapes].map(([k, shape]) => [prefix + k, { target: k, shape }]));
        if (![...f.shapes.keys()].some((k) => k.startsWith(prefix))) {
          problems.push({ file: f.path, what, missing: [], unexpected: [], mismatched: [], other: `no '${prefix}*' entries at all (a checkpoint saved without its loss module?)` });
        } else match(f, what, want, (k) => !k.startsWith(prefix), plan, problems);
      }
    } else {
      const vggWhat = `torchvision VGG16 weights (features.<index>.weight|bias)${widthNote}`;
      const headsWhat = `LPIPS v0.1 VGG heads (lin0..lin4.model.1.weight)${widthNote}`;
      const fv = await open(source.vgg16, vggWhat);
      if (fv) {
        const want = new Map<string, { target: string; shape: number[] }>();
        for (const [k, shape] of shapes) if (k.startsWith('net.')) want.set(sliceKeyToFeatures(k.slice(4)), { target: k, shape });
        match(fv, vggWhat, want, (k) => k.startsWith('classifier.'), plan, problems);
      }
      const fh = await open(source.heads, headsWhat);
      if (fh) {
        const want = new Map([...shapes].filter(([k]) => k.startsWith('lin')).map(([k, shape]) => [k, { target: k, shape }]));
        match(fh, headsWhat, want, () => false, plan, problems);
      }
      // The scaling layer is not in either file: its constants.
      plan.entries.set('scaling_layer.shift', { dtype: 'f32', shape: [1, 3, 1, 1], data: Float32Array.from(LPIPS_SHIFT) });
      plan.entries.set('scaling_layer.scale', { dtype: 'f32', shape: [1, 3, 1, 1], data: Float32Array.from(LPIPS_SCALE) });
    }
    if (problems.length) throw new LpipsWeightsError(problems);
    return plan;
  } catch (e) {
    await closeAll(plan);
    throw e;
  }
}

async function closeAll(plan: Plan): Promise<void> {
  await Promise.allSettled(plan.files.map((f) => f.close()));
}

export type LpipsAvailability = { available: true; source: LpipsWeightsSource } | { available: false; reason: string };

/**
 * Whether usable LPIPS weights are at the given source(s): the files exist and hold every
 * key with the right shape (only headers are read). With several sources, the first usable
 * one is returned; the reason lists why each failed. For the trainer:
 * "no VGG16 weights: training without the perceptual term".
 */
export async function lpipsWeightsAvailable(sources: LpipsWeightsSource | readonly LpipsWeightsSource[], options: LpipsOptions = {}): Promise<LpipsAvailability> {
  const list = Array.isArray(sources) ? sources : [sources as LpipsWeightsSource];
  const reasons: string[] = [];
  for (const source of list) {
    try {
      await closeAll(await planSource(source, options.widths ?? VGG16_WIDTHS));
      return { available: true, source };
    } catch (e) {
      reasons.push((e as Error).message);
    }
  }
  return { available: false, reason: reasons.length ? reasons.join('\n') : 'no LPIPS weight source given' };
}

/**
 * Loads weights into `net` from a state dict under the LPIPS module's own names (e.g. a
 * tokenizer checkpoint's `loss.perceptual_loss.*` with the prefix stripped). Strict: every
 * key, no others, exact shapes; `source` names the origin in the error.
 */
export function loadLpipsState(net: LPIPS, dict: Map<string, HostTensor>, source = '<state dict>'): void {
  const shapes = lpipsStateShapes(net.widths);
  const missing = [...shapes.keys()].filter((k) => !dict.has(k));
  const unexpected = [...dict.keys()].filter((k) => !shapes.has(k));
  const mismatched = [...shapes]
    .filter(([k, s]) => dict.has(k) && !sameShape(dict.get(k)!.shape, s))
    .map(([k, s]) => `${k}: given [${dict.get(k)!.shape}] vs expected [${s}]`);
  if (missing.length || unexpected.length || mismatched.length) {
    throw new LpipsWeightsError([{ file: source, what: 'LPIPS-VGG weights', missing, unexpected, mismatched }]);
  }
  net.loadStateDict(dict);
}

/** Builds an LPIPS network and loads its weights from `source` (see LpipsWeightsSource). */
export async function loadLpips(source: LpipsWeightsSource, options: LpipsOptions = {}): Promise<LPIPS> {
  const widths = options.widths ?? VGG16_WIDTHS;
  const plan = await planSource(source, widths);
  const dict = new Map<string, HostTensor>();
  try {
    for (const [k, e] of plan.entries) dict.set(k, 'file' in e ? await e.file.read(e.key) : e);
  } finally {
    await closeAll(plan);
  }
  const net = new LPIPS({ widths });
  try {
    loadLpipsState(net, dict, 'checkpoint' in source ? source.checkpoint : `${source.vgg16} + ${source.heads}`);
  } catch (e) {
    net.dispose();
    throw e;
  }
  return net;
}
