// Register-blocked, cache-tiled GEMM (GotoBLAS loop order) with pluggable operand packing,
// so that convolution and its gradients run as implicit GEMMs: the packing routines gather
// one KC x NC block of the virtual im2col matrix at a time, never the whole of it.
//
// C[M,N] (+)= A[M,K] . B[K,N]. A is packed into MR-row panels (k-major, MR floats per k),
// B into NR-column panels (NR floats per k). The 2x16 micro-kernel keeps 8 f32x4
// accumulators in registers (measured under V8: 2x16 runs ~1.6x faster than 4x8, which
// needs twice the splat loads of A per k; tiles with more accumulators, or an unrolled k loop,
// spill). The descriptor (i32 fields, see DESC_* below) is written by the host; `gemm` runs a
// range of batches over a rectangle [i0,i1) x [j0,j1) of C, and `gemmTiles` lets the threads
// take such rectangles from a shared counter.

import { madd } from './vmath';

export const MR = 2;
export const NR = 16;
export const KC = 256;
export const MC = 128;
export const NC = 1024;

// Descriptor fields (i32 index).
const D_M = 0, D_N = 1, D_K = 2;
const D_A = 3, D_SAM = 4, D_SAK = 5;
const D_BKIND = 6, D_B = 7, D_SBK = 8, D_SBN = 9;
const D_C = 10, D_LDC = 11, D_ACCUMULATE = 12, D_BIAS = 13;
// Convolution geometry (for the conv packing kinds).
const D_CC = 14, D_H = 15, D_W = 16, D_KH = 17, D_KW = 18, D_SH = 19, D_SW = 20, D_PT = 21, D_PL = 22, D_OH = 23, D_OW = 24, D_OC = 25;
/** 1: batches after the first accumulate into the same C (a sum over batches). */
const D_REDUCE_BATCHES = 26;

// Operand kinds of B (A is always a strided matrix).
const B_MATRIX = 0, B_IM2COL = 1, B_CONV_DY = 2, B_IM2COL_T = 3;

@inline function di(desc: usize, f: i32): i32 { return load<i32>(desc + (<usize>f << 2)); }

/** Packs A[i0:i0+mc, k0:k0+kc] (a matrix with strides sAm, sAk) into MR-row panels, zero-padding rows past mc. */
function packA(desc: usize, a: usize, dst: usize, i0: i32, mc: i32, k0: i32, kc: i32): void {
  const sm = di(desc, D_SAM), sk = di(desc, D_SAK);
  for (let ip = 0; ip < mc; ip += MR) {
    const rows = min(MR, mc - ip);
    const panel = dst + (<usize>(ip * kc) << 2);
    if (rows == MR && sk == 1) {
      // Two row streams, interleaved: [r0[k], r1[k]] per k.
      const r0 = a + (<usize>((i0 + ip) * sm + k0) << 2);
      const r1 = r0 + (<usize>sm << 2);
      let k = 0;
      for (; k + 4 <= kc; k += 4) {
        const o = <usize>k << 2;
        const x0 = v128.load(r0 + o), x1 = v128.load(r1 + o);
        const p = panel + (<usize>k << 3);
        v128.store(p, v128.shuffle<i32>(x0, x1, 0, 4, 1, 5));
        v128.store(p, v128.shuffle<i32>(x0, x1, 2, 6, 3, 7), 16);
      }
      for (; k < kc; k++) {
        const o = <usize>k << 2, p = panel + (<usize>k << 3);
        store<f32>(p, load<f32>(r0 + o));
        store<f32>(p, load<f32>(r1 + o), 4);
      }
    } else if (rows == MR && sm == 1) {
      // Transposed A: the MR floats of one k are contiguous.
      for (let k = 0; k < kc; k++) {
        store<u64>(panel + (<usize>k << 3), load<u64>(a + (<usize>((k0 + k) * sk + i0 + ip) << 2)));
      }
    } else {
      for (let k = 0; k < kc; k++) {
        for (let r = 0; r < MR; r++) {
          const v: f32 = r < rows ? load<f32>(a + (<usize>((i0 + ip + r) * sm + (k0 + k) * sk) << 2)) : 0;
          store<f32>(panel + (<usize>(k * MR + r) << 2), v);
        }
      }
    }
  }
}

/** Packs B[k0:k0+kc, j0:j0+nc] into NR-column panels, zero-padding columns past nc. */
function packB(desc: usize, b: usize, dst: usize, k0: i32, kc: i32, j0: i32, nc: i32): void {
  const kind = di(desc, D_BKIND);
  if (kind == B_MATRIX) {
    const sk = di(desc, D_SBK), sn = di(desc, D_SBN);
    for (let jp = 0; jp < nc; jp += NR) {
      const cols = min(NR, nc - jp);
      const panel = dst + (<usize>(jp * kc) << 2);
      if (cols == NR && sn == 1) {
        let src = b + (<usize>(k0 * sk + j0 + jp) << 2);
        const step = <usize>sk << 2;
        for (let k = 0; k < kc; k++) {
          const p = panel + (<usize>k << 6);
          v128.store(p, v128.load(src));
          v128.store(p, v128.load(src, 16), 16);
          v128.store(p, v128.load(src, 32), 32);
          v128.store(p, v128.load(src, 48), 48);
          src += step;
        }
      } else if (cols == NR && sk == 1) {
        // Transposed B: each column is contiguous along k. 4 columns x 4 k at a time, transposed
        // in registers (the Winograd weight gradient's V^T operand, matmuls with transB).
        const c0 = b + (<usize>((j0 + jp) * sn + k0) << 2);
        const s = <usize>sn << 2;
        const k4 = kc & ~3;
        for (let q = 0; q < NR; q += 4) {
          const cq = c0 + <usize>q * s;
          for (let k = 0; k < k4; k += 4) {
            const src = cq + (<usize>k << 2);
            const x0 = v128.load(src), x1 = v128.load(src + s), x2 = v128.load(src + 2 * s), x3 = v128.load(src + 3 * s);
            const t0 = v128.shuffle<f32>(x0, x1, 0, 4, 1, 5), t1 = v128.shuffle<f32>(x2, x3, 0, 4, 1, 5);
            const t2 = v128.shuffle<f32>(x0, x1, 2, 6, 3, 7), t3 = v128.shuffle<f32>(x2, x3, 2, 6, 3, 7);
            const p = panel + (<usize>k << 6) + (<usize>q << 2);
            v128.store(p, v128.shuffle<f32>(t0, t1, 0, 1, 4, 5));
            v128.store(p + 64, v128.shuffle<f32>(t0, t1, 2, 3, 6, 7));
            v128.store(p + 128, v128.shuffle<f32>(t2, t3, 0, 1, 4, 5));
            v128.store(p + 192, v128.shuffle<f32>(t2, t3, 2, 3, 6, 7));
          }
        }
        for (let k = k4; k < kc; k++) {
          const p = panel + (<usize>k << 6);
          let c = c0 + (<usize>k << 2);
          for (let q = 0; q < NR; q++) {
            store<f32>(p + (<usize>q << 2), load<f32>(c));
            c += s;
          }
        }
      } else {
        for (let k = 0; k < kc; k++) {
          for (let q = 0; q < NR; q++) {
            const v: f32 = q < cols ? load<f32>(b + (<usize>((k0 + k) * sk + (j0 + jp + q) * sn) << 2)) : 0;
            store<f32>(panel + (<usize>(k * NR + q) << 2), v);
          }
        }
      }
    }
  } else if (kind == B_IM2COL) {
    packIm2col(desc, b, dst, k0, kc, j0, nc);
  } else if (kind == B_CONV_DY) {
    packConvDy(desc, b, dst, k0, kc, j0, nc);
  } else {
    packIm2colT(desc, b, dst, k0, kc, j0, nc);
  }
}

/** B[(c,kh,kw), (oh,ow)] = x[c, oh*sh-pt+kh, ow*sw-pl+kw] (0 in the padding). */
function packIm2col(desc: usize, x: usize, dst: usize, k0: i32, kc: i32, j0: i32, nc: i32): void {
  for (let jp = 0; jp < nc; jp += NR) {
    const cols = min(NR, nc - jp);
    const panel = dst + (<usize>(jp * kc) << 2);
    // Two segments of 8 columns each (8 output pixels along one row: a vector copy).
    for (let h = 0; h < NR; h += 8) im2colSegment(desc, x, panel + (<usize>h << 2), k0, kc, j0 + jp + h, min(8, cols - h));
  }
}

/** Columns [p0, p0 + n) (n <= 8; zeros for the rest of the 8) of the im2col block, NR floats per k row. */
function im2colSegment(desc: usize, x: usize, dst: usize, k0: i32, kc: i32, p0: i32, n: i32): void {
  const H = di(desc, D_H), W = di(desc, D_W), KH = di(desc, D_KH), KW = di(desc, D_KW);
  const sh = di(desc, D_SH), sw = di(desc, D_SW), pt = di(desc, D_PT), pl = di(desc, D_PL), OW = di(desc, D_OW);
  const KK = KH * KW;
  const oh0 = p0 / OW, ow0 = p0 - oh0 * OW;
  const sameRow = n == 8 && ow0 + 8 <= OW;
  let c = k0 / KK, r = k0 - c * KK;
  let kh = r / KW, kw = r - kh * KW;
  for (let k = 0; k < kc; k++) {
    const p = dst + (<usize>(k * NR) << 2);
    const plane = x + (<usize>(c * H * W) << 2);
    if (sameRow) {
      const ih = oh0 * sh - pt + kh, iw0 = ow0 * sw - pl + kw;
      if (ih < 0 || ih >= H) {
        v128.store(p, i32x4.splat(0));
        v128.store(p, i32x4.splat(0), 16);
      } else if (sw == 1 && iw0 >= 0 && iw0 + 8 <= W) {
        const src = plane + (<usize>(ih * W + iw0) << 2);
        v128.store(p, v128.load(src));
        v128.store(p, v128.load(src, 16), 16);
      } else {
        const row = plane + (<usize>(ih * W) << 2);
        for (let q = 0; q < 8; q++) {
          const iw = iw0 + q * sw;
          store<f32>(p + (<usize>q << 2), iw >= 0 && iw < W ? load<f32>(row + (<usize>iw << 2)) : 0);
        }
      }
    } else {
      let oh = oh0, ow = ow0;
      for (let q = 0; q < 8; q++) {
        let v: f32 = 0;
        if (q < n) {
          const ih = oh * sh - pt + kh, iw = ow * sw - pl + kw;
          if (ih >= 0 && ih < H && iw >= 0 && iw < W) v = load<f32>(plane + (<usize>(ih * W + iw) << 2));
        }
        store<f32>(p + (<usize>q << 2), v);
        if (++ow == OW) { ow = 0; oh++; }
      }
    }
    if (++kw == KW) { kw = 0; if (++kh == KH) { kh = 0; c++; } }
  }
}

/**
 * B[(o,kh,kw), (ih,iw)] = dy[o, (ih+pt-kh)/sh, (iw+pl-kw)/sw] where that divides exactly and
 * lies inside dy, else 0: the data gradient as a GEMM over the output pixels of dx.
 */
function packConvDy(desc: usize, dy: usize, dst: usize, k0: i32, kc: i32, j0: i32, nc: i32): void {
  for (let jp = 0; jp < nc; jp += NR) {
    const cols = min(NR, nc - jp);
    const panel = dst + (<usize>(jp * kc) << 2);
    for (let h = 0; h < NR; h += 8) convDySegment(desc, dy, panel + (<usize>h << 2), k0, kc, j0 + jp + h, min(8, cols - h));
  }
}

/** Columns [p0, p0 + n) (n <= 8; zeros for the rest of the 8) of packConvDy's block, NR floats per k row. */
function convDySegment(desc: usize, dy: usize, dst: usize, k0: i32, kc: i32, p0: i32, n: i32): void {
  const H = di(desc, D_H), W = di(desc, D_W), KH = di(desc, D_KH), KW = di(desc, D_KW);
  const sh = di(desc, D_SH), sw = di(desc, D_SW), pt = di(desc, D_PT), pl = di(desc, D_PL);
  const OH = di(desc, D_OH), OW = di(desc, D_OW);
  const KK = KH * KW;
  const ih0 = p0 / W, iw0 = p0 - ih0 * W;
  const sameRow = n == 8 && iw0 + 8 <= W && sw == 1;
  let o = k0 / KK, r = k0 - o * KK;
  let kh = r / KW, kw = r - kh * KW;
  for (let k = 0; k < kc; k++) {
    const p = dst + (<usize>(k * NR) << 2);
    const plane = dy + (<usize>(o * OH * OW) << 2);
    const th = ih0 + pt - kh;
    const ohv = th >= 0 && th % sh == 0 ? th / sh : -1;
    if (sameRow) {
      const ow0 = iw0 + pl - kw; // stride 1 along w
      if (ohv < 0 || ohv >= OH) {
        v128.store(p, i32x4.splat(0));
        v128.store(p, i32x4.splat(0), 16);
      } else if (ow0 >= 0 && ow0 + 8 <= OW) {
        const src = plane + (<usize>(ohv * OW + ow0) << 2);
        v128.store(p, v128.load(src));
        v128.store(p, v128.load(src, 16), 16);
      } else {
        const row = plane + (<usize>(ohv * OW) << 2);
        for (let q = 0; q < 8; q++) {
          const ow = ow0 + q;
          store<f32>(p + (<usize>q << 2), ow >= 0 && ow < OW ? load<f32>(row + (<usize>ow << 2)) : 0);
        }
      }
    } else {
      let ih = ih0, iw = iw0;
      for (let q = 0; q < 8; q++) {
        let v: f32 = 0;
        if (q < n) {
          const a = ih + pt - kh, b = iw + pl - kw;
          if (a >= 0 && b >= 0 && a % sh == 0 && b % sw == 0) {
            const oh = a / sh, ow = b / sw;
            if (oh < OH && ow < OW) v = load<f32>(plane + (<usize>(oh * OW + ow) << 2));
          }
        }
        store<f32>(p + (<usize>q << 2), v);
        if (++iw == W) { iw = 0; ih++; }
      }
    }
    if (++kw == KW) { kw = 0; if (++kh == KH) { kh = 0; o++; } }
  }
}

/**
 * B[(oh,ow), (c,kh,kw)] = x[c, oh*sh-pt+kh, ow*sw-pl+kw]: the weight gradient's operand.
 * Column by column, along runs of one output row: the bounds are worked out once per run, so
 * the inner loops are plain strided copies and zero fills.
 */
function packIm2colT(desc: usize, x: usize, dst: usize, k0: i32, kc: i32, j0: i32, nc: i32): void {
  const H = di(desc, D_H), W = di(desc, D_W), KH = di(desc, D_KH), KW = di(desc, D_KW);
  const sh = di(desc, D_SH), sw = di(desc, D_SW), pt = di(desc, D_PT), pl = di(desc, D_PL), OW = di(desc, D_OW);
  const KK = KH * KW;
  const rowStep: usize = <usize>NR << 2;
  const oh0 = k0 / OW, ow0 = k0 - oh0 * OW;
  for (let jp = 0; jp < nc; jp += NR) {
    const cols = min(NR, nc - jp);
    const panel = dst + (<usize>(jp * kc) << 2);
    const q0 = j0 + jp;
    let c = q0 / KK, r = q0 - c * KK;
    let kh = r / KW, kw = r - kh * KW;
    for (let q = 0; q < NR; q++) {
      let p = panel + (<usize>q << 2);
      if (q >= cols) {
        for (let k = 0; k < kc; k++, p += rowStep) store<f32>(p, 0);
        continue;
      }
      const plane = x + (<usize>(c * H * W) << 2);
      // Output columns ow whose input column iw = ow*sw - pl + kw lies in [0, W).
      const owLo = max(0, (pl - kw + sw - 1) / sw), owHi = min(OW, (W + pl - kw + sw - 1) / sw);
      let k = 0, oh = oh0, ow = ow0;
      while (k < kc) {
        const runEnd = min(OW, ow + kc - k);
        k += runEnd - ow;
        const ih = oh * sh - pt + kh;
        if (ih < 0 || ih >= H) {
          for (; ow < runEnd; ow++, p += rowStep) store<f32>(p, 0);
        } else {
          const lo = min(max(ow, owLo), runEnd), hi = max(min(runEnd, owHi), lo);
          for (; ow < lo; ow++, p += rowStep) store<f32>(p, 0);
          let src = plane + (<usize>(ih * W + ow * sw - pl + kw) << 2);
          const srcStep: usize = <usize>sw << 2;
          for (; ow < hi; ow++, p += rowStep, src += srcStep) store<f32>(p, load<f32>(src));
          for (; ow < runEnd; ow++, p += rowStep) store<f32>(p, 0);
        }
        ow = 0;
        oh++;
      }
      if (++kw == KW) { kw = 0; if (++kh == KH) { kh = 0; c++; } }
    }
  }
}

/**
 * The 2x16 micro-kernel: acc = pa[kc x 2]^T . pb[kc x 16]; then C tile = acc (+ C if add).
 * Full tiles go straight to C; edge tiles (mr < 2 or nr < 16) through `tmp`.
 */
@inline function microKernel(kc: i32, pa: usize, pb: usize, c: usize, ldc: i32, mr: i32, nr: i32, add: bool, tmp: usize): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c02 = f32x4.splat(0), c03 = f32x4.splat(0);
  let c10 = f32x4.splat(0), c11 = f32x4.splat(0), c12 = f32x4.splat(0), c13 = f32x4.splat(0);
  for (let k = 0; k < kc; k++) {
    const b0 = v128.load(pb), b1 = v128.load(pb, 16), b2 = v128.load(pb, 32), b3 = v128.load(pb, 48);
    let a = v128.load32_splat(pa);
    c00 = madd(a, b0, c00); c01 = madd(a, b1, c01);
    c02 = madd(a, b2, c02); c03 = madd(a, b3, c03);
    a = v128.load32_splat(pa, 4);
    c10 = madd(a, b0, c10); c11 = madd(a, b1, c11);
    c12 = madd(a, b2, c12); c13 = madd(a, b3, c13);
    pa += 8; pb += 64;
  }
  const full = mr == MR && nr == NR;
  const dst = full ? c : tmp;
  const ld: usize = full ? <usize>ldc << 2 : <usize>NR << 2;
  if (full && add) {
    let r = dst;
    v128.store(r, f32x4.add(v128.load(r), c00)); v128.store(r, f32x4.add(v128.load(r, 16), c01), 16);
    v128.store(r, f32x4.add(v128.load(r, 32), c02), 32); v128.store(r, f32x4.add(v128.load(r, 48), c03), 48);
    r += ld;
    v128.store(r, f32x4.add(v128.load(r), c10)); v128.store(r, f32x4.add(v128.load(r, 16), c11), 16);
    v128.store(r, f32x4.add(v128.load(r, 32), c12), 32); v128.store(r, f32x4.add(v128.load(r, 48), c13), 48);
  } else {
    let r = dst;
    v128.store(r, c00); v128.store(r, c01, 16); v128.store(r, c02, 32); v128.store(r, c03, 48);
    r += ld;
    v128.store(r, c10); v128.store(r, c11, 16); v128.store(r, c12, 32); v128.store(r, c13, 48);
  }
  if (!full) {
    for (let i = 0; i < mr; i++) {
      const crow = c + (<usize>(i * ldc) << 2), trow = tmp + (<usize>(i * NR) << 2);
      for (let j = 0; j < nr; j++) {
        const v = load<f32>(trow + (<usize>j << 2));
        const o = crow + (<usize>j << 2);
        store<f32>(o, add ? load<f32>(o) + v : v);
      }
    }
  }
}

/** Adds bias[i] to every element of C rows [i0, i1) and columns [j0, j1). */
function addRowBias(c: usize, ldc: i32, bias: usize, i0: i32, i1: i32, j0: i32, j1: i32): void {
  for (let i = i0; i < i1; i++) {
    const v = load<f32>(bias + (<usize>i << 2));
    const vv = f32x4.splat(v);
    const row = c + (<usize>(i * ldc) << 2);
    let j = j0;
    for (; j + 4 <= j1; j += 4) { const o = row + (<usize>j << 2); v128.store(o, f32x4.add(v128.load(o), vv)); }
    for (; j < j1; j++) { const o = row + (<usize>j << 2); store<f32>(o, load<f32>(o) + v); }
  }
}

/**
 * Runs batches [b0, b1) over the rectangle [i0,i1) x [j0,j1) of C. `offsets` holds, per
 * batch, three u32 byte offsets added to A, B and C. packA needs MC*KC floats, packB
 * NC*KC floats + 32 floats of edge scratch.
 */
export function gemm(desc: usize, offsets: usize, b0: i32, b1: i32, i0: i32, i1: i32, j0: i32, j1: i32, bufA: usize, bufB: usize): void {
  const K = di(desc, D_K);
  const ldc = di(desc, D_LDC);
  const accumulate = di(desc, D_ACCUMULATE) != 0;
  const reduceBatches = di(desc, D_REDUCE_BATCHES) != 0;
  const bias = <usize>di(desc, D_BIAS);
  const tmp = bufB + (<usize>(NC * KC) << 2);
  for (let bt = b0; bt < b1; bt++) {
    const off = offsets + <usize>(bt * 12);
    const a = <usize>di(desc, D_A) + <usize>load<u32>(off);
    const b = <usize>di(desc, D_B) + <usize>load<u32>(off, 4);
    const c = <usize>di(desc, D_C) + <usize>load<u32>(off, 8);
    const addFirst = accumulate || (reduceBatches && bt > b0);
    if (K == 0) {
      // Empty reduction: C = 0 (or unchanged when accumulating), plus bias.
      if (!addFirst) for (let i = i0; i < i1; i++) memory.fill(c + (<usize>(i * ldc + j0) << 2), 0, <usize>(j1 - j0) << 2);
    }
    for (let jc = j0; jc < j1; jc += NC) {
      const nc = min(NC, j1 - jc);
      for (let pc = 0; pc < K; pc += KC) {
        const kc = min(KC, K - pc);
        packB(desc, b, bufB, pc, kc, jc, nc);
        const add = addFirst || pc > 0;
        for (let ic = i0; ic < i1; ic += MC) {
          const mc = min(MC, i1 - ic);
          packA(desc, a, bufA, ic, mc, pc, kc);
          for (let jr = 0; jr < nc; jr += NR) {
            const nr = min(NR, nc - jr);
            const pb = bufB + (<usize>(jr * kc) << 2);
            for (let ir = 0; ir < mc; ir += MR) {
              const mr = min(MR, mc - ir);
              const ct = c + (<usize>((ic + ir) * ldc + jc + jr) << 2);
              microKernel(kc, bufA + (<usize>(ir * kc) << 2), pb, ct, ldc, mr, nr, add, tmp);
            }
          }
        }
      }
    }
    if (bias != 0 && !(reduceBatches && bt > b0)) addRowBias(c, ldc, bias, i0, i1, j0, j1);
  }
}

/**
 * Dynamic scheduling: the threads take tiles of C from a shared counter (an i32 at `counter`,
 * zero before the call) until none is left, so a thread that the OS delays takes fewer. Tile u
 * covers rows [ti*um, +um) and columns [tj*un, +un) of batch tb (or every batch when the
 * batches are a sum), tiles ordered batch-major, then column, then row. Every element of C gets
 * the same arithmetic whatever tile it falls in (the K blocking is fixed), so results do not
 * depend on the tile sizes or on which thread takes which tile.
 */
export function gemmTiles(desc: usize, offsets: usize, nb: i32, um: i32, un: i32, counter: usize, bufA: usize, bufB: usize): void {
  const M = di(desc, D_M), N = di(desc, D_N);
  const reduceBatches = di(desc, D_REDUCE_BATCHES) != 0;
  const tm = (M + um - 1) / um, tn = (N + un - 1) / un;
  const perBatch = tm * tn;
  const total = (reduceBatches ? 1 : nb) * perBatch;
  for (;;) {
    const u = atomic.add<i32>(counter, 1);
    if (u >= total) break;
    const bt = u / perBatch, r = u - bt * perBatch;
    const tj = r / tm, ti = r - tj * tm;
    const i0 = ti * um, j0 = tj * un;
    const b0 = reduceBatches ? 0 : bt, b1 = reduceBatches ? nb : bt + 1;
    gemm(desc, offsets, b0, b1, i0, min(M, i0 + um), j0, min(N, j0 + un), bufA, bufB);
  }
}
