// Strided copies (pad, slice, concat, permute, broadcast_to), row gather and scatter-add.

/**
 * dst[i0,i1,i2,i3 . dstStrides] = src[i0,i1,i2,i3 . srcStrides] over [n0, n1, n2, n3], for i0 in
 * [b0, b1). Strides in elements; rows with unit strides are block copies.
 */
export function copy4(src: usize, s0: i32, s1: i32, s2: i32, s3: i32, dst: usize, d0: i32, d1: i32, d2: i32, d3: i32,
  n1: i32, n2: i32, n3: i32, b0: i32, b1: i32): void {
  for (let i0 = b0; i0 < b1; i0++) {
    for (let i1 = 0; i1 < n1; i1++) {
      for (let i2 = 0; i2 < n2; i2++) {
        let ps = src + (<usize>(i0 * s0 + i1 * s1 + i2 * s2) << 2);
        let pd = dst + (<usize>(i0 * d0 + i1 * d1 + i2 * d2) << 2);
        if (s3 == 1 && d3 == 1) {
          memory.copy(pd, ps, <usize>n3 << 2);
        } else if (s3 == 0 && d3 == 1) {
          const v = load<i32>(ps);
          const vv = i32x4.splat(v);
          let i = 0;
          for (; i + 4 <= n3; i += 4) v128.store(pd + (<usize>i << 2), vv);
          for (; i < n3; i++) store<i32>(pd + (<usize>i << 2), v);
        } else {
          const ss = <usize>s3 << 2, ds = <usize>d3 << 2;
          for (let i = 0; i < n3; i++) { store<i32>(pd, load<i32>(ps)); ps += ss; pd += ds; }
        }
      }
    }
  }
}

/** y[r, :] = table[ids[r], :] (zeros for ids outside [0, V)), rows [r0, r1). */
export function gatherRows(table: usize, V: i32, D: i32, ids: usize, y: usize, r0: i32, r1: i32): void {
  const rowBytes = <usize>D << 2;
  for (let r = r0; r < r1; r++) {
    const id = load<i32>(ids + (<usize>r << 2));
    const dst = y + <usize>r * rowBytes;
    if (id >= 0 && id < V) memory.copy(dst, table + <usize>id * rowBytes, rowBytes);
    else memory.fill(dst, 0, rowBytes);
  }
}

/**
 * y[ids[r], d] += src[r, d] for every r, d in [d0, d1) (ids outside [0, numRows) ignored).
 * Threads split the columns, so no two write the same element.
 */
export function scatterAddRows(ids: usize, n: i32, src: usize, D: i32, y: usize, numRows: i32, d0: i32, d1: i32): void {
  for (let r = 0; r < n; r++) {
    const id = load<i32>(ids + (<usize>r << 2));
    if (id < 0 || id >= numRows) continue;
    const s = src + (<usize>(r * D) << 2), t = y + (<usize>(id * D) << 2);
    let d = d0;
    for (; d + 4 <= d1; d += 4) {
      const o = <usize>d << 2;
      v128.store(t + o, f32x4.add(v128.load(t + o), v128.load(s + o)));
    }
    for (; d < d1; d++) {
      const o = <usize>d << 2;
      store<f32>(t + o, load<f32>(t + o) + load<f32>(s + o));
    }
  }
}
