// WGSL kernels for src/ops/random.ts: Philox4x32-10 bit for bit as src/philox.ts (64-bit stream
// indices as two u32 words; 32x32 -> 64-bit products from 16-bit halves).

import { registerKernel } from '../../dispatch.js';
import { splitWords } from '../../philox.js';
import { PHILOX_M0, PHILOX_M1, PHILOX_W0, PHILOX_W1 } from '../../philox.js';
import { sizeOf } from '../../types.js';
import type { TensorInfo } from '../../types.js';
import type { WebGpuBackend } from './backend.js';
import { type Program, groups, memo, wgslType } from './program.js';

const W = 'webgpu';
const WG = 256;
const hex = (v: number) => `0x${(v >>> 0).toString(16)}u`;

const PHILOX_WGSL = `
fn mulhi32(a: u32, b: u32) -> u32 {
  let aL = a & 0xffffu; let aH = a >> 16u; let bL = b & 0xffffu; let bH = b >> 16u;
  let ll = aL * bL; let lh = aL * bH; let hl = aH * bL; let hh = aH * bH;
  let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
  return hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
}
fn philox(ctr: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
  var c = ctr;
  var k = key;
  for (var r = 0u; r < 10u; r++) {
    if (r > 0u) { k = k + vec2<u32>(${hex(PHILOX_W0)}, ${hex(PHILOX_W1)}); }
    let hi0 = mulhi32(${hex(PHILOX_M0)}, c.x); let lo0 = ${hex(PHILOX_M0)} * c.x;
    let hi1 = mulhi32(${hex(PHILOX_M1)}, c.z); let lo1 = ${hex(PHILOX_M1)} * c.z;
    c = vec4<u32>(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
  }
  return c;
}
/** The block holding stream index (lo, hi) and the index's word in it. */
fn philox_block(lo: u32, hi: u32) -> vec4<u32> {
  let c = vec4<u32>((lo >> 2u) | (hi << 30u), hi >> 2u, 0u, 0u);
  return philox(c, vec2<u32>(P.seedLo, P.seedHi));
}
fn to_unit(w: u32) -> f32 { return (f32(w >> 9u) + 0.5) * ${2 ** -23}; }
/** Stream index offset + i as two words. */
fn stream(i: u32) -> vec2<u32> {
  let lo = P.offLo + i;
  return vec2<u32>(lo, P.offHi + select(0u, 1u, lo < P.offLo));
}
fn uniform_at(i: u32) -> f32 {
  let s = stream(i);
  return to_unit(philox_block(s.x, s.y)[s.x & 3u]);
}
fn normal_at(i: u32) -> f32 {
  let s = stream(i);
  let b = philox_block(s.x, s.y);
  let pair = (s.x >> 1u) & 1u;
  let u1 = to_unit(b[pair * 2u]);
  let u2 = to_unit(b[pair * 2u + 1u]);
  let r = sqrt(-2.0 * log(u1));
  let theta = 3.14159265358979 * (2.0 * u2 - 1.0);
  return select(r * cos(theta), r * sin(theta), (s.x & 1u) == 1u);
}`;

const STREAM_UNIFORMS: Program['uniforms'] = [['n', 'u32'], ['offY', 'u32'], ['seedLo', 'u32'], ['seedHi', 'u32'], ['offLo', 'u32'], ['offHi', 'u32']];

const genProgram = memo((t: string, kind: 'uniform' | 'normal' | 'dropout'): Program => {
  const st = (e: string) => (t === 'f32' ? e : `${t}(${e})`);
  const ld = (e: string) => (t === 'f32' ? e : `f32(${e})`);
  const expr = kind === 'uniform' ? 'P.a + P.b * uniform_at(i)'
    : kind === 'normal' ? 'P.a + P.b * normal_at(i)'
      : `select(0.0, ${ld('X[P.offX + i]')} * P.b, uniform_at(i) >= P.a)`;
  return {
    name: `random_${kind}`,
    inputs: kind === 'dropout' ? [{ name: 'X', type: t as 'f32' }] : [],
    outputs: [{ name: 'Y', type: t as 'f32' }],
    uniforms: [...STREAM_UNIFORMS, ['a', 'f32'], ['b', 'f32'], ...(kind === 'dropout' ? [['offX', 'u32'] as ['offX', 'u32']] : [])],
    body: `${PHILOX_WGSL}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = wg_linear(wid, nwg) * ${WG}u + lid;
  if (i >= P.n) { return; }
  Y[P.offY + i] = ${st(expr)};
}`,
  };
});

function generate(be: WebGpuBackend, kind: 'uniform' | 'normal' | 'dropout', y: TensorInfo, attrs: Record<string, unknown>, a: number, b: number, x?: TensorInfo): void {
  const n = sizeOf(y.shape);
  const [seedLo, seedHi] = splitWords(attrs.seed as number);
  const [offLo, offHi] = splitWords((attrs.offset as number | undefined) ?? 0);
  const by = be.bindView(y);
  const bx = x ? be.bindView(x) : undefined;
  be.dispatch(genProgram(wgslType(y.dtype), kind), bx ? [bx.ref] : [], [by.ref],
    [n, by.elemOffset, seedLo, seedHi, offLo, offHi, a, b, ...(bx ? [bx.elemOffset] : [])], groups(n, WG));
}

registerKernel<WebGpuBackend>('random_uniform', W, (be, _in, [y], attrs) => {
  const low = (attrs.low as number | undefined) ?? 0, high = (attrs.high as number | undefined) ?? 1;
  // as the reference: lo and width rounded to f32 first, then lo + width*u in f32
  const lo = Math.fround(low);
  generate(be, 'uniform', y, attrs, lo, Math.fround(Math.fround(high) - lo));
});

registerKernel<WebGpuBackend>('random_normal', W, (be, _in, [y], attrs) => {
  generate(be, 'normal', y, attrs, (attrs.mean as number | undefined) ?? 0, (attrs.std as number | undefined) ?? 1);
});

registerKernel<WebGpuBackend>('dropout', W, (be, [x], [y], attrs) => {
  const p = attrs.p as number;
  generate(be, 'dropout', y, attrs, Math.fround(p), Math.fround(1 / (1 - p)), x);
});
