// Image files <-> uint8 HWC RGB, through sharp (libvips). Decoding follows PIL's
// `Image.open(p).convert('RGB')` (see decodeWithSharp in pixels.ts for the details).

import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { ImageDecodeError } from './errors.js';
import { writeFileAtomic } from './fsutil.js';
import {
  applyTransform, decodeWithSharp, fromFloat, toFloat, type PixelImage, type TransformSpec,
} from './pixels.js';

export type { PixelImage } from './pixels.js';

/** An RGB uint8 image, HWC. */
export interface RgbImage extends PixelImage {
  channels: 3;
}

function reasonOf(e: unknown): string {
  if (e && typeof e === 'object' && 'message' in e) return String((e as Error).message);
  return String(e);
}

/** Decodes an encoded image (PNG, JPEG, WebP, GIF, TIFF, AVIF...) to RGB uint8 HWC. */
export async function decodeImage(bytes: Uint8Array, name = '<buffer>'): Promise<RgbImage> {
  try {
    const img = await decodeWithSharp(sharp, bytes);
    return { data: img.data, height: img.height, width: img.width, channels: 3 };
  } catch (e) {
    throw new ImageDecodeError(name, reasonOf(e), { cause: e });
  }
}

/** Reads and decodes an image file to RGB uint8 HWC; any failure is an {@link ImageDecodeError} naming the file. */
export async function readImage(path: string): Promise<RgbImage> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new ImageDecodeError(path, reasonOf(e), { cause: e });
  }
  return decodeImage(bytes, path);
}

/** Width and height from the file header, without decoding the pixels. */
export async function readImageSize(path: string): Promise<{ height: number; width: number }> {
  try {
    const m = await sharp(path, { ignoreIcc: true }).metadata();
    if (!m.width || !m.height) throw new Error('no size in the header');
    return { height: m.height, width: m.width };
  } catch (e) {
    throw new ImageDecodeError(path, reasonOf(e), { cause: e });
  }
}

function checkImage(img: PixelImage): void {
  const { height, width, channels, data } = img;
  if (!(Number.isInteger(height) && Number.isInteger(width) && height > 0 && width > 0)) {
    throw new Error(`image: bad size ${height}x${width}`);
  }
  if (![1, 2, 3, 4].includes(channels)) throw new Error(`image: ${channels} channels (1 to 4 can be encoded)`);
  if (data.length !== height * width * channels) {
    throw new Error(`image: ${data.length} bytes for ${height}x${width}x${channels}`);
  }
}

/** Encodes a uint8 HWC image (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA channels) as PNG. */
export async function encodePng(img: PixelImage, options: { compressionLevel?: number } = {}): Promise<Buffer> {
  checkImage(img);
  return sharp(img.data, { raw: { width: img.width, height: img.height, channels: img.channels as 1 | 2 | 3 | 4 } })
    .png({ compressionLevel: options.compressionLevel ?? 6 })
    .toBuffer();
}

/** Encodes a uint8 HWC image as JPEG (quality 1-100, 4:2:0 chroma subsampling by default). */
export async function encodeJpeg(img: PixelImage, options: { quality?: number; chromaSubsampling?: '4:2:0' | '4:4:4' } = {}): Promise<Buffer> {
  checkImage(img);
  return sharp(img.data, { raw: { width: img.width, height: img.height, channels: img.channels as 1 | 2 | 3 | 4 } })
    .jpeg({ quality: options.quality ?? 90, chromaSubsampling: options.chromaSubsampling ?? '4:2:0' })
    .toBuffer();
}

/** Encodes and writes a PNG (folders created, written atomically). */
export async function writePng(path: string, img: PixelImage): Promise<void> {
  await writeFileAtomic(path, await encodePng(img));
}

/** uint8 HWC -> float32 x/127.5 - 1 in CHW (default) or HWC. */
export function imageToFloat(img: PixelImage, layout: 'chw' | 'hwc' = 'chw'): Float32Array {
  return toFloat(img.data, img.height, img.width, img.channels, layout);
}

/**
 * Float image in [-1, 1] (CHW by default) -> RGB uint8 HWC, exactly as the reference makes
 * uint8 images: clamp, float32 `((x + 1) / 2) * 255`, truncation (see floatToByte).
 * `offset` selects one image of a batch.
 */
export function floatToImage(
  data: ArrayLike<number>, height: number, width: number, layout: 'chw' | 'hwc' = 'chw', offset = 0,
): RgbImage {
  return { data: fromFloat(data, height, width, 3, layout, offset), height, width, channels: 3 };
}

/** The model input for one image file. */
export interface ModelInput {
  /** float32 in [-1, 1], [3, size, size] (CHW) or [size, size, 3] (HWC). */
  data: Float32Array;
  height: number;
  width: number;
  /** The decoded file's size before the transform. */
  sourceHeight: number;
  sourceWidth: number;
}

/**
 * Loads an image file the way the reference's validation / evaluation loader does:
 * PIL convert('RGB') -> SmallestMaxSize(size) (cv2 bilinear) -> CenterCrop(size) ->
 * x/127.5 - 1, CHW by default. `crop: 'none'` keeps the resized image whole.
 */
export async function readImageForModel(
  path: string, options: { size?: number; crop?: 'center' | 'none'; layout?: 'chw' | 'hwc' } = {},
): Promise<ModelInput> {
  const size = options.size ?? 256;
  const img = await readImage(path);
  const spec: TransformSpec = { resize: size, crop: options.crop ?? 'center' };
  const t = applyTransform(img, spec);
  return {
    data: toFloat(t.data, t.height, t.width, 3, options.layout ?? 'chw'),
    height: t.height,
    width: t.width,
    sourceHeight: img.height,
    sourceWidth: img.width,
  };
}

/**
 * Tiles equal-sized uint8 HWC images into one grid image (row-major), `pad` pixels of
 * `background` between and around them.
 */
export function tileImages(
  images: readonly PixelImage[], options: { columns?: number; pad?: number; background?: number } = {},
): PixelImage {
  if (images.length === 0) throw new Error('tileImages: no images');
  const { height: h, width: w, channels: c } = images[0];
  for (const im of images) {
    if (im.height !== h || im.width !== w || im.channels !== c) throw new Error('tileImages: images differ in size');
  }
  const cols = Math.max(1, Math.min(options.columns ?? Math.ceil(Math.sqrt(images.length)), images.length));
  const rows = Math.ceil(images.length / cols);
  const pad = options.pad ?? 2;
  const H = rows * h + (rows + 1) * pad;
  const W = cols * w + (cols + 1) * pad;
  const data = new Uint8Array(H * W * c).fill(options.background ?? 0);
  images.forEach((im, i) => {
    const y0 = pad + Math.floor(i / cols) * (h + pad);
    const x0 = pad + (i % cols) * (w + pad);
    for (let y = 0; y < h; y++) data.set(im.data.subarray(y * w * c, (y + 1) * w * c), ((y0 + y) * W + x0) * c);
  });
  return { data, height: H, width: W, channels: c };
}
