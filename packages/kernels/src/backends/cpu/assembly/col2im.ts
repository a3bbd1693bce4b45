// col2im for the data gradient of strided convolutions: dx[n, c] = the sum, over kernel taps
// (kh, kw) and output pixels (oh, ow), of cols[(c, kh, kw), (oh, ow)] placed at
// (oh*sh - pt + kh, ow*sw - pl + kw). With stride s only 1/s^2 of the taps reach a given
// input pixel, so the implicit GEMM over dx's pixels (packConvDy) multiplies mostly zeros; a
// GEMM into cols followed by this scatter does only the needed products.

/**
 * Jobs (image n in [n0, n1), channel c) from `counter`: writes dx[n, c] (H x W) from
 * cols (per image [C*KH*KW, OH*OW], images `imgStride` floats apart, from image n0).
 */
export function col2im(cols: usize, dx: usize, n0: i32, n1: i32, C: i32, H: i32, W: i32, KH: i32, KW: i32,
  sh: i32, sw: i32, pt: i32, pl: i32, OH: i32, OW: i32, imgStride: i32, counter: usize): void {
  const jobs = (n1 - n0) * C;
  const P = OH * OW;
  for (;;) {
    const j = atomic.add<i32>(counter, 1);
    if (j >= jobs) break;
    const n = n0 + j / C, c = j % C;
    const plane = dx + (<usize>((n * C + c) * H * W) << 2);
    memory.fill(plane, 0, <usize>(H * W) << 2);
    const base = cols + (<usize>((n - n0) * imgStride + c * KH * KW * P) << 2);
    for (let kh = 0; kh < KH; kh++) {
      for (let kw = 0; kw < KW; kw++) {
        const src = base + (<usize>((kh * KW + kw) * P) << 2);
        // Output columns whose input column iw = ow*sw - pl + kw lies in [0, W).
        const last = W - 1 + pl - kw; // iw <= W - 1
        const owLo = max(0, (pl - kw + sw - 1) / sw), owHi = last < 0 ? 0 : min(OW, last / sw + 1);
        for (let oh = 0; oh < OH; oh++) {
          const ih = oh * sh - pt + kh;
          if (ih < 0 || ih >= H) continue;
          const row = plane + (<usize>(ih * W) << 2);
          const s = src + (<usize>(oh * OW) << 2);
          let iw = owLo * sw - pl + kw;
          for (let ow = owLo; ow < owHi; ow++, iw += sw) {
            const p = row + (<usize>iw << 2);
            store<f32>(p, load<f32>(p) + load<f32>(s + (<usize>ow << 2)));
          }
        }
      }
    }
  }
}
