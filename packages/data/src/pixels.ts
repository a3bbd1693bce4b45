// Pixel code shared by the main thread and the decode workers.
//
// Every function here is self-contained: it uses only its arguments, other functions of this
// file, and JavaScript globals (Math, typed arrays). The worker pool (pool.ts) builds its
// worker script from these functions' source text (Function.prototype.toString), so the
// same code runs from TS sources under vitest and from an esbuild bundle, with no worker
// file to locate. Do not reference imports or module-level constants from these functions.
//
// Images are uint8, HWC, `channels` interleaved (3 = RGB unless stated).

/** Round half to even, as C's lrint/cvRound (SSE cvtss2si) and Python's round() do. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x); // ties go towards +infinity
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Output size of albumentations 1.4.4 `SmallestMaxSize(max_size)`:
 * `scale = max_size / float(min(h, w))`; if `scale != 1`: `(round(h * scale), round(w * scale))`
 * with Python's round (half to even) on the float64 product; else unchanged.
 */
export function smallestMaxSizeShape(height: number, width: number, size: number): [number, number] {
  const scale = size / Math.min(height, width);
  if (scale === 1) return [height, width];
  return [roundHalfEven(height * scale), roundHalfEven(width * scale)];
}

/**
 * `cv2.resize(src, (outW, outH), interpolation=cv2.INTER_LINEAR)` for uint8 images, bit-exact
 * with OpenCV 4.x `cv::hal::resize` (generic path, as used by albumentations):
 *
 * - source coordinate on half-pixel centres, `fx = float((dx + 0.5) * (1 / (outW / w)) - 0.5)`
 *   computed in float64 then rounded to float32; `sx = floor(fx)`, `fx -= sx` (float32);
 *   no antialiasing when downscaling (plain 2-tap bilinear);
 * - x borders: `sx < 0` -> (sx 0, fx 0); `sx >= w - 1` -> (sx w-1, fx 0);
 *   y borders: the weights are kept, the two row indices are clamped to [0, h-1];
 * - weights are 11-bit fixed point: `round_half_even(float32(1 - f) * 2048)` and
 *   `round_half_even(f * 2048)`;
 * - horizontal pass in int32: `S[sx] * a0 + S[sx + 1] * a1`;
 * - vertical pass (`VResizeLinear<uchar>` and its SIMD twin, identical):
 *   `((b0 * (R0 >> 4)) >> 16) + ((b1 * (R1 >> 4)) >> 16) + 2) >> 2`.
 *
 * The 2x-in-both-axes case, which OpenCV routes to INTER_AREA, gives `(a+b+c+d+2) >> 2`: the
 * same numbers as the formula above, so it needs no branch. Same size -> a copy, as cv2 does.
 */
export function resizeBilinearCv(
  src: Uint8Array, height: number, width: number, channels: number, outHeight: number, outWidth: number,
): Uint8Array {
  return resizeBilinearCvWindow(src, height, width, channels, outHeight, outWidth, 0, 0, outHeight, outWidth);
}

/**
 * The window [y0, y0 + winHeight) x [x0, x0 + winWidth) of
 * `resizeBilinearCv(src, ..., outHeight, outWidth)`, computing only those pixels (each output
 * pixel depends only on its own row and column coefficients, so the numbers are identical):
 * SmallestMaxSize followed by a crop, without the pixels the crop throws away.
 */
export function resizeBilinearCvWindow(
  src: Uint8Array, height: number, width: number, channels: number, outHeight: number, outWidth: number,
  y0: number, x0: number, winHeight: number, winWidth: number,
): Uint8Array {
  if (!(height > 0 && width > 0 && outHeight > 0 && outWidth > 0)) {
    throw new Error(`resize: bad sizes ${height}x${width} -> ${outHeight}x${outWidth}`);
  }
  if (src.length < height * width * channels) throw new Error(`resize: buffer of ${src.length} bytes is too small for ${height}x${width}x${channels}`);
  if (!(y0 >= 0 && x0 >= 0 && winHeight > 0 && winWidth > 0 && y0 + winHeight <= outHeight && x0 + winWidth <= outWidth)) {
    throw new Error(`resize: window at (${y0}, ${x0}) of ${winHeight}x${winWidth} leaves the ${outHeight}x${outWidth} output`);
  }
  const c = channels;
  if (outHeight === height && outWidth === width) {
    // cv2 copies; the window is then a plain crop.
    const out = new Uint8Array(winHeight * winWidth * c);
    for (let y = 0; y < winHeight; y++) {
      const s = ((y0 + y) * width + x0) * c;
      out.set(src.subarray(s, s + winWidth * c), y * winWidth * c);
    }
    return out;
  }
  const scaleX = 1 / (outWidth / width);
  const scaleY = 1 / (outHeight / height);

  // Horizontal taps per output column (of the window), as byte offsets into a source row.
  const xofs0 = new Int32Array(winWidth);
  const xofs1 = new Int32Array(winWidth);
  const ax0 = new Int32Array(winWidth);
  const ax1 = new Int32Array(winWidth);
  for (let j = 0; j < winWidth; j++) {
    const dx = x0 + j;
    let fx = Math.fround((dx + 0.5) * scaleX - 0.5);
    let sx = Math.floor(fx);
    fx = Math.fround(fx - sx);
    if (sx < 0) {
      fx = 0;
      sx = 0;
    }
    if (sx >= width - 1) {
      fx = 0;
      sx = width - 1;
    }
    xofs0[j] = sx * c;
    xofs1[j] = Math.min(sx + 1, width - 1) * c;
    ax0[j] = roundHalfEven(Math.fround(Math.fround(1 - fx) * 2048));
    ax1[j] = roundHalfEven(Math.fround(fx * 2048));
  }

  const rowLen = winWidth * c;
  // Two horizontally resized rows, cached by source row index (OpenCV reuses them the same way).
  const rows = [new Int32Array(rowLen), new Int32Array(rowLen)];
  const rowIndex = [-1, -1];
  const hresize = (sy: number, dst: Int32Array): void => {
    const base = sy * width * c;
    if (c === 3) {
      for (let j = 0, o = 0; j < winWidth; j++, o += 3) {
        const p0 = base + xofs0[j];
        const p1 = base + xofs1[j];
        const a0 = ax0[j];
        const a1 = ax1[j];
        dst[o] = src[p0] * a0 + src[p1] * a1;
        dst[o + 1] = src[p0 + 1] * a0 + src[p1 + 1] * a1;
        dst[o + 2] = src[p0 + 2] * a0 + src[p1 + 2] * a1;
      }
    } else {
      for (let j = 0; j < winWidth; j++) {
        const p0 = base + xofs0[j];
        const p1 = base + xofs1[j];
        const a0 = ax0[j];
        const a1 = ax1[j];
        const o = j * c;
        for (let k = 0; k < c; k++) dst[o + k] = src[p0 + k] * a0 + src[p1 + k] * a1;
      }
    }
  };
  const row = (sy: number, keep: number): Int32Array => {
    if (rowIndex[0] === sy) return rows[0];
    if (rowIndex[1] === sy) return rows[1];
    const slot = rowIndex[0] === keep ? 1 : 0; // never overwrite the other row of this output row
    hresize(sy, rows[slot]);
    rowIndex[slot] = sy;
    return rows[slot];
  };

  const out = new Uint8Array(winHeight * rowLen);
  for (let i = 0; i < winHeight; i++) {
    const dy = y0 + i;
    let fy = Math.fround((dy + 0.5) * scaleY - 0.5);
    const sy = Math.floor(fy);
    fy = Math.fround(fy - sy);
    const b0 = roundHalfEven(Math.fround(Math.fround(1 - fy) * 2048));
    const b1 = roundHalfEven(Math.fround(fy * 2048));
    const sy0 = sy < 0 ? 0 : sy >= height ? height - 1 : sy;
    const sy1 = sy + 1 < 0 ? 0 : sy + 1 >= height ? height - 1 : sy + 1;
    const r0 = row(sy0, sy1);
    const r1 = row(sy1, sy0);
    const o = i * rowLen;
    for (let x = 0; x < rowLen; x++) {
      out[o + x] = (((b0 * (r0[x] >> 4)) >> 16) + ((b1 * (r1[x] >> 4)) >> 16) + 2) >> 2;
    }
  }
  return out;
}

/** albumentations `get_center_crop_coords`: `y0 = (h - ch) // 2`, `x0 = (w - cw) // 2`. */
export function centerCropOffset(height: number, width: number, cropHeight: number, cropWidth: number): [number, number] {
  return [Math.floor((height - cropHeight) / 2), Math.floor((width - cropWidth) / 2)];
}

/**
 * albumentations 1.4.4 `get_random_crop_coords`: `y0 = int((h - ch + 1) * h_start)`,
 * `x0 = int((w - cw + 1) * w_start)` with h_start, w_start uniform in [0, 1).
 */
export function randomCropOffset(
  height: number, width: number, cropHeight: number, cropWidth: number, hStart: number, wStart: number,
): [number, number] {
  return [Math.trunc((height - cropHeight + 1) * hStart), Math.trunc((width - cropWidth + 1) * wStart)];
}

/** Copies the window [y0, y0+ch) x [x0, x0+cw) of an HWC image. */
export function cropHWC(
  src: Uint8Array, height: number, width: number, channels: number, y0: number, x0: number, cropHeight: number, cropWidth: number,
): Uint8Array {
  if (cropHeight > height || cropWidth > width) {
    throw new Error(`crop: crop size ${cropHeight}x${cropWidth} is larger than the image ${height}x${width}`);
  }
  if (y0 < 0 || x0 < 0 || y0 + cropHeight > height || x0 + cropWidth > width) {
    throw new Error(`crop: window at (${y0}, ${x0}) of ${cropHeight}x${cropWidth} leaves the image ${height}x${width}`);
  }
  if (y0 === 0 && x0 === 0 && cropHeight === height && cropWidth === width) return src.slice(0, height * width * channels);
  const out = new Uint8Array(cropHeight * cropWidth * channels);
  const row = cropWidth * channels;
  for (let y = 0; y < cropHeight; y++) {
    const s = ((y0 + y) * width + x0) * channels;
    out.set(src.subarray(s, s + row), y * row);
  }
  return out;
}

/**
 * uint8 HWC -> float32 `x / 127.5 - 1` (computed in float64 and rounded to float32, as the
 * reference's `(image / 127.5 - 1.0).astype(np.float32)`), written in CHW or HWC order into
 * `out` at `offset` (a new array when `out` is omitted).
 */
export function toFloat(
  src: Uint8Array, height: number, width: number, channels: number, layout: 'chw' | 'hwc', out?: Float32Array, offset = 0,
): Float32Array {
  const n = height * width;
  const dst = out ?? new Float32Array(n * channels);
  if (dst.length < offset + n * channels) throw new Error(`toFloat: output of ${dst.length} values is too small`);
  const lut = new Float32Array(256);
  for (let v = 0; v < 256; v++) lut[v] = v / 127.5 - 1;
  if (layout === 'hwc') {
    for (let i = 0; i < n * channels; i++) dst[offset + i] = lut[src[i]];
  } else {
    for (let k = 0; k < channels; k++) {
      const o = offset + k * n;
      for (let p = 0, q = k; p < n; p++, q += channels) dst[o + p] = lut[src[q]];
    }
  }
  return dst;
}

/**
 * One float in [-1, 1] -> uint8 exactly as the reference does it everywhere it makes uint8
 * images (evaluation_image.py, custom_to_pil, sample.py's chw_to_pillow): clamp to [-1, 1],
 * then in float32 `((x + 1) / 2) * 255`, then truncation (torch `.to(uint8)` /
 * numpy `.astype(np.uint8)`). NaN -> 0.
 */
export function floatToByte(v: number): number {
  let x = v;
  if (!(x >= -1)) x = -1; // also NaN
  else if (x > 1) x = 1;
  return Math.fround(Math.fround(Math.fround(x + 1) / 2) * 255) | 0;
}

/** Float image (CHW or HWC, [-1, 1]) -> uint8 HWC with {@link floatToByte}. */
export function fromFloat(
  src: ArrayLike<number>, height: number, width: number, channels: number, layout: 'chw' | 'hwc', offset = 0,
): Uint8Array {
  const n = height * width;
  const out = new Uint8Array(n * channels);
  if (layout === 'hwc') {
    for (let i = 0; i < n * channels; i++) out[i] = floatToByte(src[offset + i]);
  } else {
    for (let k = 0; k < channels; k++) {
      const o = offset + k * n;
      for (let p = 0; p < n; p++) out[p * channels + k] = floatToByte(src[o + p]);
    }
  }
  return out;
}

/** What a transform does: albumentations SmallestMaxSize then a crop, as the reference composes them. */
export interface TransformSpec {
  /** SmallestMaxSize target for the shorter side (cv2 INTER_LINEAR); omit to keep the size. */
  resize?: number;
  /** 'center' (CenterCrop), 'random' (RandomCrop) or 'none'. Default: 'none'. */
  crop?: 'center' | 'random' | 'none';
  /** Crop height and width; default: `resize` (a square). */
  cropSize?: number | [number, number];
}

/** A decoded or transformed uint8 HWC image. */
export interface PixelImage {
  data: Uint8Array;
  height: number;
  width: number;
  channels: number;
}

/**
 * SmallestMaxSize + crop on a uint8 HWC image. `u` holds RandomCrop's (h_start, w_start) in
 * [0, 1) (drawn by the caller, so that the result is a pure function of its inputs).
 */
export function applyTransform(img: PixelImage, spec: TransformSpec, u?: readonly [number, number]): PixelImage {
  const c = img.channels;
  let height = img.height;
  let width = img.width;
  if (spec.resize !== undefined) [height, width] = smallestMaxSizeShape(height, width, spec.resize);
  const crop = spec.crop ?? 'none';
  let y0 = 0;
  let x0 = 0;
  let ch = height;
  let cw = width;
  if (crop !== 'none') {
    const cs = spec.cropSize ?? spec.resize;
    if (cs === undefined) throw new Error(`transform: crop '${crop}' needs cropSize or resize`);
    ch = typeof cs === 'number' ? cs : cs[0];
    cw = typeof cs === 'number' ? cs : cs[1];
    if (ch > height || cw > width) {
      throw new Error(`transform: crop ${ch}x${cw} is larger than the image ${height}x${width}`);
    }
    if (crop === 'center') [y0, x0] = centerCropOffset(height, width, ch, cw);
    else {
      if (!u) throw new Error('transform: random crop needs its two uniform numbers');
      [y0, x0] = randomCropOffset(height, width, ch, cw, u[0], u[1]);
    }
  }
  if (height === img.height && width === img.width) {
    if (crop === 'none') return { data: img.data, height, width, channels: c };
    return { data: cropHWC(img.data, height, width, c, y0, x0, ch, cw), height: ch, width: cw, channels: c };
  }
  // Resize straight into the crop window: the same numbers as resizing all and cropping.
  const data = resizeBilinearCvWindow(img.data, img.height, img.width, c, height, width, y0, x0, ch, cw);
  return { data, height: ch, width: cw, channels: c };
}

/**
 * PIL's CMYK -> RGB (`Image.convert('RGB')`, Convert.c cmyk2rgb): no colour management,
 * `nk = 255 - K; out = clip(nk - MULDIV255(C, nk))` with `MULDIV255(a, b) = ((t >> 8) + t) >> 8`,
 * `t = a * b + 128`.
 */
export function cmykToRgb(src: Uint8Array, pixels: number): Uint8Array {
  const out = new Uint8Array(pixels * 3);
  for (let p = 0; p < pixels; p++) {
    const nk = 255 - src[p * 4 + 3];
    for (let k = 0; k < 3; k++) {
      const t = src[p * 4 + k] * nk + 128;
      const v = nk - (((t >> 8) + t) >> 8);
      out[p * 3 + k] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  }
  return out;
}

/**
 * Decodes an encoded image (a path or the file's bytes) with sharp to RGB uint8 HWC the way
 * PIL's `Image.open(p).convert('RGB')` does:
 * - embedded ICC profiles are ignored (PIL applies none), EXIF orientation is ignored (PIL
 *   does not rotate), the first frame/page only;
 * - grey -> replicated to R=G=B; alpha (RGBA, LA, palette transparency) dropped, no
 *   compositing; palette -> its colours;
 * - CMYK (JPEG) -> PIL's naive formula ({@link cmykToRgb}), not an ICC conversion;
 * - 16-bit -> 8-bit by libvips' scaling (>> 8). PIL differs here (it clips 16-bit grey);
 *   ImageNet has no such files.
 * - truncated data is an error (failOn 'truncated'), as PIL raises on truncated files;
 *   libjpeg warnings such as extraneous bytes are not (PIL accepts those files).
 * `sharp` is the sharp module (passed in so that a worker can use its own instance).
 */
export async function decodeWithSharp(
  sharp: any, input: string | Uint8Array,
): Promise<{ data: Uint8Array; height: number; width: number; channels: number }> {
  const options = { failOn: 'truncated', ignoreIcc: true, limitInputPixels: 0x3fff * 0x3fff };
  const meta = await sharp(input, options).metadata();
  if (meta.space === 'cmyk') {
    // Keep libvips in CMYK end to end: the raw bands are then the file's (Adobe-inverted
    // files un-inverted, as PIL's 'CMYK;I' rawmode does).
    const { data, info } = await sharp(input, options)
      .pipelineColourspace('cmyk')
      .toColourspace('cmyk')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 4) throw new Error(`CMYK image decoded to ${info.channels} channels`);
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.length);
    return { data: cmykToRgb(bytes, info.width * info.height), height: info.height, width: info.width, channels: 3 };
  }
  const { data, info } = await sharp(input, options)
    .removeAlpha()
    .toColourspace('srgb')
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`image decoded to ${info.channels} channels, expected 3`);
  // A fresh, unshared copy: sharp's Buffer may sit in a pooled ArrayBuffer.
  const out = new Uint8Array(data.length);
  out.set(data);
  return { data: out, height: info.height, width: info.width, channels: 3 };
}

/** A decode job: a file, a transform, RandomCrop's numbers, the float layout. */
export interface FileJob {
  path: string;
  transform: TransformSpec;
  u?: [number, number];
  layout: 'chw' | 'hwc';
}

/**
 * Decode + transform + float conversion of one file (the body of a worker job). `readFile`
 * is fs.promises.readFile (the file is read whole, then decoded from memory, exactly as the
 * main thread's readImage does).
 */
export async function runFileJob(
  sharp: any, readFile: (path: string) => Promise<Uint8Array>, job: FileJob,
): Promise<{ data: Float32Array; height: number; width: number }> {
  const img = await decodeWithSharp(sharp, await readFile(job.path));
  const t = applyTransform(img, job.transform, job.u);
  return { data: toFloat(t.data, t.height, t.width, t.channels, job.layout), height: t.height, width: t.width };
}
