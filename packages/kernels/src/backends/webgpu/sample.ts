// WGSL kernel for src/ops/sample.ts: a workgroup per row. The top-k threshold (the k-th largest
// logit) and the top-p cut are found by bisection over the logits' order-preserving 32-bit keys
// (32 counting or summing passes over the row each), so nothing is sorted; the draw scans
// per-thread chunk sums, then the one chunk where the cumulative weight crosses u times the total.

import { registerKernel } from '../../dispatch.js';
import { sampleAttrs } from '../../ops/sample.js';
import type { WebGpuBackend } from './backend.js';
import { type Program, memo, wgslType } from './program.js';

const WG = 256;

const program = memo((t: string): Program => {
  const ld = (e: string) => (t === 'f32' ? e : `f32(${e})`);
  return {
    name: 'sample_logits',
    inputs: [{ name: 'X', type: t as 'f32' }, { name: 'U', type: t as 'f32' }],
    outputs: [{ name: 'Y', type: 'i32' }],
    uniforms: [['R', 'u32'], ['V', 'u32'], ['temp', 'f32'], ['topK', 'u32'], ['topP', 'f32'], ['offX', 'u32'], ['offU', 'u32'], ['offY', 'u32']],
    body: `
var<workgroup> red: array<f32, ${WG}>;
var<workgroup> chunk: array<f32, ${WG}>;

/** Order-preserving key of a float: a < b <=> key(a) < key(b) (for non-NaN values). */
fn fkey(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn wsum(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var w = ${WG / 2}u; w > 0u; w = w / 2u) {
    if (lid < w) { red[lid] = red[lid] + red[lid + w]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

fn wmax(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var w = ${WG / 2}u; w > 0u; w = w / 2u) {
    if (lid < w) { red[lid] = max(red[lid], red[lid + w]); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let n = wg_linear(wid, nwg);
  if (n >= P.R) { return; }
  let row = P.offX + n * P.V;
  let V = P.V;
  var lm = -f32_inf();
  for (var j = lid; j < V; j += ${WG}u) { lm = max(lm, ${ld('X[row + j]')}); }
  let m = wmax(lm, lid);
  // Top-k: the largest key with at least k logits at or above it is the k-th largest logit's key.
  var thr = 0u;
  if (P.topK > 0u && P.topK < V) {
    var ans = 0u;
    for (var bit = 31i; bit >= 0i; bit = bit - 1i) {
      let cand = ans | (1u << u32(bit));
      var c = 0.0;
      for (var j = lid; j < V; j += ${WG}u) { if (fkey(${ld('X[row + j]')}) >= cand) { c = c + 1.0; } }
      if (wsum(c, lid) >= f32(P.topK)) { ans = cand; }
    }
    thr = ans;
  }
  // Top-p: the smallest key K0 with (weight of kept logits whose key > K0) <= topP * total.
  if (P.topP < 1.0) {
    var lt = 0.0;
    for (var j = lid; j < V; j += ${WG}u) {
      let l = ${ld('X[row + j]')};
      if (fkey(l) >= thr) { lt = lt + exp((l - m) / P.temp); }
    }
    let limit = P.topP * wsum(lt, lid);
    // The largest K with weight(key > K) > limit; K0 = K + 1 (0 when even key 0 leaves <= limit above).
    var ans = 0u;
    var any = false;
    for (var bit = 31i; bit >= -1i; bit = bit - 1i) {
      var cand = ans;
      if (bit >= 0i) { cand = ans | (1u << u32(bit)); } else { cand = ans; }
      var s = 0.0;
      for (var j = lid; j < V; j += ${WG}u) {
        let l = ${ld('X[row + j]')};
        let k = fkey(l);
        if (k >= thr && k > cand) { s = s + exp((l - m) / P.temp); }
      }
      let above = wsum(s, lid);
      if (bit >= 0i) {
        if (above > limit) { ans = cand; }
      } else {
        any = above > limit;
      }
    }
    if (any) { thr = max(thr, ans + 1u); }
  }
  // The draw: chunk sums of the kept weights, then the crossing chunk, scanned in order.
  let per = (V + ${WG - 1}u) / ${WG}u;
  let j0 = min(lid * per, V);
  let j1 = min(j0 + per, V);
  var cs = 0.0;
  var lastKept = -1i;
  for (var j = j0; j < j1; j++) {
    let l = ${ld('X[row + j]')};
    if (fkey(l) >= thr) { cs = cs + exp((l - m) / P.temp); lastKept = i32(j); }
  }
  chunk[lid] = cs;
  red[lid] = f32(lastKept);
  workgroupBarrier();
  if (lid == 0u) {
    var total = 0.0;
    var last = -1i;
    for (var i = 0u; i < ${WG}u; i++) { total = total + chunk[i]; last = max(last, i32(red[i])); }
    let goal = ${ld('U[P.offU + n]')} * total;
    var run = 0.0;
    var tok = last;
    var done = false;
    for (var i = 0u; i < ${WG}u && !done; i++) {
      if (run + chunk[i] > goal) {
        let a = min(i * per, V);
        let b = min(a + per, V);
        for (var j = a; j < b && !done; j++) {
          let l = ${ld('X[row + j]')};
          if (fkey(l) >= thr) {
            run = run + exp((l - m) / P.temp);
            if (run > goal) { tok = i32(j); done = true; }
          }
        }
        done = true;
      } else {
        run = run + chunk[i];
      }
    }
    Y[P.offY + n] = tok;
  }
}`,
  };
});

registerKernel<WebGpuBackend>('sample_logits', 'webgpu', (be, [logits, u], [y], attrs) => {
  const o = sampleAttrs('sample_logits', attrs);
  const [R, V] = logits.shape;
  if (R === 0) return;
  const b = [logits, u, y].map((t) => be.bindView(t));
  be.dispatch(program(wgslType(logits.dtype)), [b[0].ref, b[1].ref], [b[2].ref], [R, V, o.temperature, o.topK, o.topP, ...b.map((x) => x.elemOffset)], R);
});
