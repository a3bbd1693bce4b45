// Counter-based Philox4x32-10, bit for bit as src/philox.ts: word s of stream `seed` is word
// s % 4 of the block with counter [s / 4 (64-bit), 0, 0] and key [seed lo, seed hi].

const M0: u64 = 0xd2511f53, M1: u64 = 0xcd9e8d57;
const W0: u32 = 0x9e3779b9, W1: u32 = 0xbb67ae85;

// The last block computed (per instance: each thread has its own globals).
let cachedCounter: u64 = <u64>-1;
let cachedKey0: u32 = 0, cachedKey1: u32 = 0;
let w0: u32 = 0, w1: u32 = 0, w2: u32 = 0, w3: u32 = 0;

function block(counter: u64, k0: u32, k1: u32): void {
  if (counter == cachedCounter && k0 == cachedKey0 && k1 == cachedKey1) return;
  let c0 = <u32>counter, c1 = <u32>(counter >> 32), c2: u32 = 0, c3: u32 = 0;
  let a = k0, b = k1;
  for (let r = 0; r < 10; r++) {
    if (r > 0) { a += W0; b += W1; }
    const p0 = M0 * <u64>c0, p1 = M1 * <u64>c2;
    const n0 = <u32>(p1 >> 32) ^ c1 ^ a;
    const n2 = <u32>(p0 >> 32) ^ c3 ^ b;
    c1 = <u32>p1;
    c3 = <u32>p0;
    c0 = n0;
    c2 = n2;
  }
  w0 = c0; w1 = c1; w2 = c2; w3 = c3;
  cachedCounter = counter; cachedKey0 = k0; cachedKey1 = k1;
}

@inline function word(s: u64, k0: u32, k1: u32): u32 {
  block(s >> 2, k0, k1);
  const j = <i32>(s & 3);
  return j == 0 ? w0 : j == 1 ? w1 : j == 2 ? w2 : w3;
}

/** The uniform in (0, 1) of a word: ((w >>> 9) + 0.5) 2^-23 (exact in f32). */
@inline function uniform(w: u32): f64 {
  return (<f64>(w >>> 9) + 0.5) * 1.1920928955078125e-7;
}

// philoxFill kinds (the host reads them by name from the generated wasm-interface.ts).
const FILL_UNIFORM = 0, FILL_NORMAL = 1, FILL_DROPOUT = 2;

/**
 * Elements [i0, i1) of: kind 0 uniform (y = lo + width*u in f32 steps), kind 1 normal
 * (y = a + b*z, z Box-Muller over even-aligned pairs), kind 2 dropout (y = u >= a ? x*b : 0).
 */
export function philoxFill(kind: i32, x: usize, y: usize, seedLo: u32, seedHi: u32, offset: f64, a: f64, b: f64, i0: i32, i1: i32): void {
  const base = <u64>offset;
  cachedCounter = <u64>-1;
  for (let i = i0; i < i1; i++) {
    const s = base + <u64>i;
    const o = <usize>i << 2;
    if (kind == FILL_UNIFORM) {
      const u = <f32>uniform(word(s, seedLo, seedHi));
      store<f32>(y + o, <f32>a + <f32>b * u);
    } else if (kind == FILL_NORMAL) {
      const p = s & ~(<u64>1);
      const u0 = uniform(word(p, seedLo, seedHi)), u1 = uniform(word(p + 1, seedLo, seedHi));
      const r = Math.sqrt(-2 * Math.log(u0));
      const theta = Math.PI * (2 * u1 - 1);
      const z = (s & 1) == 0 ? r * Math.cos(theta) : r * Math.sin(theta);
      store<f32>(y + o, <f32>(a + b * z));
    } else {
      const u = uniform(word(s, seedLo, seedHi));
      store<f32>(y + o, u >= a ? load<f32>(x + o) * <f32>b : 0);
    }
  }
}
