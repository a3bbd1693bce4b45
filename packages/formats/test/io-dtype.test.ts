// Host dtype helpers: half-precision conversions (exhaustive over all 16-bit patterns) and
// the int64 -> int32 narrowing.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  bf16BitsToNumber,
  bf16ToF32,
  f16BitsToNumber,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  int64ToInt32,
  numberToBf16Bits,
  numberToF16Bits,
  readSafetensors,
  shapeNumel,
  toFloat32,
} from '../src/index.js';

describe('f16', () => {
  it('every bit pattern survives f16 -> f32 -> f16 (NaN stays NaN)', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const f = f16ToF32(all);
    const back = f32ToF16(f);
    for (let h = 0; h < 65536; h++) {
      if (Number.isNaN(f[h])) {
        if (!Number.isNaN(f16BitsToNumber(back[h]!))) expect.fail(`NaN 0x${h.toString(16)} lost`);
      }
      else if (back[h] !== h) expect.fail(`0x${h.toString(16)} -> ${f[h]} -> 0x${back[h]!.toString(16)}`);
    }
  });

  it('decodes and rounds like IEEE binary16 (round to nearest even)', () => {
    expect(f16BitsToNumber(0x3c00)).toBe(1);
    expect(f16BitsToNumber(0x7bff)).toBe(65504);
    expect(f16BitsToNumber(0x0001)).toBe(2 ** -24);
    expect(f16BitsToNumber(0x8000)).toBe(-0);
    expect(f16BitsToNumber(0x7c00)).toBe(Infinity);
    expect(numberToF16Bits(65519)).toBe(0x7bff);
    expect(numberToF16Bits(65520)).toBe(0x7c00); // halfway to the next binade rounds to inf
    expect(numberToF16Bits(1e6)).toBe(0x7c00);
    expect(numberToF16Bits(-1e6)).toBe(0xfc00);
    expect(numberToF16Bits(2 ** -25)).toBe(0); // tie between 0 and the smallest subnormal -> even (0)
    expect(numberToF16Bits(2 ** -25 * 1.5)).toBe(1);
    expect(numberToF16Bits(3 * 2 ** -25)).toBe(2); // tie between 1 and 2 -> even
    expect(numberToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie -> even
    expect(numberToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie -> even (up)
    expect(numberToF16Bits(2 ** -14 - 2 ** -25)).toBe(0x0400); // subnormal rounding into the normals
    expect(numberToF16Bits(-0)).toBe(0x8000);
    expect(Number.isNaN(f16BitsToNumber(numberToF16Bits(NaN)))).toBe(true);
  });
});

describe('bf16', () => {
  it('every bit pattern survives bf16 -> f32 -> bf16 (NaN stays NaN)', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const f = bf16ToF32(all);
    const back = f32ToBf16(f);
    for (let h = 0; h < 65536; h++) {
      if (!Object.is(f[h], bf16BitsToNumber(h)) && !Number.isNaN(f[h])) expect.fail(`0x${h.toString(16)}: ${f[h]} vs ${bf16BitsToNumber(h)}`);
      if (Number.isNaN(f[h])) {
        if (!Number.isNaN(bf16BitsToNumber(back[h]!))) expect.fail(`NaN 0x${h.toString(16)} lost`);
      }
      else if (back[h] !== h) expect.fail(`0x${h.toString(16)} -> ${f[h]} -> 0x${back[h]!.toString(16)}`);
    }
  });

  it('rounds to nearest even', () => {
    expect(numberToBf16Bits(1)).toBe(0x3f80);
    expect(numberToBf16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie -> even
    expect(numberToBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie -> even (up)
    expect(numberToBf16Bits(3.4e38)).toBe(0x7f80); // overflow -> inf
  });
});

describe('conversions agree with torch (values in reference.safetensors were converted by torch)', () => {
  it('f16 and bf16', async () => {
    const { tensors } = await readSafetensors(join(import.meta.dirname, 'fixtures', 'reference.safetensors'));
    const f16 = tensors.get('f16')!;
    // torch.tensor([...], dtype=float16) rounds the Python floats (doubles) to f16.
    expect(f32ToF16([1.0, -2.0, 0.099975586, 65504.0, 6e-8])).toEqual(f16.data);
    const bf16 = tensors.get('bf16')!;
    expect(f32ToBf16([1.0, -3.140625, 1e30, -1e-30])).toEqual(bf16.data);
    expect(Array.from(toFloat32(bf16))).toEqual(Array.from(bf16ToF32(bf16.data as Uint16Array)));
  });
});

describe('int64 and shapes', () => {
  it('int64ToInt32 checks the range and names the tensor', () => {
    expect(Array.from(int64ToInt32(new BigInt64Array([0n, -(2n ** 31n), 2n ** 31n - 1n])))).toEqual([0, -(2 ** 31), 2 ** 31 - 1]);
    expect(() => int64ToInt32(new BigInt64Array([1n, 2n ** 31n]), 'labels')).toThrow('labels: int64 value 2147483648 at flat index 1 does not fit in int32');
    expect(() => int64ToInt32(new BigInt64Array([-(2n ** 31n) - 1n]))).toThrow(/does not fit in int32/);
  });

  it('shapeNumel rejects negative, fractional and overflowing shapes', () => {
    expect(shapeNumel([])).toBe(1);
    expect(shapeNumel([2, 0, 3])).toBe(0);
    expect(() => shapeNumel([2, -1])).toThrow(/invalid dimension -1/);
    expect(() => shapeNumel([1.5])).toThrow(/invalid dimension 1.5/);
    expect(() => shapeNumel([2 ** 30, 2 ** 30, 2 ** 30])).toThrow(/more elements than 2\^53/);
  });
});
