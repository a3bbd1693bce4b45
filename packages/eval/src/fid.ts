// FID inputs and feature extraction as pytorch-fid's command line takes them: a PATH is an image
// folder (the files directly in it with pytorch-fid's extensions, sorted), a .npz of uint8 NHWC
// images (`arr_0`, read a batch of rows at a time), a statistics .npz (`mu`, `sigma`), or
// partial statistics written by a sharded run (`count`, `sum`, `cross`). Features accumulate in
// a FeatureStats, so no set is ever held in memory.

import { readdirSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { type ImageDecodeError, NpzFile, readImage } from '@ibq/data';
import type { Backend } from '@ibq/kernels';
import { type Tensor, concat, dispose } from '@ibq/tensor';
import { FeatureStats, type GaussianStats } from './feature-stats.js';
import { type InceptionDims, type InceptionMode, type InceptionTap, type InceptionV3, uint8NhwcToTensor } from './inception.js';

/** pytorch-fid's IMAGE_EXTENSIONS. */
export const FID_IMAGE_EXTENSIONS = ['bmp', 'jpg', 'jpeg', 'pgm', 'png', 'ppm', 'tif', 'tiff', 'webp'] as const;

export class FidInputError extends Error {
  override readonly name = 'FidInputError';
}

export type FidSource =
  | { kind: 'folder'; path: string; files: string[] }
  | { kind: 'images'; path: string; file: NpzFile; count: number; height: number; width: number }
  | { kind: 'stats'; path: string; stats: GaussianStats }
  | { kind: 'partial'; path: string; stats: FeatureStats };

/** Number of images a source holds (0 for statistics). */
export function sourceLength(s: FidSource): number {
  return s.kind === 'folder' ? s.files.length : s.kind === 'images' ? s.count : 0;
}

export function closeSource(s: FidSource): void {
  if (s.kind === 'images') s.file.close();
}

/**
 * Opens a PATH as pytorch-fid's CLI (and the ADM suite's sample files) understand it.
 * `images`: read 'arr_0' even when the file also holds statistics (an ADM reference batch,
 * whose images precision / recall need beside its precomputed mu and sigma).
 */
export function openFidSource(path: string, o: { images?: boolean } = {}): FidSource {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new FidInputError(`${path}: no such file or folder`);
  }
  if (st.isDirectory()) {
    const files = readdirSync(path)
      .filter((f) => (FID_IMAGE_EXTENSIONS as readonly string[]).includes(extname(f).slice(1).toLowerCase()))
      .sort()
      .map((f) => join(path, f));
    if (!files.length) throw new FidInputError(`${path}: no images (${FID_IMAGE_EXTENSIONS.join(', ')}) in this folder`);
    return { kind: 'folder', path, files };
  }
  if (!path.endsWith('.npz')) throw new FidInputError(`${path}: expected an image folder or a .npz file`);
  let file: NpzFile;
  try {
    file = NpzFile.open(path);
  } catch (e) {
    throw new FidInputError(`${path}: not a readable .npz: ${(e as Error).message}`);
  }
  const keys = file.keys;
  try {
    if (!(o.images && keys.includes('arr_0')) && keys.includes('count') && keys.includes('sum') && keys.includes('cross')) {
      const get = (k: string) => file.get(k);
      const sum = get('sum'), cross = get('cross');
      const d = sum.shape[0];
      if (sum.shape.length !== 1 || cross.shape.join(',') !== `${d},${d}`) {
        throw new FidInputError(`${path}: partial statistics 'sum' [${sum.shape}] and 'cross' [${cross.shape}] do not fit together`);
      }
      const stats = FeatureStats.fromSums(d, Number(get('count').data[0]), Float64Array.from(sum.data as ArrayLike<number>), Float64Array.from(cross.data as ArrayLike<number>));
      file.close();
      return { kind: 'partial', path, stats };
    }
    if (!(o.images && keys.includes('arr_0')) && keys.includes('mu') && keys.includes('sigma')) {
      const mu = file.get('mu'), sigma = file.get('sigma');
      const d = mu.shape[0];
      if (mu.shape.length !== 1 || sigma.shape.join(',') !== `${d},${d}`) {
        throw new FidInputError(`${path}: 'mu' [${mu.shape}] and 'sigma' [${sigma.shape}] are not a mean and its covariance`);
      }
      file.close();
      return { kind: 'stats', path, stats: { mu: Float64Array.from(mu.data as ArrayLike<number>), sigma: Float64Array.from(sigma.data as ArrayLike<number>) } };
    }
    if (keys.includes('arr_0')) {
      const h = file.header('arr_0');
      if (h.dtype !== 'uint8' || h.shape.length !== 4 || h.shape[3] !== 3) {
        throw new FidInputError(`${path}: 'arr_0' must be uint8 images [N, H, W, 3], got ${h.dtype} [${h.shape}]`);
      }
      return { kind: 'images', path, file, count: h.shape[0], height: h.shape[1], width: h.shape[2] };
    }
    throw new FidInputError(`${path}: neither images ('arr_0'), statistics ('mu', 'sigma') nor partial statistics ('count', 'sum', 'cross'); has ${keys.join(', ') || 'nothing'}`);
  } catch (e) {
    file.close();
    throw e instanceof FidInputError ? e : new FidInputError(`${path}: ${(e as Error).message}`);
  }
}

export const TAP_OF_DIMS: Record<InceptionDims, InceptionTap> = { 64: 'pool64', 192: 'pool192', 768: 'pool768', 2048: 'pool2048' };

export interface ExtractOptions {
  net: InceptionV3;
  mode: InceptionMode;
  /** Taps to accumulate, each into its own FeatureStats. */
  taps: readonly InceptionTap[];
  batchSize: number;
  backend?: Backend;
  /** Images [start, end) of the source (a shard); default all. */
  range?: [number, number];
  /**
   * Called before each batch (the stop.ts boundary: yield to the event loop, then say whether
   * a stop was requested); returning true ends the loop early.
   */
  boundary?: () => Promise<boolean>;
  /** Rows of a tap other than the pooled ones (the IS logits) go here, batch by batch. */
  onRows?: (tap: InceptionTap, rows: Float32Array, n: number) => void;
  onProgress?: (done: number, total: number) => void;
  /** A corrupt image of a folder: counted and skipped. */
  onSkip?: (path: string, reason: string) => void;
}

export interface ExtractResult {
  stats: Map<InceptionTap, FeatureStats>;
  images: number;
  skipped: number;
  stopped: boolean;
}

/** Tap widths (the spatial tap depends on the input size: 17x17x7 at 299). */
function tapDim(tap: InceptionTap): number {
  return { pool64: 64, pool192: 192, pool768: 768, pool2048: 2048, spatial: 17 * 17 * 7, logitsUnbiased: 1008 }[tap];
}

/** One image (HWC uint8) as the mode's network input [1, 3, 299, 299]. */
function prepareOne(net: InceptionV3, mode: InceptionMode, u8: Uint8Array, h: number, w: number, backend?: Backend): Tensor {
  // pytorch-fid reads files with ToTensor(): uint8 / 255 in float32; the ADM graph takes 0..255.
  const x = uint8NhwcToTensor(u8, 1, h, w, backend, mode === 'pytorch' ? 255 : 1);
  try {
    return net.prepare(x, mode);
  } finally {
    x.dispose();
  }
}

/** Streams a source's images through the network into per-tap statistics. */
export async function extractFeatures(source: FidSource, o: ExtractOptions): Promise<ExtractResult> {
  if (source.kind === 'stats' || source.kind === 'partial') throw new FidInputError(`${source.path}: holds statistics, not images`);
  const total = sourceLength(source);
  const [start, end] = o.range ?? [0, total];
  const stats = new Map(o.taps.filter((t) => t !== 'logitsUnbiased').map((t) => [t, null as FeatureStats | null]));
  let images = 0, skipped = 0, stopped = false;
  for (let s = start; s < end; s += o.batchSize) {
    if (o.boundary && (await o.boundary())) {
      stopped = true;
      break;
    }
    const e = Math.min(end, s + o.batchSize);
    const inputs: Tensor[] = [];
    try {
      if (source.kind === 'folder') {
        for (const path of source.files.slice(s, e)) {
          try {
            const img = await readImage(path);
            inputs.push(prepareOne(o.net, o.mode, img.data, img.height, img.width, o.backend));
          } catch (err) {
            if ((err as ImageDecodeError).name !== 'ImageDecodeError') throw err;
            skipped++;
            o.onSkip?.(path, (err as Error).message);
          }
        }
      } else {
        const rows = source.file.readRows('arr_0', s, e - s) as Uint8Array;
        const px = source.height * source.width * 3;
        for (let r = 0; r < e - s; r++) inputs.push(prepareOne(o.net, o.mode, rows.subarray(r * px, (r + 1) * px), source.height, source.width, o.backend));
      }
      if (!inputs.length) continue;
      const batch = inputs.length === 1 ? inputs[0] : concat(inputs, 0);
      const out = o.net.forward(batch, o.taps);
      if (batch !== inputs[0]) batch.dispose();
      for (const tap of o.taps) {
        const t = out[tap]!;
        const rows = Float32Array.from(await t.data());
        const n = t.shape[0];
        if (tap === 'logitsUnbiased') o.onRows?.(tap, rows, n);
        else {
          let acc = stats.get(tap) ?? null;
          if (!acc) stats.set(tap, (acc = new FeatureStats(t.shape[1])));
          acc.add(rows, n);
          if (tap === 'spatial' || tap === 'pool2048') o.onRows?.(tap, rows, n);
        }
      }
      dispose(Object.values(out) as Tensor[]);
      images += inputs.length;
      o.onProgress?.(s - start + (e - s), end - start);
    } finally {
      dispose(inputs);
    }
  }
  const out = new Map<InceptionTap, FeatureStats>();
  for (const [t, v] of stats) out.set(t, v ?? new FeatureStats(tapDim(t)));
  return { stats: out, images, skipped, stopped };
}
