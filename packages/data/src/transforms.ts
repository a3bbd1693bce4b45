// The reference's image transforms (albumentations 1.4.4 over OpenCV 4.x) on uint8 HWC
// images. The arithmetic lives in pixels.ts (shared with the decode workers).

import {
  applyTransform, centerCropOffset, cropHWC, randomCropOffset, resizeBilinearCv, smallestMaxSizeShape,
  type PixelImage, type TransformSpec,
} from './pixels.js';
import { Rng } from './rng.js';

export type { TransformSpec } from './pixels.js';

/** cv2.resize(..., INTER_LINEAR) to outHeight x outWidth, bit-exact (see resizeBilinearCv). */
export function resizeBilinear(img: PixelImage, outHeight: number, outWidth: number): PixelImage {
  return {
    data: resizeBilinearCv(img.data, img.height, img.width, img.channels, outHeight, outWidth),
    height: outHeight,
    width: outWidth,
    channels: img.channels,
  };
}

/** albumentations SmallestMaxSize(size): shorter side -> size, cv2 INTER_LINEAR. */
export function smallestMaxSize(img: PixelImage, size: number): PixelImage {
  const [h, w] = smallestMaxSizeShape(img.height, img.width, size);
  if (h === img.height && w === img.width) return img;
  return resizeBilinear(img, h, w);
}

/** albumentations CenterCrop(h, w): offsets `(H - h) // 2`, `(W - w) // 2`. */
export function centerCrop(img: PixelImage, height: number, width = height): PixelImage {
  const [y0, x0] = centerCropOffset(img.height, img.width, height, width);
  return { data: cropHWC(img.data, img.height, img.width, img.channels, y0, x0, height, width), height, width, channels: img.channels };
}

/**
 * albumentations RandomCrop(h, w): `y0 = int((H - h + 1) * u0)`, `x0 = int((W - w + 1) * u1)`,
 * u0 then u1 drawn from `rng` (or given as a pair in [0, 1)).
 */
export function randomCrop(img: PixelImage, height: number, width: number, rng: Rng | readonly [number, number]): PixelImage {
  const u = rng instanceof Rng ? [rng.next(), rng.next()] : rng;
  const [y0, x0] = randomCropOffset(img.height, img.width, height, width, u[0], u[1]);
  return { data: cropHWC(img.data, img.height, img.width, img.channels, y0, x0, height, width), height, width, channels: img.channels };
}

/** The reference's training transform: SmallestMaxSize(size) + RandomCrop(size, size). */
export function trainTransform(size: number): TransformSpec {
  return { resize: size, crop: 'random' };
}

/** The reference's validation / evaluation transform: SmallestMaxSize(size) + CenterCrop(size, size). */
export function evalTransform(size: number): TransformSpec {
  return { resize: size, crop: 'center' };
}

/** Applies a TransformSpec; a random crop draws its two numbers from `rng` (or takes them given). */
export function transformImage(img: PixelImage, spec: TransformSpec, rng?: Rng | readonly [number, number]): PixelImage {
  let u: [number, number] | undefined;
  if (spec.crop === 'random') {
    if (!rng) throw new Error('transformImage: a random crop needs an Rng or two numbers');
    u = rng instanceof Rng ? [rng.next(), rng.next()] : [rng[0], rng[1]];
  }
  return applyTransform(img, spec, u);
}

export {
  applyTransform, centerCropOffset, cropHWC, floatToByte, fromFloat, randomCropOffset, resizeBilinearCv, resizeBilinearCvWindow,
  roundHalfEven, smallestMaxSizeShape, toFloat,
} from './pixels.js';
