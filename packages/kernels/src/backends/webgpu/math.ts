// WGSL helpers for functions WGSL lacks (erf, log1p) or computes too loosely for the
// tolerance classes on some drivers (tanh near 0, sigmoid for large |x|).

export const MATH_WGSL = `
fn erf_acc(x0: f32) -> f32 {
  // Rational approximation (as in Eigen's float erf): a few ulp on [-4, 4], +-1 beyond.
  let x = clamp(x0, -4.0, 4.0);
  let x2 = x * x;
  var p = x2 * -2.72614225801306e-10 + 2.77068142495902e-08;
  p = p * x2 + -2.10102402082508e-06;
  p = p * x2 + -5.69250639462346e-05;
  p = p * x2 + -7.34990630326855e-04;
  p = p * x2 + -2.95459980854025e-03;
  p = p * x2 + -1.60960333262415e-02;
  p = p * x;
  var q = x2 * -1.45660718464996e-05 + -2.13374055278905e-04;
  q = q * x2 + -1.68282697438203e-03;
  q = q * x2 + -7.37332916720468e-03;
  q = q * x2 + -1.42647390514189e-02;
  return p / q;
}
fn log1p_acc(e: f32) -> f32 {
  let u = 1.0 + e;
  if (u == 1.0) { return e; }
  return log(u) * (e / (u - 1.0));
}
fn expm1_acc(x: f32) -> f32 {
  let u = exp(x);
  if (u == 1.0) { return x; }
  let um1 = u - 1.0;
  if (um1 == -1.0) { return -1.0; }
  return um1 * x / log(u);
}
fn tanh_acc(x: f32) -> f32 {
  let ax = min(abs(x), 20.0);
  let e = expm1_acc(-2.0 * ax);
  return sign(x) * (-e / (2.0 + e));
}
fn sigmoid_acc(x: f32) -> f32 {
  return 1.0 / (1.0 + exp(-x));
}
fn silu_acc(x: f32) -> f32 {
  return x * sigmoid_acc(x);
}
fn silu_grad_acc(x: f32, dy: f32) -> f32 {
  let s = sigmoid_acc(x);
  return dy * s * (1.0 + x * (1.0 - s));
}
fn pow_acc(a: f32, b: f32) -> f32 {
  return pow(a, b);
}
`;

/** A workgroup-wide sum over `wg` invocations (tree reduction in workgroup memory). */
export function wgSumWgsl(wg: number): string {
  return `
var<workgroup> red: array<f32, ${wg}>;
fn wg_sum(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var w = ${wg / 2}u; w > 0u; w = w / 2u) {
    if (lid < w) { red[lid] = red[lid] + red[lid + w]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}`;
}
