// Winograd minimal filtering F(m x m, 3 x 3), m = 2 or 4 (Lavin & Gray 2016), for stride-1
// 3x3 convolutions: the forward, the data gradient (a forward with the flipped, transposed
// kernel) and the weight gradient. With a = m + 2, an image is cut into tiles of m x m
// outputs that read a x a inputs; per transform position xi (a*a of them) the channel sums are
// one GEMM (assembly/gemm.ts, run by the host), and these routines do the transforms around it:
//   forward   Y_t = At [ sum_c U[xi][o][c] V[xi][c][t] ] A,  U = G g G^T, V = Bt d_t B
//   wgrad     dg  = G^T [ sum_t Z[xi][o][t] V[xi][c][t] ] G,  Z = At^T dY_t At
// Tensors of transformed values are [xi][rows][T] with the tile index t contiguous, so the
// image transforms run four tiles of one tile row at once (one f32x4 lane per tile) and the
// GEMMs read plain matrices. Jobs are (channel, tile rows) taken in claims from an atomic
// counter, and each job's arithmetic is fixed, so results are the same on any number of
// threads. The kernel transforms run four kernels per vector.

import { gemm } from './gemm';
import { copyWords, zeroWords } from './vmath';

/**
 * Jobs per claim from a shared counter: about 64 claims per call. A claim moves the counter's
 * cache line between cores (0.1-0.2 us here), longer than one small job: taken one at a time,
 * config S's transforms ran slower on two threads than on one.
 */
@inline function claimSize(jobs: i32): i32 {
  return max(1, jobs >> 6);
}

/** G c for one column c = (g0, g1, g2) of a kernel, four kernels per vector: a values at out, stride s bytes. */
@inline function gcol(m: i32, g0: v128, g1: v128, g2: v128, out: usize, s: usize): void {
  const sum = f32x4.add(g0, g2);
  if (m == 2) {
    const h = f32x4.splat(0.5);
    v128.store(out, g0);
    v128.store(out + s, f32x4.mul(f32x4.add(sum, g1), h));
    v128.store(out + 2 * s, f32x4.mul(f32x4.sub(sum, g1), h));
    v128.store(out + 3 * s, g2);
  } else {
    const sixth = f32x4.splat(<f32>(-1.0 / 6)), tw4 = f32x4.splat(<f32>(1.0 / 24));
    const e = f32x4.add(g0, f32x4.mul(f32x4.splat(4), g2)), o = f32x4.mul(f32x4.splat(2), g1);
    v128.store(out, f32x4.mul(g0, f32x4.splat(0.25)));
    v128.store(out + s, f32x4.mul(f32x4.add(sum, g1), sixth));
    v128.store(out + 2 * s, f32x4.mul(f32x4.sub(sum, g1), sixth));
    v128.store(out + 3 * s, f32x4.mul(f32x4.add(e, o), tw4));
    v128.store(out + 4 * s, f32x4.mul(f32x4.sub(e, o), tw4));
    v128.store(out + 5 * s, g2);
  }
}

/** G^T u for u = (u0..u_{a-1}): three values at out, stride s bytes. */
@inline function gtcol(m: i32, p: usize, ps: usize, out: usize, s: usize): void {
  const u0 = v128.load(p), u1 = v128.load(p + ps), u2 = v128.load(p + 2 * ps), u3 = v128.load(p + 3 * ps);
  const s12 = f32x4.add(u1, u2), d12 = f32x4.sub(u1, u2);
  if (m == 2) {
    const h = f32x4.splat(0.5);
    v128.store(out, f32x4.add(u0, f32x4.mul(s12, h)));
    v128.store(out + s, f32x4.mul(d12, h));
    v128.store(out + 2 * s, f32x4.add(f32x4.mul(s12, h), u3));
  } else {
    const u4 = v128.load(p + 4 * ps), u5 = v128.load(p + 5 * ps);
    const s34 = f32x4.add(u3, u4), d34 = f32x4.sub(u3, u4);
    const sixth = f32x4.splat(<f32>(1.0 / 6));
    const a = f32x4.mul(s12, sixth);
    v128.store(out, f32x4.add(f32x4.sub(f32x4.mul(u0, f32x4.splat(0.25)), a), f32x4.mul(s34, f32x4.splat(<f32>(1.0 / 24)))));
    v128.store(out + s, f32x4.sub(f32x4.mul(d34, f32x4.splat(<f32>(1.0 / 12))), f32x4.mul(d12, sixth)));
    v128.store(out + 2 * s, f32x4.add(f32x4.sub(f32x4.mul(s34, sixth), a), u5));
  }
}

/**
 * Kernel transform for output channels [o0, o1): U[xi][o][c] = (G w[o,c] G^T)[xi] (forward),
 * or, when `dgrad`, U[xi][c][o] = (G flip(w[o,c]) G^T)[xi] (the data gradient's kernel: the
 * 180-degree rotation with input and output channels swapped). Four kernels per vector, along
 * U's contiguous axis (c, or o when dgrad: then [o0, o1) are taken in groups of four). `tmp`:
 * 3a + 9 + a*a vectors (TMP_BYTES in kernels/winograd.ts).
 */
export function winoKernel(w: usize, U: usize, O: i32, C: i32, m: i32, dgrad: i32, o0: i32, o1: i32, tmp: usize): void {
  const a = m + 2;
  const OC = O * C;
  const t1 = tmp, u = tmp + (<usize>(3 * a) << 4);
  // Lanes run along c (forward) or o (dgrad); the other axis is the outer loop.
  const outer0 = dgrad ? 0 : o0, outer1 = dgrad ? C : o1;
  const lane0 = dgrad ? o0 : 0, lane1 = dgrad ? o1 : C;
  const laneStride = dgrad ? C * 9 : 9; // floats between the kernels of adjacent lanes
  for (let q = outer0; q < outer1; q++) {
    for (let l = lane0; l < lane1; l += 4) {
      const n = min(4, lane1 - l);
      const g = w + (<usize>((dgrad ? l * C + q : q * C + l) * 9) << 2);
      // The nine kernel values of the n kernels, one vector each (flipped for dgrad).
      for (let kh = 0; kh < 3; kh++) {
        for (let kw = 0; kw < 3; kw++) {
          const src = g + (<usize>(dgrad ? (2 - kh) * 3 + 2 - kw : kh * 3 + kw) << 2);
          let v = f32x4.splat(0);
          v = f32x4.replace_lane(v, 0, load<f32>(src));
          if (n > 1) v = f32x4.replace_lane(v, 1, load<f32>(src + (<usize>laneStride << 2)));
          if (n > 2) v = f32x4.replace_lane(v, 2, load<f32>(src + (<usize>(2 * laneStride) << 2)));
          if (n > 3) v = f32x4.replace_lane(v, 3, load<f32>(src + (<usize>(3 * laneStride) << 2)));
          v128.store(u + (<usize>(kh * 3 + kw) << 4), v);
        }
      }
      // T1[i][kw] = (G g[.][kw])[i].
      for (let kw = 0; kw < 3; kw++) {
        gcol(m, v128.load(u + (<usize>kw << 4)), v128.load(u + (<usize>(3 + kw) << 4)), v128.load(u + (<usize>(6 + kw) << 4)),
          t1 + (<usize>kw << 4), 48);
      }
      // U[i][j] = (G T1[i][.])[j], written at xi = i*a + j.
      const dst = U + (<usize>(dgrad ? q * O + l : q * C + l) << 2);
      for (let i = 0; i < a; i++) {
        const r = t1 + (<usize>(i * 3) << 4);
        const row = u + (<usize>(9 + i * a) << 4);
        gcol(m, v128.load(r), v128.load(r, 16), v128.load(r, 32), row, 16);
        for (let j = 0; j < a; j++) {
          const v = v128.load(row + (<usize>j << 4));
          const p = dst + (<usize>((i * a + j) * OC) << 2);
          storeLanes(p, v, n);
        }
      }
    }
  }
}

/**
 * Weight gradient from its transform, for output channels [o0, o1): dw[o,c] = G^T dU[.][o][c] G,
 * four input channels per vector. `tmp`: 3a + 9 vectors. dU must be readable 3 floats past its end.
 */
export function winoKernelGrad(dU: usize, dw: usize, O: i32, C: i32, m: i32, o0: i32, o1: i32, tmp: usize): void {
  const a = m + 2;
  const OC = O * C;
  const t1 = tmp, r = tmp + (<usize>(3 * a) << 4);
  const xs = <usize>OC << 2;
  for (let o = o0; o < o1; o++) {
    for (let c = 0; c < C; c += 4) {
      const n = min(4, C - c);
      const src = dU + (<usize>(o * C + c) << 2);
      // T1[k][j] = (G^T dU[.][j])[k].
      for (let j = 0; j < a; j++) gtcol(m, src + <usize>j * xs, <usize>a * xs, t1 + (<usize>j << 4), <usize>a << 4);
      // dw[k][l] = (G^T T1[k][.])[l].
      for (let k = 0; k < 3; k++) gtcol(m, t1 + (<usize>(k * a) << 4), 16, r + (<usize>(k * 3) << 4), 16);
      const g = dw + (<usize>((o * C + c) * 9) << 2);
      for (let e = 0; e < 9; e++) {
        const v = v128.load(r + (<usize>e << 4));
        const p = g + (<usize>e << 2);
        store<f32>(p, f32x4.extract_lane(v, 0));
        if (n > 1) store<f32>(p, f32x4.extract_lane(v, 1), 36);
        if (n > 2) store<f32>(p, f32x4.extract_lane(v, 2), 72);
        if (n > 3) store<f32>(p, f32x4.extract_lane(v, 3), 108);
      }
    }
  }
}

/** Stores the first n (1..4) lanes of v at p. */
@inline function storeLanes(p: usize, v: v128, n: i32): void {
  if (n >= 4) {
    v128.store(p, v);
    return;
  }
  store<f32>(p, f32x4.extract_lane(v, 0));
  if (n > 1) store<f32>(p, f32x4.extract_lane(v, 1), 4);
  if (n > 2) store<f32>(p, f32x4.extract_lane(v, 2), 8);
}

// The 1-D transforms, on four tiles at once. `out` advances by `s` bytes per output.

/** F(2,3) data transform Bt d: [d0 - d2, d1 + d2, d2 - d1, d1 - d3]. */
@inline function bt2(d0: v128, d1: v128, d2: v128, d3: v128, out: usize, s: usize, n: i32): void {
  storeLanes(out, f32x4.sub(d0, d2), n);
  storeLanes(out + s, f32x4.add(d1, d2), n);
  storeLanes(out + 2 * s, f32x4.sub(d2, d1), n);
  storeLanes(out + 3 * s, f32x4.sub(d1, d3), n);
}

/** F(4,3) data transform Bt d (Lavin's points 0, +-1, +-2). */
@inline function bt4(d0: v128, d1: v128, d2: v128, d3: v128, d4: v128, d5: v128, out: usize, s: usize, n: i32): void {
  const four = f32x4.splat(4), five = f32x4.splat(5), two = f32x4.splat(2);
  const p = f32x4.sub(d4, f32x4.mul(four, d2)); // d4 - 4 d2
  const q = f32x4.sub(d3, f32x4.mul(four, d1)); // d3 - 4 d1
  const r = f32x4.sub(d4, d2);
  const e = f32x4.mul(two, f32x4.sub(d3, d1));
  storeLanes(out, f32x4.add(f32x4.sub(f32x4.mul(four, d0), f32x4.mul(five, d2)), d4), n);
  storeLanes(out + s, f32x4.add(p, q), n);
  storeLanes(out + 2 * s, f32x4.sub(p, q), n);
  storeLanes(out + 3 * s, f32x4.add(r, e), n);
  storeLanes(out + 4 * s, f32x4.sub(r, e), n);
  storeLanes(out + 5 * s, f32x4.add(f32x4.sub(f32x4.mul(four, d1), f32x4.mul(five, d3)), d5), n);
}

/** 4 x 4 transpose: returns row `r` of the transpose of rows x0..x3. */
@inline function tcol(x0: v128, x1: v128, x2: v128, x3: v128, r: i32): v128 {
  // r is a constant at every call site after inlining.
  if (r == 0) return v128.shuffle<f32>(v128.shuffle<f32>(x0, x1, 0, 4, 1, 5), v128.shuffle<f32>(x2, x3, 0, 4, 1, 5), 0, 1, 4, 5);
  if (r == 1) return v128.shuffle<f32>(v128.shuffle<f32>(x0, x1, 0, 4, 1, 5), v128.shuffle<f32>(x2, x3, 0, 4, 1, 5), 2, 3, 6, 7);
  if (r == 2) return v128.shuffle<f32>(v128.shuffle<f32>(x0, x1, 2, 6, 3, 7), v128.shuffle<f32>(x2, x3, 2, 6, 3, 7), 0, 1, 4, 5);
  return v128.shuffle<f32>(v128.shuffle<f32>(x0, x1, 2, 6, 3, 7), v128.shuffle<f32>(x2, x3, 2, 6, 3, 7), 2, 3, 6, 7);
}

/**
 * Copies `rows` rows of plane x ([H, W]) starting at padded row `r0` into dst ([rows, Wp]),
 * the plane sitting at (pt, pl) in padded coordinates; zeros elsewhere.
 */
function strip(x: usize, H: i32, W: i32, pt: i32, pl: i32, r0: i32, rows: i32, dst: usize, Wp: i32): void {
  const cols = max(0, min(W, Wp - pl));
  for (let r = 0; r < rows; r++) {
    const ih = r0 + r - pt;
    const d = dst + (<usize>(r * Wp) << 2);
    if (ih < 0 || ih >= H || cols == 0) {
      zeroWords(d, Wp);
      continue;
    }
    if (pl > 0) zeroWords(d, min(pl, Wp));
    copyWords(d + (<usize>pl << 2), x + (<usize>(ih * W) << 2), cols);
    const tail = Wp - pl - cols;
    if (tail > 0) zeroWords(d + (<usize>(pl + cols) << 2), tail);
  }
}

/**
 * Data transform: V[xi][c][t] for jobs (c, `per` tile rows of [R0, R1)) taken from `counter`.
 * A job's rows fill whole cache lines of V (host: rowsPerJob), so two threads never write
 * the same line (sharing one made two threads slower than one).
 * x is [N, C, H, W] at (pt, pl) in padded coordinates; a tile row R = n*TH + th covers
 * output rows th*m.. of image n. t counts from the chunk's first tile row, TW tiles per row;
 * cs and xs are V's channel and xi strides in elements (host: lineUp, planeStride).
 * `scratch`: a*Wp floats of strip plus a*a vectors.
 */
export function winoInput(x: usize, V: usize, m: i32, C: i32, H: i32, W: i32, pt: i32, pl: i32, TH: i32, TW: i32,
  R0: i32, R1: i32, per: i32, cs: i32, xs: i32, counter: usize, scratch: usize): void {
  const nr = R1 - R0;
  const groups = (nr + per - 1) / per;
  const jobs = C * groups;
  const step = claimSize(jobs);
  for (;;) {
    const j0 = atomic.add<i32>(counter, step);
    if (j0 >= jobs) break;
    for (let j = j0, j1 = min(jobs, j0 + step); j < j1; j++) {
      const c = j / groups, g = j - c * groups;
      const Rg = R0 + g * per, Rend = min(R1, Rg + per);
      for (let R = Rg; R < Rend; R++) inputTileRow(x, V, m, C, H, W, pt, pl, TH, TW, c, R, R0, cs, xs, scratch);
    }
  }
}

/** The data transform of channel c's tile row R into V (tile index counted from tile row R0). */
function inputTileRow(x: usize, V: usize, m: i32, C: i32, H: i32, W: i32, pt: i32, pl: i32, TH: i32, TW: i32,
  c: i32, R: i32, R0: i32, cs: i32, xs: i32, scratch: usize): void {
  const a = m + 2;
  const TW4 = (TW + 3) & ~3;
  const Wp = TW4 * m + 8;
  const tmp = scratch + (<usize>(a * Wp) << 2);
  const rowB = <usize>Wp << 2;
  const sx = <usize>xs << 2; // xi stride, bytes
  const n = R / TH, th = R - n * TH;
  strip(x + (<usize>((n * C + c) * H * W) << 2), H, W, pt, pl, th * m, a, scratch, Wp);
  const vrow = V + (<usize>(c * cs + (R - R0) * TW) << 2);
  for (let tw = 0; tw < TW; tw += 4) {
    const lanes = min(4, TW - tw);
    // Rows: tmp[r][j] = (Bt d[r][.])[j], four tiles per vector.
    for (let r = 0; r < a; r++) {
      const p = scratch + <usize>r * rowB + (<usize>(tw * m) << 2);
      const t = tmp + (<usize>(r * a) << 4);
      if (m == 2) {
        const l0 = v128.load(p), l1 = v128.load(p, 16), l2 = v128.load(p, 8), l3 = v128.load(p, 24);
        bt2(v128.shuffle<f32>(l0, l1, 0, 2, 4, 6), v128.shuffle<f32>(l0, l1, 1, 3, 5, 7),
          v128.shuffle<f32>(l2, l3, 0, 2, 4, 6), v128.shuffle<f32>(l2, l3, 1, 3, 5, 7), t, 16, 4);
      } else {
        const l0 = v128.load(p), l1 = v128.load(p, 16), l2 = v128.load(p, 32), l3 = v128.load(p, 48), l4 = v128.load(p, 64);
        bt4(tcol(l0, l1, l2, l3, 0), tcol(l0, l1, l2, l3, 1), tcol(l0, l1, l2, l3, 2), tcol(l0, l1, l2, l3, 3),
          tcol(l1, l2, l3, l4, 0), tcol(l1, l2, l3, l4, 1), t, 16, 4);
      }
    }
    // Columns: V[i*a + j] = (Bt tmp[.][j])[i].
    const out = vrow + (<usize>tw << 2);
    for (let jj = 0; jj < a; jj++) {
      const t = tmp + (<usize>jj << 4);
      const o = out + <usize>jj * sx;
      const rs: usize = <usize>a << 4;
      if (m == 2) {
        bt2(v128.load(t), v128.load(t + rs), v128.load(t + 2 * rs), v128.load(t + 3 * rs), o, 4 * sx, lanes);
      } else {
        bt4(v128.load(t), v128.load(t + rs), v128.load(t + 2 * rs), v128.load(t + 3 * rs), v128.load(t + 4 * rs),
          v128.load(t + 5 * rs), o, 6 * sx, lanes);
      }
    }
  }
}

/**
 * Output transform: y[n, o] rows of tile rows [R0, R1) from M[xi][o][t] (channel and xi
 * strides cs and xs, elements), plus bias[o] when bias != 0. Jobs (o, tile row) from
 * `counter`. `scratch`: a*a vectors plus m rows of TW4*m floats. M must be readable 3 floats
 * past its end.
 */
export function winoOutput(M: usize, y: usize, bias: usize, m: i32, O: i32, OH: i32, OW: i32, TH: i32, TW: i32,
  R0: i32, R1: i32, cs: i32, xs: i32, counter: usize, scratch: usize): void {
  const nr = R1 - R0;
  const jobs = O * nr;
  const step = claimSize(jobs);
  for (;;) {
    const j0 = atomic.add<i32>(counter, step);
    if (j0 >= jobs) break;
    for (let j = j0, j1 = min(jobs, j0 + step); j < j1; j++) {
      const o = j / nr;
      outputTileRow(M, y, bias, m, O, OH, OW, TH, TW, o, R0 + j - o * nr, R0, cs, xs, scratch);
    }
  }
}

/** The output transform of channel o's tile row R from M (tile index counted from tile row R0), plus bias[o]. */
function outputTileRow(M: usize, y: usize, bias: usize, m: i32, O: i32, OH: i32, OW: i32, TH: i32, TW: i32,
  o: i32, R: i32, R0: i32, cs: i32, xs: i32, scratch: usize): void {
  const a = m + 2;
  const TW4 = (TW + 3) & ~3;
  const RW = TW4 * m;
  const rows = scratch + (<usize>(a * a) << 4);
  const sx = <usize>xs << 2;
  const n = R / TH, th = R - n * TH;
  const mrow = M + (<usize>(o * cs + (R - R0) * TW) << 2);
  for (let tw = 0; tw < TW; tw += 4) {
    const src = mrow + (<usize>tw << 2);
    // Columns: tmp[k][jj] = (At M[.][jj])[k].
    for (let jj = 0; jj < a; jj++) {
      const p = src + <usize>jj * sx, s = <usize>a * sx;
      const t = scratch + (<usize>jj << 4), ts: usize = <usize>a << 4;
      const m0 = v128.load(p), m1 = v128.load(p + s), m2 = v128.load(p + 2 * s), m3 = v128.load(p + 3 * s);
      if (m == 2) {
        v128.store(t, f32x4.add(f32x4.add(m0, m1), m2));
        v128.store(t + ts, f32x4.sub(f32x4.sub(m1, m2), m3));
      } else {
        const m4 = v128.load(p + 4 * s), m5 = v128.load(p + 5 * s);
        const d12 = f32x4.sub(m1, m2), s12 = f32x4.add(m1, m2), d34 = f32x4.sub(m3, m4), s34 = f32x4.add(m3, m4);
        v128.store(t, f32x4.add(f32x4.add(m0, s12), s34));
        v128.store(t + ts, f32x4.add(d12, f32x4.mul(f32x4.splat(2), d34)));
        v128.store(t + 2 * ts, f32x4.add(s12, f32x4.mul(f32x4.splat(4), s34)));
        v128.store(t + 3 * ts, f32x4.add(f32x4.add(d12, f32x4.mul(f32x4.splat(8), d34)), m5));
      }
    }
    // Rows: y[k][l] = (At tmp[k][.])[l], four tiles interleaved into the output rows.
    for (let k = 0; k < m; k++) {
      const t = scratch + (<usize>(k * a) << 4);
      const dst = rows + (<usize>(k * RW + tw * m) << 2);
      const m0 = v128.load(t), m1 = v128.load(t, 16), m2 = v128.load(t, 32), m3 = v128.load(t, 48);
      if (m == 2) {
        const y0 = f32x4.add(f32x4.add(m0, m1), m2), y1 = f32x4.sub(f32x4.sub(m1, m2), m3);
        v128.store(dst, v128.shuffle<f32>(y0, y1, 0, 4, 1, 5));
        v128.store(dst, v128.shuffle<f32>(y0, y1, 2, 6, 3, 7), 16);
      } else {
        const m4 = v128.load(t, 64), m5 = v128.load(t, 80);
        const d12 = f32x4.sub(m1, m2), s12 = f32x4.add(m1, m2), d34 = f32x4.sub(m3, m4), s34 = f32x4.add(m3, m4);
        const y0 = f32x4.add(f32x4.add(m0, s12), s34);
        const y1 = f32x4.add(d12, f32x4.mul(f32x4.splat(2), d34));
        const y2 = f32x4.add(s12, f32x4.mul(f32x4.splat(4), s34));
        const y3 = f32x4.add(f32x4.add(d12, f32x4.mul(f32x4.splat(8), d34)), m5);
        v128.store(dst, tcol(y0, y1, y2, y3, 0));
        v128.store(dst, tcol(y0, y1, y2, y3, 1), 16);
        v128.store(dst, tcol(y0, y1, y2, y3, 2), 32);
        v128.store(dst, tcol(y0, y1, y2, y3, 3), 48);
      }
    }
  }
  // The tile row's valid outputs, plus bias.
  const bv: f32 = bias != 0 ? load<f32>(bias + (<usize>o << 2)) : 0;
  const bb = f32x4.splat(bv);
  const k1 = min(m, OH - th * m);
  for (let k = 0; k < k1; k++) {
    const s = rows + (<usize>(k * RW) << 2);
    const d = y + (<usize>(((n * O + o) * OH + th * m + k) * OW) << 2);
    let q = 0;
    for (; q + 4 <= OW; q += 4) v128.store(d + (<usize>q << 2), f32x4.add(v128.load(s + (<usize>q << 2)), bb));
    for (; q < OW; q++) store<f32>(d + (<usize>q << 2), load<f32>(s + (<usize>q << 2)) + bv);
  }
}

/**
 * The output gradient's transform for the weight gradient: Z[xi][o][t] = (At^T dY_t At)[xi],
 * dY_t the m x m tile of dy [N, O, OH, OW] (zero past its edges). Jobs (o, `per` tile rows) from
 * `counter`; cs and xs are Z's channel and xi strides in elements. `scratch`: m*Wp floats plus
 * a*a vectors.
 */
export function winoGradOut(dy: usize, Z: usize, m: i32, O: i32, OH: i32, OW: i32, TH: i32, TW: i32,
  R0: i32, R1: i32, per: i32, cs: i32, xs: i32, counter: usize, scratch: usize): void {
  const nr = R1 - R0;
  const groups = (nr + per - 1) / per;
  const jobs = O * groups;
  const step = claimSize(jobs);
  for (;;) {
    const j0 = atomic.add<i32>(counter, step);
    if (j0 >= jobs) break;
    for (let j = j0, j1 = min(jobs, j0 + step); j < j1; j++) {
      const o = j / groups, g = j - o * groups;
      const Rg = R0 + g * per, Rend = min(R1, Rg + per);
      for (let R = Rg; R < Rend; R++) gradOutTileRow(dy, Z, m, O, OH, OW, TH, TW, o, R, R0, cs, xs, scratch);
    }
  }
}

/** The output gradient's transform of channel o's tile row R into Z (tile index counted from tile row R0). */
function gradOutTileRow(dy: usize, Z: usize, m: i32, O: i32, OH: i32, OW: i32, TH: i32, TW: i32,
  o: i32, R: i32, R0: i32, cs: i32, xs: i32, scratch: usize): void {
  const a = m + 2;
  const TW4 = (TW + 3) & ~3;
  const Wp = TW4 * m + 8;
  const tmp = scratch + (<usize>(m * Wp) << 2);
  const rowB = <usize>Wp << 2;
  const sx = <usize>xs << 2;
  const n = R / TH, th = R - n * TH;
  strip(dy + (<usize>((n * O + o) * OH * OW) << 2), OH, OW, 0, 0, th * m, m, scratch, Wp);
  const zrow = Z + (<usize>(o * cs + (R - R0) * TW) << 2);
  for (let tw = 0; tw < TW; tw += 4) {
    const lanes = min(4, TW - tw);
    // Rows: tmp[k][jj] = (At^T dY[k][.])[jj].
    for (let k = 0; k < m; k++) {
      const p = scratch + <usize>k * rowB + (<usize>(tw * m) << 2);
      const t = tmp + (<usize>(k * a) << 4);
      if (m == 2) {
        const l0 = v128.load(p), l1 = v128.load(p, 16);
        const y0 = v128.shuffle<f32>(l0, l1, 0, 2, 4, 6), y1 = v128.shuffle<f32>(l0, l1, 1, 3, 5, 7);
        atT2(y0, y1, t, 16, 4);
      } else {
        const l0 = v128.load(p), l1 = v128.load(p, 16), l2 = v128.load(p, 32), l3 = v128.load(p, 48);
        atT4(tcol(l0, l1, l2, l3, 0), tcol(l0, l1, l2, l3, 1), tcol(l0, l1, l2, l3, 2), tcol(l0, l1, l2, l3, 3), t, 16, 4);
      }
    }
    // Columns: Z[i*a + jj] = (At^T tmp[.][jj])[i].
    const out = zrow + (<usize>tw << 2);
    const rs: usize = <usize>a << 4;
    for (let jj = 0; jj < a; jj++) {
      const t = tmp + (<usize>jj << 4);
      const o2 = out + <usize>jj * sx;
      if (m == 2) atT2(v128.load(t), v128.load(t + rs), o2, <usize>a * sx, lanes);
      else atT4(v128.load(t), v128.load(t + rs), v128.load(t + 2 * rs), v128.load(t + 3 * rs), o2, <usize>a * sx, lanes);
    }
  }
}

/** At^T y for F(2,3): [y0, y0 + y1, y0 - y1, -y1]. */
@inline function atT2(y0: v128, y1: v128, out: usize, s: usize, n: i32): void {
  storeLanes(out, y0, n);
  storeLanes(out + s, f32x4.add(y0, y1), n);
  storeLanes(out + 2 * s, f32x4.sub(y0, y1), n);
  storeLanes(out + 3 * s, f32x4.neg(y1), n);
}

/** At^T y for F(4,3): [y0, y0+y1+y2+y3, y0-y1+y2-y3, y0+2y1+4y2+8y3, y0-2y1+4y2-8y3, y3]. */
@inline function atT4(y0: v128, y1: v128, y2: v128, y3: v128, out: usize, s: usize, n: i32): void {
  const e = f32x4.add(y0, y2), od = f32x4.add(y1, y3);
  const e4 = f32x4.add(y0, f32x4.mul(f32x4.splat(4), y2)), o8 = f32x4.add(f32x4.mul(f32x4.splat(2), y1), f32x4.mul(f32x4.splat(8), y3));
  storeLanes(out, y0, n);
  storeLanes(out + s, f32x4.add(e, od), n);
  storeLanes(out + 2 * s, f32x4.sub(e, od), n);
  storeLanes(out + 3 * s, f32x4.add(e4, o8), n);
  storeLanes(out + 4 * s, f32x4.sub(e4, o8), n);
  storeLanes(out + 5 * s, y3, n);
}

/**
 * The forward (and the data gradient) as one pipeline per chunk of tile rows: a thread takes a
 * chunk from `counter` and runs its data transform, its a*a GEMMs and its output transform by
 * itself, in its own V and M (sized by the host to stay in that core's cache), so the transformed
 * data does not go out to memory and back, and threads do not wait for each other between phases.
 * Each tile's arithmetic is the same in any chunk and on any thread. desc: this thread's GEMM
 * descriptor (A = U, B = its V, C = its M, row strides cs); offsets: the a*a batches' byte
 * offsets; vs and ms: V's and M's xi strides (elements); scratch: as winoInput's and winoOutput's.
 */
export function winoPipeline(x: usize, y: usize, bias: usize, desc: usize, offsets: usize, m: i32, Cin: i32, Cout: i32,
  H: i32, W: i32, pt: i32, pl: i32, OH: i32, OW: i32, TH: i32, TW: i32, rows: i32, chunkRows: i32,
  cs: i32, vs: i32, ms: i32, counter: usize, V: usize, M: usize, scratch: usize, bufA: usize, bufB: usize): void {
  const a = m + 2;
  const chunks = (rows + chunkRows - 1) / chunkRows;
  for (;;) {
    const k = atomic.add<i32>(counter, 1);
    if (k >= chunks) break;
    const R0 = k * chunkRows, R1 = min(rows, R0 + chunkRows);
    for (let c = 0; c < Cin; c++) {
      for (let R = R0; R < R1; R++) inputTileRow(x, V, m, Cin, H, W, pt, pl, TH, TW, c, R, R0, cs, vs, scratch);
    }
    gemm(desc, offsets, 0, a * a, 0, Cout, 0, (R1 - R0) * TW, bufA, bufB);
    for (let o = 0; o < Cout; o++) {
      for (let R = R0; R < R1; R++) outputTileRow(M, y, bias, m, Cout, OH, OW, TH, TW, o, R, R0, cs, ms, scratch);
    }
  }
}

