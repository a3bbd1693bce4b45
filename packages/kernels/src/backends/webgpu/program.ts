// A compute program: bindings, a uniform struct and a WGSL body. buildShader() prepends the
// declarations; the full text is the pipeline cache key (shader identity and specialisation,
// never sizes: sizes are uniform values).

import type { DType } from '../../types.js';

export type WgslScalar = 'f32' | 'f16' | 'i32' | 'u32';
export type UniformType = 'u32' | 'i32' | 'f32';

export interface Program {
  name: string;
  /** Read-only storage arrays, bound first, in order. */
  inputs: { name: string; type: WgslScalar }[];
  /** Read-write storage arrays, bound after the inputs. */
  outputs: { name: string; type: WgslScalar; atomic?: boolean }[];
  /** Fields of `P`, the uniform struct, bound last. Each is 4 bytes. */
  uniforms: [string, UniformType][];
  /** Functions and the `main` entry point. */
  body: string;
  /** Needs `enable subgroups;`. */
  subgroups?: boolean;
}

const built = new WeakMap<Program, { code: string; uniformBytes: number }>();

export function buildShader(p: Program, _hasF16: boolean): { code: string; uniformBytes: number } {
  const hit = built.get(p);
  if (hit) return hit;
  // (comments are left out: a comment naming f16 must not enable it on a device without shader-f16)
  const code = p.body.replace(/\/\/.*$/gm, '');
  const usesF16 = p.inputs.some((b) => b.type === 'f16') || p.outputs.some((b) => b.type === 'f16') || /\bf16\b/.test(code);
  const lines: string[] = [];
  if (usesF16) lines.push('enable f16;');
  if (p.subgroups) lines.push('enable subgroups;');
  let binding = 0;
  for (const b of p.inputs) lines.push(`@group(0) @binding(${binding++}) var<storage, read> ${b.name}: array<${b.type}>;`);
  for (const b of p.outputs) {
    const t = b.atomic ? `atomic<${b.type}>` : b.type;
    lines.push(`@group(0) @binding(${binding++}) var<storage, read_write> ${b.name}: array<${t}>;`);
  }
  if (p.uniforms.length > 0) {
    lines.push(`struct Params { ${p.uniforms.map(([n, t]) => `${n}: ${t},`).join(' ')} };`);
    lines.push(`@group(0) @binding(${binding++}) var<uniform> P: Params;`);
  }
  lines.push(LINEAR_ID);
  lines.push(p.body);
  const r = { code: lines.join('\n'), uniformBytes: p.uniforms.length * 4 };
  built.set(p, r);
  return r;
}

/** Linear workgroup index over a 2-D grid (more than 65535 workgroups fold into y). */
const LINEAR_ID = `fn wg_linear(wid: vec3<u32>, nwg: vec3<u32>) -> u32 { return wid.x + wid.y * nwg.x; }
// Infinity and NaN through private variables: WGSL rejects them in constant expressions.
var<private> BITS_INF: u32 = 0x7f800000u;
var<private> BITS_NAN: u32 = 0x7fc00000u;
fn f32_inf() -> f32 { return bitcast<f32>(BITS_INF); }
fn f32_nan() -> f32 { return bitcast<f32>(BITS_NAN); }`;

/** The WGSL storage type of a tensor dtype. */
export function wgslType(dtype: DType): WgslScalar {
  if (dtype === 'f32' || dtype === 'f16' || dtype === 'i32') return dtype;
  throw new Error(`webgpu: no WGSL type for ${dtype}`);
}

/** Memoises programs by specialisation key so shader text is built once per key. */
export function memo<A extends unknown[]>(make: (...args: A) => Program): (...args: A) => Program {
  const cache = new Map<string, Program>();
  return (...args: A) => {
    const key = JSON.stringify(args);
    let p = cache.get(key);
    if (!p) cache.set(key, (p = make(...args)));
    return p;
  };
}

/** Workgroups for n invocations at `size` per workgroup. */
export function groups(n: number, size: number): number {
  return Math.ceil(n / size);
}
