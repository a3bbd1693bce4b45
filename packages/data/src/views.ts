// The stored views of `ibq tokenize` (LlamaGen's extract_codes_c2i.py): the image and its
// mirror (--flip), or TenCrop (--ten-crop): the four corner crops and the centre crop, then
// the same five of the mirrored image (torchvision's five_crop order: top-left, top-right,
// bottom-left, bottom-right, centre; the centre offset is int(round((S - R) / 2))).
// Views are cut from float CHW batches, item-major: item 0's views, then item 1's, ...

/** Views per item of each augmentation. */
export function viewCount(kind: 'none' | 'flip' | 'ten-crop'): number {
  return kind === 'ten-crop' ? 10 : kind === 'flip' ? 2 : 1;
}

/** Mirrors one CHW image left-right into `out` at `outOffset`. */
function mirrorCrop(src: Float32Array, off: number, S: number, y0: number, x0: number, R: number, flip: boolean, out: Float32Array, at: number): void {
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < R; y++) {
      const row = off + c * S * S + (y0 + y) * S;
      const o = at + c * R * R + y * R;
      // A crop of the mirror at x0 is the mirror of the crop at S - R - x0.
      if (flip) for (let x = 0; x < R; x++) out[o + x] = src[row + (S - 1 - x0 - x)];
      else out.set(src.subarray(row + x0, row + x0 + R), o);
    }
  }
}

/** Python's round() of a float (half to even), as torchvision's centre crop uses. */
function pyRound(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
}

/**
 * [n, 3, S, S] -> [n * views, 3, R, R]: 'none' (S = R) copies, 'flip' adds each mirror,
 * 'ten-crop' cuts TenCrop(R) from each S x S image.
 */
export function augmentViews(images: Float32Array, n: number, S: number, kind: 'none' | 'flip' | 'ten-crop', R: number): Float32Array {
  if (images.length !== n * 3 * S * S) throw new Error(`augmentViews: ${images.length} values for [${n}, 3, ${S}, ${S}]`);
  if (kind !== 'ten-crop' && S !== R) throw new Error(`augmentViews: '${kind}' needs ${R}x${R} images, got ${S}x${S}`);
  if (R > S) throw new Error(`augmentViews: crop ${R} larger than the image ${S}`);
  const A = viewCount(kind);
  const out = new Float32Array(n * A * 3 * R * R);
  const per = 3 * R * R;
  const m = S - R;
  const c = pyRound(m / 2);
  const five: [number, number][] = [[0, 0], [0, m], [m, 0], [m, m], [c, c]];
  for (let i = 0; i < n; i++) {
    const off = i * 3 * S * S;
    const base = i * A * per;
    if (kind === 'ten-crop') {
      five.forEach(([y, x], k) => {
        mirrorCrop(images, off, S, y, x, R, false, out, base + k * per);
        mirrorCrop(images, off, S, y, x, R, true, out, base + (5 + k) * per);
      });
    } else {
      mirrorCrop(images, off, S, 0, 0, R, false, out, base);
      if (kind === 'flip') mirrorCrop(images, off, S, 0, 0, R, true, out, base + per);
    }
  }
  return out;
}
