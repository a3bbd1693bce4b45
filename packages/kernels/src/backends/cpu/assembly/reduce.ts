// Reductions over the [outer, reduced, inner] split of a tensor; argmax; softmax.
// Each entry point handles outer rows [o0, o1) (the host splits them across threads).

import { expv, hmax, hsum64 } from './vmath';

const SUM = 0, MEAN = 1, MAX = 2, MIN = 3, LOGSUMEXP = 4;

/** Sum of n contiguous floats, in f32x4 blocks folded into f64. */
export function sumRun(p: usize, n: i32): f64 {
  let total: f64 = 0;
  let i = 0;
  while (i + 4 <= n) {
    let acc = f32x4.splat(0);
    const blockEnd = min(n, i + 256) & ~3;
    for (; i < blockEnd; i += 4) acc = f32x4.add(acc, v128.load(p + (<usize>i << 2)));
    total += hsum64(acc);
  }
  for (; i < n; i++) total += <f64>load<f32>(p + (<usize>i << 2));
  return total;
}

/** Maximum (or minimum) of n >= 1 contiguous floats; NaN propagates. */
export function extremeRun(p: usize, n: i32, isMax: bool): f32 {
  let m = load<f32>(p);
  let i = 0;
  if (n >= 4) {
    let acc = v128.load(p);
    for (i = 4; i + 4 <= n; i += 4) {
      const v = v128.load(p + (<usize>i << 2));
      acc = isMax ? f32x4.max(acc, v) : f32x4.min(acc, v);
    }
    m = isMax ? hmax(acc) : -hmax(f32x4.neg(acc));
    // A NaN lane: hmax's max propagates it.
  }
  for (; i < n; i++) {
    const v = load<f32>(p + (<usize>i << 2));
    m = isMax ? Mathf.max(m, v) : Mathf.min(m, v);
  }
  return m;
}

function foldContiguous(op: i32, p: usize, n: i32): f32 {
  if (op == SUM) return <f32>sumRun(p, n);
  if (op == MEAN) return <f32>(sumRun(p, n) / <f64>n);
  if (op == MAX) return extremeRun(p, n, true);
  if (op == MIN) return extremeRun(p, n, false);
  // logsumexp
  if (n == 0) return -Infinity;
  const m = extremeRun(p, n, true);
  if (!isFinite(m)) return m;
  return <f32>(<f64>m + Math.log(expSumShifted(p, n, m)));
}

/** sum_i exp(x[i] - m) over n contiguous floats. */
export function expSumShifted(p: usize, n: i32, m: f32): f64 {
  const mv = f32x4.splat(m);
  let total: f64 = 0;
  let i = 0;
  while (i + 4 <= n) {
    let acc = f32x4.splat(0);
    const blockEnd = min(n, i + 256) & ~3;
    for (; i < blockEnd; i += 4) acc = f32x4.add(acc, expv(f32x4.sub(v128.load(p + (<usize>i << 2)), mv)));
    total += hsum64(acc);
  }
  for (; i < n; i++) total += Math.exp(<f64>load<f32>(p + (<usize>i << 2)) - <f64>m);
  return total;
}

/** y[o, i] = fold over r of x[o, r, i], for outer rows [o0, o1). */
export function reduce(op: i32, x: usize, y: usize, reduced: i32, inner: i32, o0: i32, o1: i32): void {
  if (inner == 1) {
    for (let o = o0; o < o1; o++) store<f32>(y + (<usize>o << 2), foldContiguous(op, x + (<usize>(o * reduced) << 2), reduced));
    return;
  }
  const rowStride = <usize>inner << 2;
  for (let o = o0; o < o1; o++) {
    const base = x + (<usize>(o * reduced * inner) << 2);
    const out = y + (<usize>(o * inner) << 2);
    for (let i = 0; i < inner; i++) {
      let p = base + (<usize>i << 2);
      if (op == SUM || op == MEAN) {
        let s: f64 = 0;
        for (let r = 0; r < reduced; r++) { s += <f64>load<f32>(p); p += rowStride; }
        store<f32>(out + (<usize>i << 2), <f32>(op == MEAN ? s / <f64>reduced : s));
      } else if (op == MAX || op == MIN) {
        let m = load<f32>(p);
        for (let r = 1; r < reduced; r++) { p += rowStride; m = op == MAX ? Mathf.max(m, load<f32>(p)) : Mathf.min(m, load<f32>(p)); }
        store<f32>(out + (<usize>i << 2), m);
      } else {
        let res: f32 = -Infinity;
        if (reduced > 0) {
          let m = load<f32>(p);
          let q = p;
          for (let r = 1; r < reduced; r++) { q += rowStride; m = Mathf.max(m, load<f32>(q)); }
          if (!isFinite(m)) res = m;
          else {
            let s: f64 = 0;
            q = p;
            for (let r = 0; r < reduced; r++) { s += Math.exp(<f64>load<f32>(q) - <f64>m); q += rowStride; }
            res = <f32>(<f64>m + Math.log(s));
          }
        }
        store<f32>(out + (<usize>i << 2), res);
      }
    }
  }
}

/** y[o, i] = the first r maximising x[o, r, i] (the first NaN wins). */
export function argmax(x: usize, y: usize, n: i32, inner: i32, o0: i32, o1: i32): void {
  const stride = <usize>inner << 2;
  for (let o = o0; o < o1; o++) {
    for (let i = 0; i < inner; i++) {
      let p = x + (<usize>(o * n * inner + i) << 2);
      let best = 0;
      let m = load<f32>(p);
      for (let r = 1; r < n && m == m; r++) {
        p += stride;
        const v = load<f32>(p);
        if (v != v || v > m) { m = v; best = r; }
      }
      store<i32>(y + (<usize>(o * inner + i) << 2), best);
    }
  }
}

/** softmax (or log_softmax) along the middle axis of [outer, n, inner], outer rows [o0, o1). */
export function softmax(x: usize, y: usize, n: i32, inner: i32, log: bool, o0: i32, o1: i32): void {
  if (inner == 1) {
    for (let o = o0; o < o1; o++) {
      const px = x + (<usize>(o * n) << 2), py = y + (<usize>(o * n) << 2);
      const m = extremeRun(px, n, true);
      const s = expSumShifted(px, n, m);
      if (log) {
        const shift = f32x4.splat(<f32>(<f64>m + Math.log(s)));
        let i = 0;
        for (; i + 4 <= n; i += 4) v128.store(py + (<usize>i << 2), f32x4.sub(v128.load(px + (<usize>i << 2)), shift));
        const sh = <f64>m + Math.log(s);
        for (; i < n; i++) store<f32>(py + (<usize>i << 2), <f32>(<f64>load<f32>(px + (<usize>i << 2)) - sh));
      } else {
        const mv = f32x4.splat(m), inv = f32x4.splat(<f32>(1 / s));
        let i = 0;
        for (; i + 4 <= n; i += 4) {
          const o = <usize>i << 2;
          v128.store(py + o, f32x4.mul(expv(f32x4.sub(v128.load(px + o), mv)), inv));
        }
        for (; i < n; i++) store<f32>(py + (<usize>i << 2), <f32>(Math.exp(<f64>load<f32>(px + (<usize>i << 2)) - <f64>m) / s));
      }
    }
    return;
  }
  const stride = <usize>inner << 2;
  for (let o = o0; o < o1; o++) {
    for (let i = 0; i < inner; i++) {
      const bx = x + (<usize>(o * n * inner + i) << 2), by = y + (<usize>(o * n * inner + i) << 2);
      let m: f32 = -Infinity;
      let p = bx;
      for (let r = 0; r < n; r++) { m = Mathf.max(m, load<f32>(p)); p += stride; }
      let s: f64 = 0;
      p = bx;
      for (let r = 0; r < n; r++) { s += Math.exp(<f64>load<f32>(p) - <f64>m); p += stride; }
      const logS = Math.log(s);
      p = bx;
      let q = by;
      for (let r = 0; r < n; r++) {
        const v = <f64>load<f32>(p) - <f64>m;
        store<f32>(q, <f32>(log ? v - logS : Math.exp(v) / s));
        p += stride; q += stride;
      }
    }
  }
}
