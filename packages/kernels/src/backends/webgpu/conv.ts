// WGSL kernels for src/ops/conv.ts. The three convolutions are implicit GEMMs on the tiled
// kernel of matmul.ts (tiles in workgroup memory, the im2col matrix never materialised):
//   conv2d:             Y[n,o,p]  = W[o, (c,kh,kw)] . X_col[(c,kh,kw), (n,p)]   M=O, N=N*OH*OW, K=C*KH*KW
//   conv2d_grad_input:  dX[n,c,q] = W^T[c, (o,kh,kw)] . dY_col[(o,kh,kw), (n,q)] M=C, N=N*H*W,  K=O*KH*KW
//   conv2d_grad_weight: dW[o,(c,kh,kw)] = dY[o, (n,p)] . X_col^T[(n,p), (c,kh,kw)] M=O, N=C*KH*KW, K=N*OH*OW
// upsample / resize / pooling are one thread per output element.

import { registerKernel } from '../../dispatch.js';
import { conv2dGeometry, poolGeometry } from '../../ops/conv.js';
import { boolAttr, intArrayAttr } from '../../shape.js';
import { type TensorInfo, sizeOf } from '../../types.js';
import type { WebGpuBackend } from './backend.js';
import { type MatmulTile, gemmGrid, gemmProgram, tileFor } from './matmul.js';
import { type Program, groups, memo, wgslType } from './program.js';

const W = 'webgpu';
const WG = 256;

const GEOM: Program['uniforms'] = [
  ['Nb', 'u32'], ['C', 'u32'], ['H', 'u32'], ['Wd', 'u32'], ['O', 'u32'], ['KH', 'u32'], ['KW', 'u32'], ['OH', 'u32'], ['OW', 'u32'],
  ['sh', 'u32'], ['sw', 'u32'], ['pt', 'u32'], ['pl', 'u32'],
];

const convProgram = memo((t: string, kind: 'fwd' | 'dx' | 'dw', hasBias: boolean, tile: MatmulTile): Program => {
  const ld = (e: string) => (t === 'f32' ? e : `f32(${e})`);
  const st = (e: string) => (t === 'f32' ? e : `${t}(${e})`);
  const uniforms: Program['uniforms'] = [['M', 'u32'], ['N', 'u32'], ['K', 'u32'], ['batchBase', 'u32'], ['off0', 'u32'], ['off1', 'u32'], ['off2', 'u32'], ['offY', 'u32'], ...GEOM];
  let decls: string;
  let names: string[];
  if (kind === 'fwd') {
    names = hasBias ? ['X', 'Wt', 'Bias'] : ['X', 'Wt'];
    decls = `
fn prologue(batch: u32) {}
fn loadA(m: u32, k: u32) -> f32 { return ${ld('Wt[P.off1 + m * P.K + k]')}; }
fn loadB(k: u32, n: u32) -> f32 {
  let khw = P.KH * P.KW;
  let c = k / khw;
  let kh = (k / P.KW) % P.KH;
  let kw = k % P.KW;
  let ohw = P.OH * P.OW;
  let b = n / ohw;
  let p = n % ohw;
  let h = i32((p / P.OW) * P.sh + kh) - i32(P.pt);
  let w = i32((p % P.OW) * P.sw + kw) - i32(P.pl);
  if (h < 0 || w < 0 || u32(h) >= P.H || u32(w) >= P.Wd) { return 0.0; }
  return ${ld('X[P.off0 + ((b * P.C + c) * P.H + u32(h)) * P.Wd + u32(w)]')};
}
fn storeY(m: u32, n: u32, v: f32) {
  let ohw = P.OH * P.OW;
  let b = n / ohw;
  let p = n % ohw;
  Y[P.offY + (b * P.O + m) * ohw + p] = ${st(hasBias ? `v + ${ld('Bias[P.off2 + m]')}` : 'v')};
}`;
  } else if (kind === 'dx') {
    names = ['DY', 'Wt'];
    decls = `
fn prologue(batch: u32) {}
fn loadA(m: u32, k: u32) -> f32 {
  // W^T[c, (o, kh, kw)] = w[o, c, kh, kw]
  let khw = P.KH * P.KW;
  let o = k / khw;
  let r = k % khw;
  return ${ld('Wt[P.off1 + (o * P.C + m) * khw + r]')};
}
fn loadB(k: u32, n: u32) -> f32 {
  let khw = P.KH * P.KW;
  let o = k / khw;
  let kh = (k / P.KW) % P.KH;
  let kw = k % P.KW;
  let hw = P.H * P.Wd;
  let b = n / hw;
  let q = n % hw;
  let ti = i32(q / P.Wd) + i32(P.pt) - i32(kh);
  let tj = i32(q % P.Wd) + i32(P.pl) - i32(kw);
  if (ti < 0 || tj < 0) { return 0.0; }
  let i = u32(ti) / P.sh;
  let j = u32(tj) / P.sw;
  if (i * P.sh != u32(ti) || j * P.sw != u32(tj) || i >= P.OH || j >= P.OW) { return 0.0; }
  return ${ld('DY[P.off0 + ((b * P.O + o) * P.OH + i) * P.OW + j]')};
}
fn storeY(m: u32, n: u32, v: f32) {
  let hw = P.H * P.Wd;
  let b = n / hw;
  let q = n % hw;
  Y[P.offY + (b * P.C + m) * hw + q] = ${st('v')};
}`;
  } else {
    names = ['X', 'DY'];
    decls = `
fn prologue(batch: u32) {}
fn loadA(m: u32, k: u32) -> f32 {
  let ohw = P.OH * P.OW;
  let b = k / ohw;
  let p = k % ohw;
  return ${ld('DY[P.off1 + (b * P.O + m) * ohw + p]')};
}
fn loadB(k: u32, n: u32) -> f32 {
  let ohw = P.OH * P.OW;
  let b = k / ohw;
  let p = k % ohw;
  let khw = P.KH * P.KW;
  let c = n / khw;
  let kh = (n / P.KW) % P.KH;
  let kw = n % P.KW;
  let h = i32((p / P.OW) * P.sh + kh) - i32(P.pt);
  let w = i32((p % P.OW) * P.sw + kw) - i32(P.pl);
  if (h < 0 || w < 0 || u32(h) >= P.H || u32(w) >= P.Wd) { return 0.0; }
  return ${ld('X[P.off0 + ((b * P.C + c) * P.H + u32(h)) * P.Wd + u32(w)]')};
}
fn storeY(m: u32, n: u32, v: f32) { Y[P.offY + m * P.N + n] = ${st('v')}; }`;
  }
  return gemmProgram(`conv2d_${kind}`, names.map((name) => ({ name, type: t as 'f32' })), [{ name: 'Y', type: t as 'f32' }], uniforms, decls, tile);
});

function runConv(be: WebGpuBackend, kind: 'fwd' | 'dx' | 'dw', ins: readonly TensorInfo[], y: TensorInfo, dims: number[], M: number, N: number, K: number, tile = tileFor(be)): void {
  const bound = ins.map((t) => be.bindView(t));
  const by = be.bindView(y);
  const prog = (tile.direct ? directProgram : convProgram)(wgslType(y.dtype), kind, ins.length === 3, tile);
  const offs = [0, 1, 2].map((i) => bound[i]?.elemOffset ?? 0);
  const [gx, gy] = gemmGrid(M, N, tile);
  be.dispatch(prog, bound.map((b) => b.ref), [by.ref], [M, N, K, 0, ...offs, by.elemOffset, ...dims], [gx, gy, 1]);
}

/** conv2d on the GPU: exported for the benchmarks (tile variants). */
export function conv2dForward(be: WebGpuBackend, x: TensorInfo, w: TensorInfo, bias: TensorInfo | undefined, y: TensorInfo, attrs: Record<string, unknown>, tile = tileFor(be)): void {
  const g = conv2dGeometry('conv2d', attrs);
  const [N, C, H, Wd] = x.shape;
  const [O, , KH, KW] = w.shape;
  const [, , OH, OW] = y.shape;
  const ins = bias ? [x, w, bias] : [x, w];
  runConv(be, 'fwd', ins, y, [N, C, H, Wd, O, KH, KW, OH, OW, g.sh, g.sw, g.pt, g.pl], O, N * OH * OW, C * KH * KW, tile);
}

registerKernel<WebGpuBackend>('conv2d', W, (be, [x, w, bias], [y], attrs) => conv2dForward(be, x, w, bias, y, attrs));

registerKernel<WebGpuBackend>('conv2d_grad_input', W, (be, [dy, w], [dx], attrs) => {
  const g = conv2dGeometry('conv2d_grad_input', attrs);
  const [N, C, H, Wd] = dx.shape;
  const [O, , KH, KW] = w.shape;
  const [, , OH, OW] = dy.shape;
  runConv(be, 'dx', [dy, w], dx, [N, C, H, Wd, O, KH, KW, OH, OW, g.sh, g.sw, g.pt, g.pl], C, N * H * Wd, O * KH * KW);
});

registerKernel<WebGpuBackend>('conv2d_grad_weight', W, (be, [x, dy], [dw], attrs) => {
  const g = conv2dGeometry('conv2d_grad_weight', attrs);
  const [N, C, H, Wd] = x.shape;
  const [O, , KH, KW] = dw.shape;
  const [, , OH, OW] = dy.shape;
  // An empty batch (K = 0) still writes zeros: the GEMM's K loop simply does not run.
  runConv(be, 'dw', [x, dy], dw, [N, C, H, Wd, O, KH, KW, OH, OW, g.sh, g.sw, g.pt, g.pl], O, C * KH * KW, N * OH * OW);
});

const mapProgram = memo((t: string, kind: 'up' | 'upgrad' | 'bilinear' | 'bilinear_tf1'): Program => {
  const ld = (e: string) => (t === 'f32' ? e : `f32(${e})`);
  const st = (e: string) => (t === 'f32' ? e : `${t}(${e})`);
  let body: string;
  if (kind === 'up') {
    body = `let p = i / (P.OH * P.OW); let r = i % (P.OH * P.OW);
  let v = X[P.offX + (p * P.H + (r / P.OW) / 2u) * P.W + (r % P.OW) / 2u];
  Y[P.offY + i] = v;`;
  } else if (kind === 'upgrad') {
    body = `let p = i / (P.OH * P.OW); let r = i % (P.OH * P.OW);
  let base = P.offX + (p * P.H + (r / P.OW) * 2u) * P.W + (r % P.OW) * 2u;
  let v = (${ld('X[base]')} + ${ld('X[base + 1u]')}) + (${ld('X[base + P.W]')} + ${ld('X[base + P.W + 1u]')});
  Y[P.offY + i] = ${st('v')};`;
  } else {
    // TF1 legacy (bilinear_tf1): the source coordinate is dst * in/out, without the half-pixel offset.
    const src = (o: string, n: string, on: string) => (kind === 'bilinear'
      ? `max((f32(${o}) + 0.5) * (f32(P.${n}) / f32(P.${on})) - 0.5, 0.0)`
      : `f32(${o}) * (f32(P.${n}) / f32(P.${on}))`);
    body = `let p = i / (P.OH * P.OW); let r = i % (P.OH * P.OW);
  let oi = r / P.OW; let oj = r % P.OW;
  let sy = ${src('oi', 'H', 'OH')};
  let sx = ${src('oj', 'W', 'OW')};
  let h0 = min(u32(floor(sy)), P.H - 1u); let h1 = min(h0 + 1u, P.H - 1u);
  let w0 = min(u32(floor(sx)), P.W - 1u); let w1 = min(w0 + 1u, P.W - 1u);
  let lh = sy - f32(h0); let lw = sx - f32(w0);
  let base = P.offX + p * P.H * P.W;
  let top = (1.0 - lw) * ${ld('X[base + h0 * P.W + w0]')} + lw * ${ld('X[base + h0 * P.W + w1]')};
  let bottom = (1.0 - lw) * ${ld('X[base + h1 * P.W + w0]')} + lw * ${ld('X[base + h1 * P.W + w1]')};
  Y[P.offY + i] = ${st('(1.0 - lh) * top + lh * bottom')};`;
  }
  return {
    name: kind,
    inputs: [{ name: 'X', type: t as 'f32' }],
    outputs: [{ name: 'Y', type: t as 'f32' }],
    uniforms: [['n', 'u32'], ['H', 'u32'], ['W', 'u32'], ['OH', 'u32'], ['OW', 'u32'], ['offX', 'u32'], ['offY', 'u32']],
    body: `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = wg_linear(wid, nwg) * ${WG}u + lid;
  if (i >= P.n) { return; }
  ${body}
}`,
  };
});

function runMap(be: WebGpuBackend, kind: 'up' | 'upgrad' | 'bilinear' | 'bilinear_tf1', x: TensorInfo, y: TensorInfo): void {
  const [, , H, Wd] = x.shape;
  const [, , OH, OW] = y.shape;
  const n = sizeOf(y.shape);
  const bx = be.bindView(x), by = be.bindView(y);
  be.dispatch(mapProgram(wgslType(x.dtype), kind), [bx.ref], [by.ref], [n, H, Wd, OH, OW, bx.elemOffset, by.elemOffset], groups(n, WG));
}

registerKernel<WebGpuBackend>('upsample_nearest2x', W, (be, [x], [y]) => runMap(be, 'up', x, y));
registerKernel<WebGpuBackend>('upsample_nearest2x_grad', W, (be, [dy], [dx]) => runMap(be, 'upgrad', dy, dx));
registerKernel<WebGpuBackend>('resize_bilinear', W, (be, [x], [y], attrs) => {
  intArrayAttr('resize_bilinear', attrs, 'size');
  runMap(be, boolAttr('resize_bilinear', attrs, 'halfPixel', true) ? 'bilinear' : 'bilinear_tf1', x, y);
});

/** Max / average pooling, one thread per output element; the window is clipped to the plane. */
const poolProgram = memo((t: string, isMax: boolean): Program => {
  const ld = (e: string) => (t === 'f32' ? e : `f32(${e})`);
  const st = (e: string) => (t === 'f32' ? e : `${t}(${e})`);
  const init = isMax ? '-3.4028234663852886e38' : '0.0';
  // NaN propagates as in PyTorch: v != v is true only for NaN.
  const step = isMax ? 'if (v > acc || v != v) { acc = v; }' : 'acc += v;';
  const result = isMax ? 'acc' : 'acc / f32(select((hb - ha) * (wb - wa), P.KH * P.KW, P.includePad != 0u))';
  return {
    name: isMax ? 'max_pool2d' : 'avg_pool2d',
    inputs: [{ name: 'X', type: t as 'f32' }],
    outputs: [{ name: 'Y', type: t as 'f32' }],
    uniforms: [['n', 'u32'], ['H', 'u32'], ['W', 'u32'], ['OH', 'u32'], ['OW', 'u32'], ['offX', 'u32'], ['offY', 'u32'],
      ['KH', 'u32'], ['KW', 'u32'], ['sh', 'u32'], ['sw', 'u32'], ['pt', 'u32'], ['pl', 'u32'], ['includePad', 'u32']],
    body: `
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = wg_linear(wid, nwg) * ${WG}u + lid;
  if (i >= P.n) { return; }
  let p = i / (P.OH * P.OW); let r = i % (P.OH * P.OW);
  let h0 = i32((r / P.OW) * P.sh) - i32(P.pt); let w0 = i32((r % P.OW) * P.sw) - i32(P.pl);
  let ha = u32(max(h0, 0)); let hb = u32(min(h0 + i32(P.KH), i32(P.H)));
  let wa = u32(max(w0, 0)); let wb = u32(min(w0 + i32(P.KW), i32(P.W)));
  let base = P.offX + p * P.H * P.W;
  var acc = ${init};
  for (var h = ha; h < hb; h++) {
    for (var w = wa; w < wb; w++) {
      let v = ${ld('X[base + h * P.W + w]')};
      ${step}
    }
  }
  Y[P.offY + i] = ${st(result)};
}`,
  };
});

for (const op of ['max_pool2d', 'avg_pool2d'] as const) {
  registerKernel<WebGpuBackend>(op, W, (be, [x], [y], attrs) => {
    const { kh, kw, g, countIncludePad } = poolGeometry(op, attrs);
    const [, , H, Wd] = x.shape;
    const [, , OH, OW] = y.shape;
    const n = sizeOf(y.shape);
    const bx = be.bindView(x), by = be.bindView(y);
    be.dispatch(poolProgram(wgslType(x.dtype), op === 'max_pool2d'), [bx.ref], [by.ref],
      [n, H, Wd, OH, OW, bx.elemOffset, by.elemOffset, kh, kw, g.sh, g.sw, g.pt, g.pl, countIncludePad ? 1 : 0], groups(n, WG));
  });
}

/**
 * Direct convolutions for software adapters: each thread accumulates TM channels x TN positions
 * in registers and walks the reduction as nested (c, kh, kw) / (n, i, j) / (o, kh, kw) loops,
 * with per-position bases computed once: no integer division in the inner loop (llvmpipe
 * cannot vectorise u32 division, which made the implicit-GEMM loads the bottleneck there).
 */
const directProgram = memo((t: string, kind: 'fwd' | 'dx' | 'dw', hasBias: boolean, tile: MatmulTile): Program => {
  const { WGX, WGY, TM, TN } = tile;
  const ld = (e: string) => (t === 'f32' ? e : `f32(${e})`);
  const st = (e: string) => (t === 'f32' ? e : `${t}(${e})`);
  const uniforms: Program['uniforms'] = [['M', 'u32'], ['N', 'u32'], ['K', 'u32'], ['batchBase', 'u32'], ['off0', 'u32'], ['off1', 'u32'], ['off2', 'u32'], ['offY', 'u32'], ...GEOM];
  const names = kind === 'fwd' ? (hasBias ? ['X', 'Wt', 'Bias'] : ['X', 'Wt']) : kind === 'dx' ? ['DY', 'Wt'] : ['X', 'DY'];
  let setup: string, loop: string, store: string;
  if (kind === 'fwd') {
    // rows: output channels o; columns: output positions p = (b, i, j)
    setup = `
    let p = n0 + e;
    valid[e] = p < P.N;
    let ohw = P.OH * P.OW;
    let b = p / ohw; let r = p % ohw;
    base[e] = P.off0 + b * P.C * P.H * P.Wd;
    hh[e] = i32((r / P.OW) * P.sh) - i32(P.pt);
    ww[e] = i32((r % P.OW) * P.sw) - i32(P.pl);
    outAt[e] = (b * P.O) * ohw + r;`;
    loop = `
  let hw = P.H * P.Wd;
  for (var c = 0u; c < P.C; c++) {
    for (var kh = 0u; kh < P.KH; kh++) {
      for (var kw = 0u; kw < P.KW; kw++) {
        let k = (c * P.KH + kh) * P.KW + kw;
        var xv: array<f32, ${TN}>;
        for (var e = 0u; e < ${TN}u; e++) {
          let h = hh[e] + i32(kh); let w = ww[e] + i32(kw);
          var v = 0.0;
          if (valid[e] && h >= 0 && w >= 0 && u32(h) < P.H && u32(w) < P.Wd) { v = ${ld('X[base[e] + c * hw + u32(h) * P.Wd + u32(w)]')}; }
          xv[e] = v;
        }
        for (var i = 0u; i < ${TM}u; i++) {
          let m = min(m0 + i, P.M - 1u);
          let a = ${ld('Wt[P.off1 + m * P.K + k]')};
          for (var e = 0u; e < ${TN}u; e++) { acc[i][e] += a * xv[e]; }
        }
      }
    }
  }`;
    store = `Y[P.offY + outAt[e] + m * P.OH * P.OW] = ${st(hasBias ? `acc[i][e] + ${ld('Bias[P.off2 + m]')}` : 'acc[i][e]')};`;
  } else if (kind === 'dw') {
    // rows: output channels o; columns: q = (c, kh, kw)
    setup = `
    let q = n0 + e;
    valid[e] = q < P.N;
    let khw = P.KH * P.KW;
    base[e] = P.off0 + (q / khw) * P.H * P.Wd;
    hh[e] = i32((q / P.KW) % P.KH) - i32(P.pt);
    ww[e] = i32(q % P.KW) - i32(P.pl);
    outAt[e] = q;`;
    loop = `
  let ohw = P.OH * P.OW;
  let chw = P.C * P.H * P.Wd;
  for (var b = 0u; b < P.Nb; b++) {
    for (var i0 = 0u; i0 < P.OH; i0++) {
      for (var j0 = 0u; j0 < P.OW; j0++) {
        var xv: array<f32, ${TN}>;
        for (var e = 0u; e < ${TN}u; e++) {
          let h = hh[e] + i32(i0 * P.sh); let w = ww[e] + i32(j0 * P.sw);
          var v = 0.0;
          if (valid[e] && h >= 0 && w >= 0 && u32(h) < P.H && u32(w) < P.Wd) { v = ${ld('X[base[e] + b * chw + u32(h) * P.Wd + u32(w)]')}; }
          xv[e] = v;
        }
        let dyAt = P.off1 + b * P.O * ohw + i0 * P.OW + j0;
        for (var i = 0u; i < ${TM}u; i++) {
          let m = min(m0 + i, P.M - 1u);
          let a = ${ld('DY[dyAt + m * ohw]')};
          for (var e = 0u; e < ${TN}u; e++) { acc[i][e] += a * xv[e]; }
        }
      }
    }
  }`;
    store = `Y[P.offY + m * P.N + outAt[e]] = ${st('acc[i][e]')};`;
  } else {
    // rows: input channels c; columns: input positions (b, h, w)
    setup = `
    let p = n0 + e;
    valid[e] = p < P.N;
    let hw = P.H * P.Wd;
    let b = p / hw; let r = p % hw;
    base[e] = P.off0 + b * P.O * P.OH * P.OW;
    hh[e] = i32(r / P.Wd) + i32(P.pt);
    ww[e] = i32(r % P.Wd) + i32(P.pl);
    outAt[e] = b * P.C * hw + r;`;
    loop = `
  let ohw = P.OH * P.OW;
  let unit = P.sh == 1u && P.sw == 1u;
  for (var o = 0u; o < P.O; o++) {
    for (var kh = 0u; kh < P.KH; kh++) {
      for (var kw = 0u; kw < P.KW; kw++) {
        var dv: array<f32, ${TN}>;
        for (var e = 0u; e < ${TN}u; e++) {
          var ti = hh[e] - i32(kh); var tj = ww[e] - i32(kw);
          var ok = valid[e] && ti >= 0 && tj >= 0;
          if (ok && !unit) {
            // a stride skips positions: only exact multiples map back to an output
            ok = (u32(ti) % P.sh) == 0u && (u32(tj) % P.sw) == 0u;
            ti = ti / i32(P.sh); tj = tj / i32(P.sw);
          }
          var v = 0.0;
          if (ok && u32(ti) < P.OH && u32(tj) < P.OW) { v = ${ld('DY[base[e] + o * ohw + u32(ti) * P.OW + u32(tj)]')}; }
          dv[e] = v;
        }
        for (var i = 0u; i < ${TM}u; i++) {
          let m = min(m0 + i, P.M - 1u);
          let a = ${ld('Wt[P.off1 + ((o * P.C + m) * P.KH + kh) * P.KW + kw]')};
          for (var e = 0u; e < ${TN}u; e++) { acc[i][e] += a * dv[e]; }
        }
      }
    }
  }`;
    store = `Y[P.offY + outAt[e] + m * P.H * P.Wd] = ${st('acc[i][e]')};`;
  }
  return {
    name: `conv2d_${kind}_direct`,
    inputs: names.map((name) => ({ name, type: t as 'f32' })),
    outputs: [{ name: 'Y', type: t as 'f32' }],
    uniforms,
    body: `
@compute @workgroup_size(${WGX}, ${WGY})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let m0 = (wid.y * ${WGY}u + lid3.y) * ${TM}u;
  let n0 = (wid.x * ${WGX}u + lid3.x) * ${TN}u;
  if (m0 >= P.M || n0 >= P.N) { return; }
  var valid: array<bool, ${TN}>;
  var base: array<u32, ${TN}>;
  var hh: array<i32, ${TN}>;
  var ww: array<i32, ${TN}>;
  var outAt: array<u32, ${TN}>;
  for (var e = 0u; e < ${TN}u; e++) {${setup}
  }
  var acc: array<array<f32, ${TN}>, ${TM}>;
${loop}
  for (var i = 0u; i < ${TM}u; i++) {
    let m = m0 + i;
    if (m >= P.M) { continue; }
    for (var e = 0u; e < ${TN}u; e++) {
      if (valid[e]) { ${store} }
    }
  }
}`,
  };
});
