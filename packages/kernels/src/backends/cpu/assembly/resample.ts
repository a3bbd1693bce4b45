// Nearest 2x upsampling (and its gradient) and bilinear resize over NCHW planes [p0, p1).

/** y[p, i, j] = x[p, i/2, j/2] for planes [p0, p1) of H x W. */
export function upsample2x(x: usize, y: usize, p0: i32, p1: i32, H: i32, W: i32): void {
  const OW = 2 * W;
  for (let p = p0; p < p1; p++) {
    for (let i = 0; i < H; i++) {
      const src = x + (<usize>((p * H + i) * W) << 2);
      const d0 = y + (<usize>((p * 2 * H + 2 * i) * OW) << 2);
      const d1 = d0 + (<usize>OW << 2);
      let j = 0;
      for (; j + 4 <= W; j += 4) {
        const v = v128.load(src + (<usize>j << 2));
        const lo = v128.shuffle<i32>(v, v, 0, 0, 1, 1), hi = v128.shuffle<i32>(v, v, 2, 2, 3, 3);
        const o = <usize>j << 3;
        v128.store(d0 + o, lo); v128.store(d0 + o, hi, 16);
        v128.store(d1 + o, lo); v128.store(d1 + o, hi, 16);
      }
      for (; j < W; j++) {
        const v = load<f32>(src + (<usize>j << 2));
        const o = <usize>j << 3;
        store<f32>(d0 + o, v); store<f32>(d0 + o, v, 4);
        store<f32>(d1 + o, v); store<f32>(d1 + o, v, 4);
      }
    }
  }
}

/** dx[p, i, j] = the sum of the 2x2 block of dy at (2i, 2j); dx planes are H x W. */
export function upsample2xGrad(dy: usize, dx: usize, p0: i32, p1: i32, H: i32, W: i32): void {
  const OW = 2 * W;
  for (let p = p0; p < p1; p++) {
    for (let i = 0; i < H; i++) {
      const r0 = dy + (<usize>((p * 2 * H + 2 * i) * OW) << 2);
      const r1 = r0 + (<usize>OW << 2);
      const d = dx + (<usize>((p * H + i) * W) << 2);
      for (let j = 0; j < W; j++) {
        const o = <usize>j << 3;
        store<f32>(d + (<usize>j << 2), (load<f32>(r0 + o) + load<f32>(r0 + o, 4)) + (load<f32>(r1 + o) + load<f32>(r1 + o, 4)));
      }
    }
  }
}

/**
 * Bilinear resize of planes [p0, p1) from H x W to OH x OW. rows / cols hold, per output row
 * / column, (i32 first tap, i32 second tap, f32 weight of the second).
 */
export function resizeBilinear(x: usize, y: usize, p0: i32, p1: i32, H: i32, W: i32, OH: i32, OW: i32, rows: usize, cols: usize): void {
  for (let p = p0; p < p1; p++) {
    const base = x + (<usize>(p * H * W) << 2);
    for (let i = 0; i < OH; i++) {
      const rt = rows + <usize>(i * 12);
      const h0 = load<i32>(rt), h1 = load<i32>(rt, 4), lh = load<f32>(rt, 8);
      const top = base + (<usize>(h0 * W) << 2), bot = base + (<usize>(h1 * W) << 2);
      const out = y + (<usize>((p * OH + i) * OW) << 2);
      for (let j = 0; j < OW; j++) {
        const ct = cols + <usize>(j * 12);
        const w0 = <usize>load<i32>(ct) << 2, w1 = <usize>load<i32>(ct, 4) << 2, lw = load<f32>(ct, 8);
        const t = (<f32>1 - lw) * load<f32>(top + w0) + lw * load<f32>(top + w1);
        const b = (<f32>1 - lw) * load<f32>(bot + w0) + lw * load<f32>(bot + w1);
        store<f32>(out + (<usize>j << 2), (<f32>1 - lh) * t + lh * b);
      }
    }
  }
}

/**
 * Max (isMax 1) or average pooling of planes [p0, p1) from H x W to OH x OW: the window of
 * output (i, j) is rows i*sh-pt .. +KH-1, columns j*sw-pl .. +KW-1, clipped to the plane.
 * Average: the sum divided by KH*KW (includePad 1) or by the clipped window's size.
 */
export function pool2d(x: usize, y: usize, p0: i32, p1: i32, H: i32, W: i32, OH: i32, OW: i32,
  KH: i32, KW: i32, sh: i32, sw: i32, pt: i32, pl: i32, isMax: i32, includePad: i32): void {
  for (let p = p0; p < p1; p++) {
    const base = x + (<usize>(p * H * W) << 2);
    const out = y + (<usize>(p * OH * OW) << 2);
    for (let i = 0; i < OH; i++) {
      const h0 = i * sh - pt;
      const ha = max(h0, 0), hb = min(h0 + KH, H);
      for (let j = 0; j < OW; j++) {
        const w0 = j * sw - pl;
        const wa = max(w0, 0), wb = min(w0 + KW, W);
        let r: f32;
        if (isMax) {
          r = -Infinity;
          for (let h = ha; h < hb; h++) {
            const row = base + (<usize>(h * W) << 2);
            for (let w = wa; w < wb; w++) {
              const v = load<f32>(row + (<usize>w << 2));
              if (v > r || isNaN(v)) r = v;
            }
          }
        } else {
          let s: f64 = 0;
          for (let h = ha; h < hb; h++) {
            const row = base + (<usize>(h * W) << 2);
            for (let w = wa; w < wb; w++) s += <f64>load<f32>(row + (<usize>w << 2));
          }
          r = <f32>(s / <f64>(includePad ? KH * KW : (hb - ha) * (wb - wa)));
        }
        store<f32>(out + (<usize>((i * OW + j)) << 2), r);
      }
    }
  }
}
