// Host-side dtypes and typed arrays for checkpoint files. No tensors, no devices: a
// HostTensor is a plain typed array with a dtype and a shape, little-endian, row-major,
// contiguous. The Tensor class wraps these; nothing here imports it.

import { endianness } from 'node:os';

/**
 * dtypes a checkpoint can hold. Storage per dtype (`data` of a HostTensor):
 * f32 Float32Array, f64 Float64Array, f16 and bf16 Uint16Array (the raw bits; convert with
 * `toFloat32`), i64 BigInt64Array (lossless; `int64ToInt32` narrows with a range check),
 * i32 Int32Array, i16 Int16Array, i8 Int8Array, u8 Uint8Array, bool Uint8Array (0 or 1).
 */
export type HostDType = 'f32' | 'f64' | 'f16' | 'bf16' | 'i64' | 'i32' | 'i16' | 'i8' | 'u8' | 'bool';

export type HostTypedArray =
  | Float32Array
  | Float64Array
  | Uint16Array
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array;

export interface HostTensor {
  readonly dtype: HostDType;
  readonly shape: readonly number[];
  readonly data: HostTypedArray;
}

export const HOST_DTYPES: readonly HostDType[] = ['f32', 'f64', 'f16', 'bf16', 'i64', 'i32', 'i16', 'i8', 'u8', 'bool'];

const SIZES: Record<HostDType, number> = {
  f32: 4, f64: 8, f16: 2, bf16: 2, i64: 8, i32: 4, i16: 2, i8: 1, u8: 1, bool: 1,
};

export function isHostDType(x: unknown): x is HostDType {
  return typeof x === 'string' && Object.prototype.hasOwnProperty.call(SIZES, x);
}

/** Bytes per element. */
export function hostDTypeSize(dtype: HostDType): number {
  return SIZES[dtype];
}

/** Number of elements of a shape; throws on a negative, fractional or unsafe size. */
export function shapeNumel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new RangeError(`invalid dimension ${String(d)} in shape [${shape.join(', ')}]`);
    n *= d;
    if (!Number.isSafeInteger(n)) throw new RangeError(`shape [${shape.join(', ')}] has more elements than 2^53`);
  }
  return n;
}

/** A zero-filled typed array of the class that holds `dtype`. */
export function allocHost(dtype: HostDType, numel: number): HostTypedArray {
  switch (dtype) {
    case 'f32': return new Float32Array(numel);
    case 'f64': return new Float64Array(numel);
    case 'f16':
    case 'bf16': return new Uint16Array(numel);
    case 'i64': return new BigInt64Array(numel);
    case 'i32': return new Int32Array(numel);
    case 'i16': return new Int16Array(numel);
    case 'i8': return new Int8Array(numel);
    case 'u8':
    case 'bool': return new Uint8Array(numel);
  }
}

/** The typed array class expected for a dtype, for validation. */
function expectedCtor(dtype: HostDType): Function {
  switch (dtype) {
    case 'f32': return Float32Array;
    case 'f64': return Float64Array;
    case 'f16':
    case 'bf16': return Uint16Array;
    case 'i64': return BigInt64Array;
    case 'i32': return Int32Array;
    case 'i16': return Int16Array;
    case 'i8': return Int8Array;
    case 'u8':
    case 'bool': return Uint8Array;
  }
}

/** Throws unless `t.data` has the class and length that `t.dtype` and `t.shape` require. */
export function checkHostTensor(t: HostTensor, what = 'tensor'): void {
  if (!isHostDType(t.dtype)) throw new TypeError(`${what}: unknown dtype ${String(t.dtype)}`);
  const ctor = expectedCtor(t.dtype);
  if (!(t.data instanceof ctor)) {
    throw new TypeError(`${what}: dtype ${t.dtype} needs a ${ctor.name}, got ${(t.data as object)?.constructor?.name ?? typeof t.data}`);
  }
  const n = shapeNumel(t.shape);
  if (t.data.length !== n) {
    throw new RangeError(`${what}: shape [${t.shape.join(', ')}] has ${n} elements but data has ${t.data.length}`);
  }
}

/** The bytes of a typed array (a view, no copy). */
export function bytesOf(a: HostTypedArray): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * A typed array of `dtype` over a copy of `bytes` (length must be a multiple of the
 * element size). Copies so that the result is aligned and owns its memory.
 */
export function fromBytes(dtype: HostDType, bytes: Uint8Array): HostTypedArray {
  const size = SIZES[dtype];
  if (bytes.byteLength % size !== 0) throw new RangeError(`${bytes.byteLength} bytes is not a whole number of ${dtype} elements`);
  const out = allocHost(dtype, bytes.byteLength / size);
  bytesOf(out).set(bytes);
  return out;
}

let checkedEndianness = false;
/** All formats here are little-endian; typed arrays use the host's order. */
export function assertLittleEndianHost(): void {
  if (checkedEndianness) return;
  if (endianness() !== 'LE') throw new Error('checkpoint I/O needs a little-endian host');
  checkedEndianness = true;
}

// ---- half-precision conversions --------------------------------------------------------

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** IEEE binary16 bits -> number (exact). */
export function f16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1024 + frac) * 2 ** (exp - 25);
}

/** number -> IEEE binary16 bits, round to nearest even (through f32 first, like torch's .half() of an f32). */
export function numberToF16Bits(x: number): number {
  f32Scratch[0] = x;
  const f = u32Scratch[0]!;
  const sign = (f >>> 16) & 0x8000;
  const exp = (f >>> 23) & 0xff;
  const mant = f & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  // Unbiased exponent e = exp - 127; half exponent = e + 15.
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow -> inf
  if (e <= 0) {
    // subnormal half (or zero): value = m * 2^-24 with m = round(full * 2^(e-1-...))
    if (e < -10) return sign; // too small: rounds to zero
    const full = mant | 0x800000; // 24-bit significand
    const shift = 14 - e; // bits to drop so the result is in units of 2^-24
    const q = full >>> shift;
    const rem = full & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    const r = rem > half || (rem === half && (q & 1)) ? q + 1 : q;
    return sign | r;
  }
  const q = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  const r = rem > 0x1000 || (rem === 0x1000 && (q & 1)) ? q + 1 : q; // carry may roll into inf: correct
  return sign | r;
}

/** bfloat16 bits -> number (exact). */
export function bf16BitsToNumber(h: number): number {
  u32Scratch[0] = (h & 0xffff) << 16;
  return f32Scratch[0]!;
}

/** number -> bfloat16 bits, round to nearest even (through f32), NaN kept quiet. */
export function numberToBf16Bits(x: number): number {
  f32Scratch[0] = x;
  const f = u32Scratch[0]!;
  if ((f & 0x7f800000) === 0x7f800000 && (f & 0x7fffff) !== 0) return ((f >>> 16) | 0x40) & 0xffff;
  const r = f + 0x7fff + ((f >>> 16) & 1);
  return (r >>> 16) & 0xffff;
}

export function f16ToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  // A 64 Ki-entry table is 256 KB and makes big tensors ~10x faster than per-element math.
  const table = f16Table();
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]!]!;
  return out;
}

let f16Lut: Float32Array | undefined;
function f16Table(): Float32Array {
  if (!f16Lut) {
    f16Lut = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Lut[h] = f16BitsToNumber(h);
  }
  return f16Lut;
}

export function bf16ToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const o32 = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) o32[i] = bits[i]! << 16;
  return out;
}

export function f32ToF16(x: Float32Array | Float64Array | readonly number[]): Uint16Array {
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = numberToF16Bits(x[i]!);
  return out;
}

export function f32ToBf16(x: Float32Array | Float64Array | readonly number[]): Uint16Array {
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = numberToBf16Bits(x[i]!);
  return out;
}

/**
 * Any HostTensor's values as a Float32Array (f16/bf16 decoded; integers converted, i64
 * through Number). An f32 tensor's own array is returned as is (no copy).
 */
export function toFloat32(t: HostTensor): Float32Array {
  switch (t.dtype) {
    case 'f32': return t.data as Float32Array;
    case 'f16': return f16ToF32(t.data as Uint16Array);
    case 'bf16': return bf16ToF32(t.data as Uint16Array);
    case 'i64': {
      const src = t.data as BigInt64Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = Number(src[i]!);
      return out;
    }
    default: return Float32Array.from(t.data as ArrayLike<number>);
  }
}

/**
 * int64 -> int32 with a range check: throws a RangeError naming the first value outside
 * [-2^31, 2^31). `what` names the tensor in the error.
 */
export function int64ToInt32(src: BigInt64Array, what = 'tensor'): Int32Array {
  const out = new Int32Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const v = src[i]!;
    if (v < -2147483648n || v > 2147483647n) {
      throw new RangeError(`${what}: int64 value ${v} at flat index ${i} does not fit in int32`);
    }
    out[i] = Number(v);
  }
  return out;
}
