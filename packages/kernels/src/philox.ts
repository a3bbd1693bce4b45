// Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3",
// SC'11), the counter-based generator behind random_uniform, random_normal and dropout.
// Every backend (WGSL, AssemblyScript, this file for reference) computes the same numbers from
// the same (seed, offset). The exact mapping, which other backends must reproduce bit for bit:
//
// Generator. philox4x32(ctr[4], key[2]) runs 10 rounds; round r (0-based) uses the key bumped
// r times (k0 += W0, k1 += W1, mod 2^32), and maps the counter
//   (c0, c1, c2, c3) -> (hi(M1*c2) ^ c1 ^ k0, lo(M1*c2), hi(M0*c0) ^ c3 ^ k1, lo(M0*c0))
// where hi/lo are the high/low 32 bits of the 64-bit product. Checked against Random123's
// known-answer vectors in test/philox.test.ts.
//
// Stream. A stream is a seed: an integer in [0, 2^53). key = (seed mod 2^32, floor(seed / 2^32)).
// Stream index s (an integer in [0, 2^53)) is word s mod 4 of the block produced from counter
// c = floor(s / 4) as (c mod 2^32, floor(c / 2^32), 0, 0). A call with attribute `offset`
// gives its element i (row-major) stream index offset + i, so element i of a call at offset o
// equals element o + i of the same call at offset 0: a tensor can be drawn in pieces.
//
// Uniform. u(s) = ((word(s) >>> 9) + 0.5) * 2^-23, in [2^-24, 1 - 2^-24]: 23 random bits, so
// that u and every step computing it are exact in f32 (with 24 bits, (k + 0.5) needs 25
// significant bits and the top value would round to 1.0). u is never 0 (log is finite) nor 1.
//
// Normal (Box-Muller on pairs). Stream index s belongs to pair j = floor(s / 2), whose
// uniforms are u1 = u(2j) and u2 = u(2j + 1) (both in the same block). With r = sqrt(-2 ln u1)
// and theta = pi * (2 u2 - 1) (in (-pi, pi), where GPU sin/cos are accurate; 2 u2 - 1 is exact
// in f32), z(s) = r cos(theta) for even s and r sin(theta) for odd s. The definition is this
// formula in float64 on the exact uniforms; f32 backends agree within rounding.

export const PHILOX_M0 = 0xd2511f53;
export const PHILOX_M1 = 0xcd9e8d57;
export const PHILOX_W0 = 0x9e3779b9;
export const PHILOX_W1 = 0xbb67ae85;
export const PHILOX_ROUNDS = 10;

const TWO32 = 4294967296;
/** Largest seed, offset and stream index + 1: integers stay exact in a double below this. */
export const MAX_STREAM_INDEX = 2 ** 53;

/** High 32 bits of the 64-bit product of two unsigned 32-bit integers. */
export function mulhi32(a: number, b: number): number {
  const aL = a & 0xffff, aH = a >>> 16, bL = b & 0xffff, bH = b >>> 16;
  const ll = aL * bL, lh = aL * bH, hl = aH * bL, hh = aH * bH;
  // Carry out of the low 32 bits: each term below is < 2^18, so the sum is exact.
  const mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  return (hh + (lh >>> 16) + (hl >>> 16) + (mid >>> 16)) >>> 0;
}

/** One Philox4x32-10 block: 4 words (unsigned 32-bit) from a 4-word counter and a 2-word key. */
export function philox4x32(ctr: ArrayLike<number>, key: ArrayLike<number>, out: Uint32Array = new Uint32Array(4)): Uint32Array {
  let c0 = ctr[0] >>> 0, c1 = ctr[1] >>> 0, c2 = ctr[2] >>> 0, c3 = ctr[3] >>> 0;
  let k0 = key[0] >>> 0, k1 = key[1] >>> 0;
  for (let r = 0; r < PHILOX_ROUNDS; r++) {
    if (r > 0) {
      k0 = (k0 + PHILOX_W0) >>> 0;
      k1 = (k1 + PHILOX_W1) >>> 0;
    }
    const hi0 = mulhi32(PHILOX_M0, c0), lo0 = Math.imul(PHILOX_M0, c0) >>> 0;
    const hi1 = mulhi32(PHILOX_M1, c2), lo1 = Math.imul(PHILOX_M1, c2) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
  return out;
}

/** Low and high 32-bit words of an integer in [0, 2^53). */
export function splitWords(n: number): [number, number] {
  if (!Number.isInteger(n) || n < 0 || n >= MAX_STREAM_INDEX) throw new RangeError(`philox: ${n} is not an integer in [0, 2^53)`);
  return [n >>> 0, Math.floor(n / TWO32)];
}

/** Words offset .. offset+n-1 of the stream `seed` (each block computed once). */
export function philoxWords(seed: number, offset: number, n: number): Uint32Array {
  const key = splitWords(seed);
  splitWords(offset);
  if (n > 0) splitWords(offset + n - 1);
  const out = new Uint32Array(n);
  const block = new Uint32Array(4);
  const ctr = [0, 0, 0, 0];
  let cached = -1;
  for (let i = 0; i < n; i++) {
    const s = offset + i;
    const c = Math.floor(s / 4);
    if (c !== cached) {
      ctr[0] = c >>> 0;
      ctr[1] = Math.floor(c / TWO32);
      philox4x32(ctr, key, block);
      cached = c;
    }
    out[i] = block[s - 4 * c];
  }
  return out;
}

/** The uniform in (0, 1) of one word: ((w >>> 9) + 0.5) * 2^-23, exact in f32. */
export function uniformOfWord(w: number): number {
  return ((w >>> 9) + 0.5) * 2 ** -23;
}

/** Uniforms u(offset) .. u(offset+n-1) of the stream `seed`. */
export function philoxUniforms(seed: number, offset: number, n: number): Float64Array {
  const w = philoxWords(seed, offset, n);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = uniformOfWord(w[i]);
  return out;
}

/** Standard normals z(offset) .. z(offset+n-1) of the stream `seed` (Box-Muller, see above), in float64. */
export function philoxNormals(seed: number, offset: number, n: number): Float64Array {
  const out = new Float64Array(n);
  if (n === 0) return out;
  // Pairs are aligned to even stream indices: start one early when the offset is odd.
  const start = offset - (offset % 2);
  const end = offset + n + ((offset + n) % 2);
  const u = philoxUniforms(seed, start, end - start);
  for (let i = 0; i < n; i++) {
    const s = offset + i;
    const p = s - start - (s % 2);
    const r = Math.sqrt(-2 * Math.log(u[p]));
    const theta = Math.PI * (2 * u[p + 1] - 1);
    out[i] = s % 2 === 0 ? r * Math.cos(theta) : r * Math.sin(theta);
  }
  return out;
}
