// The Frechet distance between two Gaussians (FID's formula, spec eval.md §2) in float64, and
// the symmetric eigen-solver it rests on.
//
//   d² = |mu1 - mu2|² + tr(S1) + tr(S2) - 2 tr sqrtm(S1 S2)
//
// Matrix square root: pytorch-fid (and the ADM suite) take scipy.linalg.sqrtm of S1·S2 (a
// complex Schur decomposition) and then its trace. Only the trace is needed, and for
// symmetric positive semi-definite S1, S2 the product S1·S2 is similar to
// M = S1^½ S2 S1^½ (S1^½ (S1 S2) S1^-½ = M where S1 is invertible; by continuity otherwise), so
// tr sqrtm(S1 S2) = Σ sqrt(eig(M)). This port computes S1^½ from a symmetric eigen-
// decomposition (negative round-off eigenvalues clamped to 0) and the eigenvalues of the
// symmetric M: both through Householder tridiagonalisation + implicit QL, the backward-stable
// route for symmetric matrices, so the trace agrees with scipy's to ~1e-12 relative on
// well-conditioned inputs (tested against scipy to 1e-6).
//
// Fall-backs, as pytorch-fid's: non-finite inputs are an error (scipy's check_finite); a
// non-finite root (no convergence) is retried with 1e-6 on both diagonals; an imaginary part
// (here: negative eigenvalues of M, whose roots are imaginary) is dropped when each is at most
// 1e-3 in magnitude (pytorch-fid's tolerance on the diagonal's imaginary parts), else an error.

export const FRECHET_EPS = 1e-6;
export const FRECHET_IMAGINARY_TOLERANCE = 1e-3;

export class FrechetError extends Error {
  override readonly name = 'FrechetError';
}

/**
 * Eigen-decomposition of a symmetric n x n matrix (row-major; only symmetry is assumed, not
 * checked). Returns the eigenvalues (ascending) and, when `vectors` is set, the eigenvectors
 * as the ROWS of a row-major n x n matrix (row k belongs to values[k]).
 */
export function symmetricEigen(a: Float64Array, n: number, vectors = true): { values: Float64Array; vectors: Float64Array | null } {
  if (a.length !== n * n) throw new Error(`symmetricEigen: expected ${n}x${n} = ${n * n} elements, got ${a.length}`);
  if (n === 0) return { values: new Float64Array(0), vectors: vectors ? new Float64Array(0) : null };
  // w is the transposed working matrix (w[j*n+k] = V[k][j]), so every inner loop walks a row.
  const w = Float64Array.from(a);
  const d = new Float64Array(n), e = new Float64Array(n);
  tridiagonalize(w, n, d, e, vectors);
  tridiagonalQl(w, n, d, e, vectors);
  // Sort ascending (with the vectors).
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => d[i] - d[j]);
  const values = Float64Array.from(order, (i) => d[i]);
  if (!vectors) return { values, vectors: null };
  const out = new Float64Array(n * n);
  order.forEach((src, k) => out.set(w.subarray(src * n, src * n + n), k * n));
  return { values, vectors: out };
}

/** Householder reduction to tridiagonal form (EISPACK tred2's scheme); w is V transposed. */
function tridiagonalize(w: Float64Array, n: number, d: Float64Array, e: Float64Array, accumulate: boolean): void {
  const V = (r: number, c: number) => c * n + r; // index of V[r][c] in w
  for (let j = 0; j < n; j++) d[j] = w[V(n - 1, j)];
  for (let i = n - 1; i > 0; i--) {
    let scale = 0, h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]);
    if (scale === 0) {
      e[i] = d[i - 1];
      for (let j = 0; j < i; j++) {
        d[j] = w[V(i - 1, j)];
        w[V(i, j)] = 0;
        w[V(j, i)] = 0;
      }
    } else {
      for (let k = 0; k < i; k++) {
        d[k] /= scale;
        h += d[k] * d[k];
      }
      let f = d[i - 1];
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      for (let j = 0; j < i; j++) {
        f = d[j];
        w[V(j, i)] = f;
        const col = j * n; // V[k][j] for k = 0.. is w[col + k]
        g = e[j] + w[col + j] * f;
        for (let k = j + 1; k <= i - 1; k++) {
          g += w[col + k] * d[k];
          e[k] += w[col + k] * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j] /= h;
        f += e[j] * d[j];
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] -= hh * d[j];
      for (let j = 0; j < i; j++) {
        f = d[j];
        g = e[j];
        const col = j * n;
        for (let k = j; k <= i - 1; k++) w[col + k] -= f * e[k] + g * d[k];
        d[j] = w[V(i - 1, j)];
        w[V(i, j)] = 0;
      }
    }
    d[i] = h;
  }
  if (!accumulate) {
    // The tridiagonal's diagonal is left on V's diagonal; h values in d are not needed.
    for (let j = 0; j < n; j++) d[j] = w[V(j, j)];
    e[0] = 0;
    return;
  }
  for (let i = 0; i < n - 1; i++) {
    w[V(n - 1, i)] = w[V(i, i)];
    w[V(i, i)] = 1;
    const h = d[i + 1];
    const ci = (i + 1) * n; // V[k][i+1] = w[ci + k]
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = w[ci + k] / h;
      for (let j = 0; j <= i; j++) {
        const cj = j * n;
        let g = 0;
        for (let k = 0; k <= i; k++) g += w[ci + k] * w[cj + k];
        for (let k = 0; k <= i; k++) w[cj + k] -= g * d[k];
      }
    }
    for (let k = 0; k <= i; k++) w[ci + k] = 0;
  }
  for (let j = 0; j < n; j++) {
    d[j] = w[V(n - 1, j)];
    w[V(n - 1, j)] = 0;
  }
  w[V(n - 1, n - 1)] = 1;
  e[0] = 0;
}

/** Implicit QL with Wilkinson-style shifts on the tridiagonal (d, e) (EISPACK tql2's scheme). */
function tridiagonalQl(w: Float64Array, n: number, d: Float64Array, e: Float64Array, vectors: boolean): void {
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0;
  let f = 0, tst1 = 0;
  const eps = 2 ** -52;
  const maxIterations = 60;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]) + Math.abs(e[l]));
    let m = l;
    while (m < n - 1 && Math.abs(e[m]) > eps * tst1) m++;
    if (m > l) {
      let iter = 0;
      do {
        if (++iter > maxIterations) {
          d.fill(Number.NaN); // reported by the caller as a non-finite root
          return;
        }
        let g = d[l];
        let p = (d[l + 1] - g) / (2 * e[l]);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l] / (p + r);
        d[l + 1] = e[l] * (p + r);
        const dl1 = d[l + 1];
        let h = g - d[l];
        for (let i = l + 2; i < n; i++) d[i] -= h;
        f += h;
        p = d[m];
        let c = 1, c2 = 1, c3 = 1, s = 0, s2 = 0;
        const el1 = e[l + 1];
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i];
          h = c * p;
          r = Math.hypot(p, e[i]);
          e[i + 1] = s * r;
          s = e[i] / r;
          c = p / r;
          p = c * d[i] - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]);
          if (vectors) {
            const a0 = i * n, a1 = (i + 1) * n; // columns i and i+1 of V
            for (let k = 0; k < n; k++) {
              const t = w[a1 + k];
              w[a1 + k] = s * w[a0 + k] + c * t;
              w[a0 + k] = c * w[a0 + k] - s * t;
            }
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]) > eps * tst1);
    }
    d[l] += f;
    e[l] = 0;
  }
}

/** C = A B for row-major n x n matrices. */
function matmulSquare(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const c = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ci = i * n;
    for (let k = 0; k < n; k++) {
      const aik = a[i * n + k];
      if (aik === 0) continue;
      const bk = k * n;
      for (let j = 0; j < n; j++) c[ci + j] += aik * b[bk + j];
    }
  }
  return c;
}

/** The symmetric PSD square root V diag(sqrt(max(λ, 0))) V^T. */
export function symmetricSqrt(a: Float64Array, n: number): Float64Array {
  const { values, vectors } = symmetricEigen(a, n, true);
  const v = vectors!; // rows are eigenvectors
  // scaled[k] = sqrt(λk)^½ · v_k, so that S = Σ_k scaled_k scaled_k^T = Σ sqrt(λk) v_k v_k^T.
  const scaled = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    const s = Math.sqrt(Math.sqrt(Math.max(values[k], 0)));
    for (let j = 0; j < n; j++) scaled[k * n + j] = s * v[k * n + j];
  }
  // S = scaled^T scaled
  const out = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    const row = k * n;
    for (let i = 0; i < n; i++) {
      const a_ = scaled[row + i];
      if (a_ === 0) continue;
      const oi = i * n;
      for (let j = 0; j < n; j++) out[oi + j] += a_ * scaled[row + j];
    }
  }
  return out;
}

/** tr sqrtm(S1 S2) for symmetric PSD S1, S2, and the largest imaginary root (negative eigenvalues). */
export function traceSqrtProduct(sigma1: Float64Array, sigma2: Float64Array, n: number): { trace: number; imaginary: number } {
  const r = symmetricSqrt(sigma1, n);
  const m = matmulSquare(matmulSquare(r, sigma2, n), r, n);
  // Symmetrise away round-off before the symmetric solver.
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const v = 0.5 * (m[i * n + j] + m[j * n + i]);
      m[i * n + j] = v;
      m[j * n + i] = v;
    }
  }
  const { values } = symmetricEigen(m, n, false);
  let trace = 0, imaginary = 0;
  for (const v of values) {
    if (v >= 0) trace += Math.sqrt(v);
    else imaginary = Math.max(imaginary, Math.sqrt(-v));
  }
  return { trace, imaginary };
}

function checkInputs(mu1: Float64Array, sigma1: Float64Array, mu2: Float64Array, sigma2: Float64Array): number {
  const n = mu1.length;
  if (mu2.length !== n) throw new FrechetError(`Frechet distance: the means have different lengths (${n} and ${mu2.length})`);
  if (sigma1.length !== n * n || sigma2.length !== n * n) {
    throw new FrechetError(`Frechet distance: covariances must be ${n}x${n} (${n * n} elements) for ${n}-d means, got ${sigma1.length} and ${sigma2.length} elements`);
  }
  const named: [string, Float64Array][] = [['mu1', mu1], ['sigma1', sigma1], ['mu2', mu2], ['sigma2', sigma2]];
  for (const [name, a] of named) {
    for (let i = 0; i < a.length; i++) {
      if (!Number.isFinite(a[i])) throw new FrechetError(`Frechet distance: ${name} contains a non-finite value (${a[i]}) at element ${i}`);
    }
  }
  return n;
}

export interface FrechetDetails {
  distance: number;
  /** Whether the 1e-6 diagonal offset was needed. */
  offsetUsed: boolean;
  /** Largest dropped imaginary root (0 when none). */
  imaginary: number;
}

/** The Frechet distance with what the fall-backs did. Covariances are row-major n x n. */
export function frechetDistanceDetails(mu1: Float64Array, sigma1: Float64Array, mu2: Float64Array, sigma2: Float64Array): FrechetDetails {
  const n = checkInputs(mu1, sigma1, mu2, sigma2);
  let offsetUsed = false;
  let root = traceSqrtProduct(sigma1, sigma2, n);
  if (!Number.isFinite(root.trace)) {
    offsetUsed = true;
    const add = (s: Float64Array) => {
      const o = Float64Array.from(s);
      for (let i = 0; i < n; i++) o[i * n + i] += FRECHET_EPS;
      return o;
    };
    root = traceSqrtProduct(add(sigma1), add(sigma2), n);
    if (!Number.isFinite(root.trace)) throw new FrechetError('Frechet distance: the matrix square root is not finite, even with 1e-6 added to the diagonals');
  }
  if (root.imaginary > FRECHET_IMAGINARY_TOLERANCE) throw new FrechetError(`Imaginary component ${root.imaginary}`);
  let diff = 0, tr1 = 0, tr2 = 0;
  for (let i = 0; i < n; i++) {
    diff += (mu1[i] - mu2[i]) ** 2;
    tr1 += sigma1[i * n + i];
    tr2 += sigma2[i * n + i];
  }
  return { distance: diff + tr1 + tr2 - 2 * root.trace, offsetUsed, imaginary: root.imaginary };
}

/** pytorch-fid's calculate_frechet_distance (see the file comment for the square-root route). */
export function frechetDistance(mu1: Float64Array, sigma1: Float64Array, mu2: Float64Array, sigma2: Float64Array): number {
  return frechetDistanceDetails(mu1, sigma1, mu2, sigma2).distance;
}
