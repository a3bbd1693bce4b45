// IDX files (MNIST, Fashion-MNIST): big-endian header, gzip or raw.

import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { DataFormatError } from '../errors.js';
import { resizeBilinearCv } from '../pixels.js';
import { checkIndex, type ImageDataset, type ImageSample } from './types.js';

export type IdxType = 'uint8' | 'int8' | 'int16' | 'int32' | 'float32' | 'float64';

export interface IdxArray {
  type: IdxType;
  shape: number[];
  data: Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;
}

const IDX_TYPES: Record<number, { type: IdxType; size: number }> = {
  0x08: { type: 'uint8', size: 1 },
  0x09: { type: 'int8', size: 1 },
  0x0b: { type: 'int16', size: 2 },
  0x0c: { type: 'int32', size: 4 },
  0x0d: { type: 'float32', size: 4 },
  0x0e: { type: 'float64', size: 8 },
};

/** Decodes IDX bytes (gzip-compressed or not). */
export function decodeIdx(input: Uint8Array, name = '<idx>'): IdxArray {
  let bytes = input;
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      bytes = gunzipSync(bytes);
    } catch (e) {
      throw new DataFormatError(name, `bad gzip data: ${(e as Error).message}`, { cause: e });
    }
  }
  if (bytes.length < 4 || bytes[0] !== 0 || bytes[1] !== 0) throw new DataFormatError(name, 'not an IDX file (bad magic)');
  const t = IDX_TYPES[bytes[2]];
  if (!t) throw new DataFormatError(name, `unknown IDX element type 0x${bytes[2].toString(16)}`);
  const ndim = bytes[3];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 4 + 4 * ndim) throw new DataFormatError(name, 'truncated IDX header');
  const shape: number[] = [];
  for (let i = 0; i < ndim; i++) shape.push(dv.getUint32(4 + 4 * i, false));
  const count = shape.reduce((a, d) => a * d, 1);
  const start = 4 + 4 * ndim;
  if (bytes.length < start + count * t.size) {
    throw new DataFormatError(name, `truncated: ${bytes.length - start} data bytes for shape [${shape.join(', ')}] ${t.type}`);
  }
  let data: IdxArray['data'];
  switch (t.type) {
    case 'uint8':
      data = bytes.slice(start, start + count);
      break;
    case 'int8':
      data = new Int8Array(bytes.slice(start, start + count).buffer);
      break;
    default: {
      const out = t.type === 'int16' ? new Int16Array(count) : t.type === 'int32' ? new Int32Array(count)
        : t.type === 'float32' ? new Float32Array(count) : new Float64Array(count);
      for (let i = 0; i < count; i++) {
        const o = start + i * t.size;
        out[i] = t.type === 'int16' ? dv.getInt16(o, false) : t.type === 'int32' ? dv.getInt32(o, false)
          : t.type === 'float32' ? dv.getFloat32(o, false) : dv.getFloat64(o, false);
      }
      data = out;
    }
  }
  return { type: t.type, shape, data };
}

export async function readIdx(path: string): Promise<IdxArray> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new DataFormatError(path, (e as Error).message, { cause: e });
  }
  return decodeIdx(bytes, path);
}

export interface IdxImageOptions {
  /** Output size (square). Default: the file's own (28 for MNIST). */
  size?: number;
  /**
   * How to reach `size`: 'resize' (default) = cv2 INTER_LINEAR resize of the whole image,
   * the same arithmetic as the reference's SmallestMaxSize (the images are square, so
   * SmallestMaxSize(size) is exactly this); 'pad' = centre on a black (0) canvas, offset
   * floor((size - 28) / 2), no resampling.
   */
  fit?: 'resize' | 'pad';
  classes?: readonly string[];
}

/**
 * Grey images from an IDX uint8 array [N, H, W] (labels from an IDX [N] array), as RGB
 * (grey replicated, as PIL's convert('RGB')).
 */
export class IdxImageDataset implements ImageDataset {
  readonly height: number;
  readonly width: number;
  private readonly size: number | undefined;
  private readonly fit: 'resize' | 'pad';
  readonly classes?: readonly string[];

  constructor(readonly images: IdxArray, readonly labels?: IdxArray, options: IdxImageOptions = {}, readonly name = '<idx>') {
    if (images.type !== 'uint8' || images.shape.length !== 3) {
      throw new DataFormatError(name, `expected uint8 images [N, H, W], got ${images.type} [${images.shape.join(', ')}]`);
    }
    if (labels && labels.shape[0] !== images.shape[0]) {
      throw new DataFormatError(name, `${images.shape[0]} images but ${labels.shape[0]} labels`);
    }
    this.height = images.shape[1];
    this.width = images.shape[2];
    this.size = options.size;
    this.fit = options.fit ?? 'resize';
    if (this.fit === 'pad' && this.size !== undefined && (this.size < this.height || this.size < this.width)) {
      throw new Error(`IdxImageDataset: cannot pad ${this.height}x${this.width} to ${this.size}`);
    }
    if (options.classes) this.classes = options.classes;
  }

  /** Opens an images file and (optionally) a labels file. */
  static async open(imagesPath: string, labelsPath?: string, options: IdxImageOptions = {}): Promise<IdxImageDataset> {
    const images = await readIdx(imagesPath);
    const labels = labelsPath ? await readIdx(labelsPath) : undefined;
    return new IdxImageDataset(images, labels, options, imagesPath);
  }

  get length(): number {
    return this.images.shape[0];
  }

  labelOf(i: number): number | undefined {
    checkIndex(i, this.length, 'IdxImageDataset');
    return this.labels ? Number(this.labels.data[i]) : undefined;
  }

  /** Item i synchronously. */
  getSync(i: number): ImageSample {
    checkIndex(i, this.length, 'IdxImageDataset');
    const h = this.height;
    const w = this.width;
    const grey = (this.images.data as Uint8Array).subarray(i * h * w, (i + 1) * h * w);
    let rgb: Uint8Array = new Uint8Array(h * w * 3);
    for (let p = 0; p < h * w; p++) rgb[p * 3] = rgb[p * 3 + 1] = rgb[p * 3 + 2] = grey[p];
    let oh = h;
    let ow = w;
    const s = this.size;
    if (s !== undefined && (s !== h || s !== w)) {
      if (this.fit === 'resize') {
        rgb = resizeBilinearCv(rgb, h, w, 3, s, s);
      } else {
        const out = new Uint8Array(s * s * 3);
        const y0 = Math.floor((s - h) / 2);
        const x0 = Math.floor((s - w) / 2);
        for (let y = 0; y < h; y++) out.set(rgb.subarray(y * w * 3, (y + 1) * w * 3), ((y0 + y) * s + x0) * 3);
        rgb = out;
      }
      oh = s;
      ow = s;
    }
    return { image: rgb, height: oh, width: ow, label: this.labelOf(i) };
  }

  async get(i: number): Promise<ImageSample> {
    return this.getSync(i);
  }
}

/** Where Debian's dataset-fashion-mnist package puts the files. */
export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

export const FASHION_MNIST_CLASSES: readonly string[] = [
  'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
];

export const MNIST_CLASSES: readonly string[] = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

/** The standard MNIST-style file names of a split: `train-images-idx3-ubyte[.gz]`, `t10k-...`. */
export function mnistFiles(root: string, split: 'train' | 'test'): { images: string; labels: string } {
  const prefix = split === 'train' ? 'train' : 't10k';
  const find = (stem: string): string => {
    for (const name of [`${stem}.gz`, stem, stem.replace(/-idx(\d)-/, '.idx$1.')]) {
      const p = join(root, name);
      if (existsSync(p)) return p;
    }
    throw new Error(`no ${stem}[.gz] in ${root}`);
  };
  return { images: find(`${prefix}-images-idx3-ubyte`), labels: find(`${prefix}-labels-idx1-ubyte`) };
}

/**
 * MNIST or Fashion-MNIST (`root` defaults to Debian's /usr/share/datasets/fashion-mnist for
 * 'fashion-mnist'; MNIST needs a root).
 */
export async function openMnist(
  name: 'fashion-mnist' | 'mnist', split: 'train' | 'test', options: IdxImageOptions & { root?: string } = {},
): Promise<IdxImageDataset> {
  const root = options.root ?? (name === 'fashion-mnist' ? FASHION_MNIST_DIR : undefined);
  if (!root) throw new Error(`openMnist: '${name}' needs a root folder`);
  const files = mnistFiles(root, split);
  return IdxImageDataset.open(files.images, files.labels, {
    ...options,
    classes: options.classes ?? (name === 'fashion-mnist' ? FASHION_MNIST_CLASSES : MNIST_CLASSES),
  });
}
