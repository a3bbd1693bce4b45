// The files our writers produce for the numpy cross-check. numpy-interop.test.ts checks that
// the writers still produce exactly these bytes (committed in fixtures/ours/, written there by
// `IBQ_UPDATE_FIXTURES=1 npx vitest run --project formats test/numpy-interop.test.ts`), and
// fixtures/make_numpy_fixtures.py checks with numpy.load that numpy reads them as we meant.
// Keep the values here in step with OURS in that script.
import { encodeNpy, encodeNpz, encodeZip } from '../src/index.js';

/** Values shared by every file below (the script builds the same arrays with numpy). */
export const OUR_ARRAYS = {
  samples: { data: Uint8Array.from({ length: 2 * 3 * 4 * 3 }, (_, i) => (i * 7) % 256), shape: [2, 3, 4, 3] },
  tokens: { data: Int32Array.from({ length: 12 }, (_, i) => (i - 6) * 100003), shape: [3, 4] },
  x: { data: Float32Array.from([0.5, -2, 3.25, -0]), shape: [2, 2] },
  d: { data: Float64Array.from([Math.PI, -Math.E, 1e300]), shape: [3] },
  l: { data: BigInt64Array.from([-(2n ** 40n), 7n]), shape: [2] },
  // float16 bits of [1, -2, 65504, 2^-24].
  h: { data: Uint16Array.from([0x3c00, 0xc000, 0x7bff, 0x0001]), shape: [4], dtype: 'float16' as const },
  flags: { data: Uint8Array.from([1, 0, 1]), shape: [3], dtype: 'bool' as const },
};

export function ourFixtures(): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  // ZIP64 extra fields on every member, a zip64 end record and locator: what numpy's savez writes, and more.
  out.set('zip64.npz', encodeNpz(OUR_ARRAYS, { forceZip64: true }));
  out.set('zip64_deflate.npz', encodeNpz(OUR_ARRAYS, { forceZip64: true, compress: true }));
  out.set('plain.npz', encodeNpz({ arr_0: OUR_ARRAYS.samples }));
  out.set('deflate.npz', encodeNpz({ tokens: OUR_ARRAYS.tokens, x: OUR_ARRAYS.x }, { compress: true }));
  out.set('tokens.npy', encodeNpy(OUR_ARRAYS.tokens.data, OUR_ARRAYS.tokens.shape));
  out.set('half.npy', encodeNpy(OUR_ARRAYS.h.data, OUR_ARRAYS.h.shape, 'float16'));
  // A plain zip with a UTF-8 name and a deflated text entry (checked with Python's zipfile).
  out.set('entries.zip', encodeZip([['a.txt', new TextEncoder().encode('hello '.repeat(50))], ['dir/ünï.bin', Uint8Array.from([0, 1, 2, 255])]], { method: 'deflate', forceZip64: true }));
  return out;
}
