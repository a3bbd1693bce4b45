// The Philox4x32-10 generator against the published known-answer vectors, the stream mapping
// of src/philox.ts, the distributions it yields, and the random ops built on it (reference).
import { describe, expect, it } from 'vitest';
import { ReferenceBackend, runOp, type TensorInfo } from '../src/index.js';
import { mulhi32, philox4x32, philoxNormals, philoxUniforms, philoxWords, uniformOfWord } from '../src/philox.js';

const hex = (words: Uint32Array) => Array.from(words, (w) => w.toString(16).padStart(8, '0'));

describe('philox4x32-10', () => {
  // Random123 kat_vectors, philox4x32 with 10 rounds: counter, key -> output.
  it.each([
    [[0, 0, 0, 0], [0, 0], ['6627e8d5', 'e169c58d', 'bc57ac4c', '9b00dbd8']],
    [[0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff], ['408f276d', '41c83b0e', 'a20bc7c6', '6d5451fd']],
    [[0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0], ['d16cfe09', '94fdcceb', '5001e420', '24126ea1']],
  ])('known answer for counter %j key %j', (ctr, key, want) => {
    expect(hex(philox4x32(ctr, key))).toEqual(want);
  });

  it('mulhi32 is the high word of the exact 64-bit product', () => {
    let s = 12345;
    const next = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0);
    const pairs = [[0xffffffff, 0xffffffff], [0, 0xffffffff], [0xd2511f53, 0xffffffff], [0x10000, 0x10000]];
    for (let i = 0; i < 2000; i++) pairs.push([next() ^ (next() << 7), next()].map((v) => v >>> 0));
    for (const [a, b] of pairs) {
      expect(mulhi32(a, b)).toBe(Number((BigInt(a) * BigInt(b)) >> 32n));
    }
  });

  it('maps stream index s to word s % 4 of the block at counter floor(s / 4) = (lo, hi, 0, 0), key (seed lo, seed hi)', () => {
    const seed = 2 ** 45 + 0x1234567;
    const key = [seed >>> 0, Math.floor(seed / 2 ** 32)];
    const c = 2 ** 33 + 5;
    const block = philox4x32([c >>> 0, Math.floor(c / 2 ** 32), 0, 0], key);
    // Stream indices 4c-2 .. 4c+5 straddle three blocks; the middle four are this block.
    const w = philoxWords(seed, 4 * c - 2, 8);
    expect(Array.from(w.subarray(2, 6))).toEqual(Array.from(block));
    expect(w[0]).toBe(philox4x32([(c - 1) >>> 0, Math.floor((c - 1) / 2 ** 32), 0, 0], key)[2]);
    expect(w[7]).toBe(philox4x32([(c + 1) >>> 0, Math.floor((c + 1) / 2 ** 32), 0, 0], key)[1]);
  });

  it('rejects seeds and offsets that are not integers in [0, 2^53)', () => {
    expect(() => philoxWords(-1, 0, 4)).toThrow(RangeError);
    expect(() => philoxWords(1.5, 0, 4)).toThrow(RangeError);
    expect(() => philoxWords(0, 2 ** 53 - 2, 4)).toThrow(RangeError);
  });
});

describe('uniforms', () => {
  it('are ((w >>> 9) + 0.5) * 2^-23: exact in f32, never 0 or 1', () => {
    for (const w of [0, 1, 511, 512, 0x7fffffff, 0x80000000, 0xffffffff]) {
      const u = uniformOfWord(w);
      expect(Math.fround(u)).toBe(u);
      expect(u).toBeGreaterThan(0);
      expect(u).toBeLessThan(1);
    }
    expect(uniformOfWord(0)).toBe(2 ** -24);
    expect(uniformOfWord(0xffffffff)).toBe(1 - 2 ** -24);
  });

  const n = 100_000;
  const u = philoxUniforms(2024, 0, n);

  it('have the mean, variance and distribution of U(0, 1)', () => {
    let mean = 0;
    for (const v of u) mean += v / n;
    let variance = 0;
    for (const v of u) variance += (v - mean) ** 2 / (n - 1);
    // Standard errors: 9.1e-4 for the mean, 2.4e-4 for the variance; bounds are ~6 of them.
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.0055);
    expect(Math.abs(variance - 1 / 12)).toBeLessThan(0.0015);
    // Kolmogorov-Smirnov: D < 1.95 / sqrt(n) at the 0.1% level.
    const sorted = Float64Array.from(u).sort();
    let D = 0;
    sorted.forEach((v, i) => (D = Math.max(D, Math.abs(v - i / n), Math.abs(v - (i + 1) / n))));
    expect(D).toBeLessThan(1.95 / Math.sqrt(n));
  });

  it('are uncorrelated between neighbours in the stream', () => {
    // Lag 1..4 covers words of one block and of adjacent blocks; sd of the estimate is 1/sqrt(n).
    for (let lag = 1; lag <= 4; lag++) {
      let c = 0;
      for (let i = 0; i + lag < n; i++) c += (u[i] - 0.5) * (u[i + lag] - 0.5);
      const corr = c / (n - lag) / (1 / 12);
      expect(Math.abs(corr)).toBeLessThan(6 / Math.sqrt(n));
    }
  });

  it('fill 64 equal bins evenly (chi-square)', () => {
    const bins = new Array<number>(64).fill(0);
    for (const v of u) bins[Math.floor(v * 64)]++;
    const expected = n / 64;
    const chi2 = bins.reduce((s, b) => s + (b - expected) ** 2 / expected, 0);
    // 63 degrees of freedom: P(chi2 > 110) is about 2e-4.
    expect(chi2).toBeLessThan(110);
  });

  it('differ between seeds and between offsets', () => {
    const a = philoxUniforms(1, 0, 1000), b = philoxUniforms(2, 0, 1000), c = philoxUniforms(1, 1000, 1000);
    const same = (x: Float64Array, y: Float64Array) => x.filter((v, i) => v === y[i]).length;
    // 2^23 possible values: a handful of coincidences at most.
    expect(same(a, b)).toBeLessThan(5);
    expect(same(a, c)).toBeLessThan(5);
  });
});

describe('normals', () => {
  const n = 100_000;
  const z = philoxNormals(77, 0, n);

  it('have mean 0, variance 1, no skew, normal tails', () => {
    let mean = 0;
    for (const v of z) mean += v / n;
    let m2 = 0, m3 = 0, m4 = 0;
    for (const v of z) {
      const d = v - mean;
      m2 += d * d / n;
      m3 += d ** 3 / n;
      m4 += d ** 4 / n;
    }
    // Standard errors: mean 3.2e-3, variance 4.5e-3, skewness 7.7e-3, kurtosis 1.5e-2.
    expect(Math.abs(mean)).toBeLessThan(0.02);
    expect(Math.abs(m2 - 1)).toBeLessThan(0.03);
    expect(Math.abs(m3 / m2 ** 1.5)).toBeLessThan(0.05);
    expect(Math.abs(m4 / m2 ** 2 - 3)).toBeLessThan(0.1);
    // P(|z| > 2) = 0.0455 (sd of the count ~66); P(|z| > 3) = 0.0027 (sd ~16).
    const beyond = (t: number) => z.filter((v) => Math.abs(v) > t).length;
    expect(Math.abs(beyond(2) - 0.0455 * n)).toBeLessThan(400);
    expect(Math.abs(beyond(3) - 0.0027 * n)).toBeLessThan(100);
  });

  it('pair z(2j), z(2j+1) from u(2j), u(2j+1) by Box-Muller, independent of each other', () => {
    const u = philoxUniforms(77, 0, 8);
    for (let s = 0; s < 8; s++) {
      const j = s - (s % 2);
      const r = Math.sqrt(-2 * Math.log(u[j]));
      const theta = Math.PI * (2 * u[j + 1] - 1);
      expect(z[s]).toBe(s % 2 === 0 ? r * Math.cos(theta) : r * Math.sin(theta));
    }
    let c = 0;
    for (let j = 0; j + 1 < n; j += 2) c += z[j] * z[j + 1];
    expect(Math.abs(c / (n / 2))).toBeLessThan(6 / Math.sqrt(n / 2));
  });

  it('at an odd offset continue the same stream (the pair is shared across the boundary)', () => {
    expect(Array.from(philoxNormals(77, 3, 6))).toEqual(Array.from(z.subarray(3, 9)));
    expect(Array.from(philoxNormals(77, 4, 1))).toEqual([z[4]]);
  });
});

describe('random ops on reference', () => {
  const ref = new ReferenceBackend();
  const read = async (t: TensorInfo) => {
    const v = Array.from(await ref.read(t.buffer, t.offset, t.shape.reduce((a, b) => a * b, 1)));
    ref.release(t.buffer);
    return v;
  };
  const draw = (op: string, attrs: Record<string, unknown>, inputs: TensorInfo[] = []) => read(runOp(ref, op, inputs, attrs)[0]);

  it('random_uniform is low + (high - low) * u in f32, and draws in pieces equal one draw', async () => {
    const whole = await draw('random_uniform', { shape: [3, 5], seed: 9, offset: 6, low: -1, high: 0.1 });
    const u = philoxUniforms(9, 6, 15);
    const width = Math.fround(Math.fround(0.1) - -1);
    expect(whole).toEqual(Array.from(u, (v) => Math.fround(-1 + Math.fround(width * v))));
    const head = await draw('random_uniform', { shape: [7], seed: 9, offset: 6, low: -1, high: 0.1 });
    const tail = await draw('random_uniform', { shape: [8], seed: 9, offset: 13, low: -1, high: 0.1 });
    expect([...head, ...tail]).toEqual(whole);
  });

  it('random_normal scales the stream normals and splits at odd offsets', async () => {
    const whole = await draw('random_normal', { shape: [11], seed: 4, offset: 1, mean: 2, std: 0.5 });
    expect(whole).toEqual(Array.from(philoxNormals(4, 1, 11), (z) => Math.fround(2 + 0.5 * z)));
    const head = await draw('random_normal', { shape: [4], seed: 4, offset: 1, mean: 2, std: 0.5 });
    const tail = await draw('random_normal', { shape: [7], seed: 4, offset: 5, mean: 2, std: 0.5 });
    expect([...head, ...tail]).toEqual(whole);
  });

  it('dropout keeps about 1 - p of the elements, scaled by 1/(1-p), where u >= p', async () => {
    const n = 20_000;
    const x = ref.alloc('f32', n);
    ref.write(x, new Float32Array(n).fill(1.5));
    const info: TensorInfo = { buffer: x, offset: 0, shape: [n], dtype: 'f32' };
    const y = await draw('dropout', { p: 0.3, seed: 8, offset: 100 }, [info]);
    const u = philoxUniforms(8, 100, n);
    const scaled = Math.fround(1.5 * Math.fround(1 / 0.7));
    y.forEach((v, i) => expect(v).toBe(u[i] >= Math.fround(0.3) ? scaled : 0));
    const kept = y.filter((v) => v !== 0).length / n;
    expect(Math.abs(kept - 0.7)).toBeLessThan(0.02);
    expect(await draw('dropout', { p: 0, seed: 8 }, [info])).toEqual(new Array(n).fill(1.5));
    expect(await draw('dropout', { p: 1, seed: 8 }, [info])).toEqual(new Array(n).fill(0));
    ref.release(x);
  });

  it('rejects missing or invalid seeds, offsets and parameters, naming the attribute', () => {
    expect(() => runOp(ref, 'random_uniform', [], { shape: [2] })).toThrow(/'seed'/);
    expect(() => runOp(ref, 'random_uniform', [], { shape: [2], seed: 1, offset: -3 })).toThrow(/'offset'/);
    expect(() => runOp(ref, 'random_uniform', [], { shape: [2], seed: 1, low: 2, high: 1 })).toThrow(/'low'/);
    expect(() => runOp(ref, 'random_normal', [], { shape: [2], seed: 1, std: -1 })).toThrow(/'std'/);
    expect(() => runOp(ref, 'random_normal', [], { shape: [2.5], seed: 1 })).toThrow(/'shape'/);
  });
});
