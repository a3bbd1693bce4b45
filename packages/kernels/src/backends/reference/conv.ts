// Reference kernels for src/ops/conv.ts: direct loops, float64 accumulation.

import { registerKernel } from '../../dispatch.js';
import { conv2dGeometry, poolGeometry } from '../../ops/conv.js';
import { boolAttr } from '../../shape.js';
import { type ReferenceBackend, view } from './backend.js';

const R = 'reference';

registerKernel<ReferenceBackend>('conv2d', R, (_b, [x, w, bias], [y], attrs) => {
  const g = conv2dGeometry('conv2d', attrs);
  const [N, C, H, W] = x.shape;
  const [O, , KH, KW] = w.shape;
  const [, , OH, OW] = y.shape;
  const xv = view(x), wv = view(w), yv = view(y);
  const bv = bias ? view(bias) : null;
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      for (let i = 0; i < OH; i++) {
        for (let j = 0; j < OW; j++) {
          let acc = bv ? bv[o] : 0;
          for (let c = 0; c < C; c++) {
            for (let kh = 0; kh < KH; kh++) {
              const h = i * g.sh + kh - g.pt;
              if (h < 0 || h >= H) continue;
              for (let kw = 0; kw < KW; kw++) {
                const col = j * g.sw + kw - g.pl;
                if (col < 0 || col >= W) continue;
                acc += xv[((n * C + c) * H + h) * W + col] * wv[((o * C + c) * KH + kh) * KW + kw];
              }
            }
          }
          yv[((n * O + o) * OH + i) * OW + j] = acc;
        }
      }
    }
  }
});

registerKernel<ReferenceBackend>('conv2d_grad_input', R, (_b, [dy, w], [dx], attrs) => {
  const g = conv2dGeometry('conv2d_grad_input', attrs);
  const [N, O, OH, OW] = dy.shape;
  const [, C, KH, KW] = w.shape;
  const [, , H, W] = dx.shape;
  const dyv = view(dy), wv = view(w), dxv = view(dx);
  // Scatter each output gradient into the inputs its window read; positions no window read stay 0.
  const acc = new Float64Array(dxv.length);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      for (let i = 0; i < OH; i++) {
        for (let j = 0; j < OW; j++) {
          const d = dyv[((n * O + o) * OH + i) * OW + j];
          for (let c = 0; c < C; c++) {
            for (let kh = 0; kh < KH; kh++) {
              const h = i * g.sh + kh - g.pt;
              if (h < 0 || h >= H) continue;
              for (let kw = 0; kw < KW; kw++) {
                const col = j * g.sw + kw - g.pl;
                if (col < 0 || col >= W) continue;
                acc[((n * C + c) * H + h) * W + col] += d * wv[((o * C + c) * KH + kh) * KW + kw];
              }
            }
          }
        }
      }
    }
  }
  dxv.set(acc);
});

registerKernel<ReferenceBackend>('conv2d_grad_weight', R, (_b, [x, dy], [dw], attrs) => {
  const g = conv2dGeometry('conv2d_grad_weight', attrs);
  const [N, C, H, W] = x.shape;
  const [, O, OH, OW] = dy.shape;
  const [, , KH, KW] = dw.shape;
  const xv = view(x), dyv = view(dy), dwv = view(dw);
  for (let o = 0; o < O; o++) {
    for (let c = 0; c < C; c++) {
      for (let kh = 0; kh < KH; kh++) {
        for (let kw = 0; kw < KW; kw++) {
          let acc = 0;
          for (let n = 0; n < N; n++) {
            for (let i = 0; i < OH; i++) {
              const h = i * g.sh + kh - g.pt;
              if (h < 0 || h >= H) continue;
              for (let j = 0; j < OW; j++) {
                const col = j * g.sw + kw - g.pl;
                if (col < 0 || col >= W) continue;
                acc += dyv[((n * O + o) * OH + i) * OW + j] * xv[((n * C + c) * H + h) * W + col];
              }
            }
          }
          dwv[((o * C + c) * KH + kh) * KW + kw] = acc;
        }
      }
    }
  }
});

registerKernel<ReferenceBackend>('upsample_nearest2x', R, (_b, [x], [y]) => {
  const [N, C, H, W] = x.shape;
  const xv = view(x), yv = view(y);
  const OH = 2 * H, OW = 2 * W;
  for (let p = 0; p < N * C; p++) {
    for (let i = 0; i < OH; i++) {
      for (let j = 0; j < OW; j++) yv[(p * OH + i) * OW + j] = xv[(p * H + (i >> 1)) * W + (j >> 1)];
    }
  }
});

registerKernel<ReferenceBackend>('upsample_nearest2x_grad', R, (_b, [dy], [dx]) => {
  const [N, C, H, W] = dx.shape;
  const dyv = view(dy), dxv = view(dx);
  const OW = 2 * W;
  for (let p = 0; p < N * C; p++) {
    for (let i = 0; i < H; i++) {
      for (let j = 0; j < W; j++) {
        const top = (p * 2 * H + 2 * i) * OW + 2 * j;
        dxv[(p * H + i) * W + j] = dyv[top] + dyv[top + 1] + dyv[top + OW] + dyv[top + OW + 1];
      }
    }
  }
});

/**
 * PyTorch's source index for align_corners=False without a scale factor: (dst+0.5)*in/out - 0.5,
 * clamped below at 0; returns the two neighbours (the second clamped to the edge) and the weight of the second.
 */
function sourceTaps(dst: number, inSize: number, outSize: number, halfPixel: boolean): [number, number, number] {
  // TF1 legacy (halfPixel false): src = dst * in/out, never negative.
  const src = halfPixel ? Math.max((dst + 0.5) * (inSize / outSize) - 0.5, 0) : dst * (inSize / outSize);
  const i0 = Math.floor(src);
  const i1 = i0 < inSize - 1 ? i0 + 1 : i0;
  return [i0, i1, src - i0];
}

registerKernel<ReferenceBackend>('resize_bilinear', R, (_b, [x], [y], attrs) => {
  const [N, C, H, W] = x.shape;
  const [, , OH, OW] = y.shape;
  const halfPixel = boolAttr('resize_bilinear', attrs, 'halfPixel', true);
  const xv = view(x), yv = view(y);
  const rows = Array.from({ length: OH }, (_, i) => sourceTaps(i, H, OH, halfPixel));
  const cols = Array.from({ length: OW }, (_, j) => sourceTaps(j, W, OW, halfPixel));
  for (let p = 0; p < N * C; p++) {
    const base = p * H * W;
    for (let i = 0; i < OH; i++) {
      const [h0, h1, lh] = rows[i];
      for (let j = 0; j < OW; j++) {
        const [w0, w1, lw] = cols[j];
        const top = (1 - lw) * xv[base + h0 * W + w0] + lw * xv[base + h0 * W + w1];
        const bottom = (1 - lw) * xv[base + h1 * W + w0] + lw * xv[base + h1 * W + w1];
        yv[(p * OH + i) * OW + j] = (1 - lh) * top + lh * bottom;
      }
    }
  }
});

for (const op of ['max_pool2d', 'avg_pool2d'] as const) {
  registerKernel<ReferenceBackend>(op, R, (_b, [x], [y], attrs) => {
    const { kh, kw, g, countIncludePad } = poolGeometry(op, attrs);
    const [N, C, H, W] = x.shape;
    const [, , OH, OW] = y.shape;
    const xv = view(x), yv = view(y);
    for (let p = 0; p < N * C; p++) {
      for (let i = 0; i < OH; i++) {
        for (let j = 0; j < OW; j++) {
          const h0 = i * g.sh - g.pt, w0 = j * g.sw - g.pl;
          let acc = op === 'max_pool2d' ? -Infinity : 0, inside = 0;
          for (let h = Math.max(h0, 0); h < Math.min(h0 + kh, H); h++) {
            for (let w = Math.max(w0, 0); w < Math.min(w0 + kw, W); w++) {
              const v = xv[(p * H + h) * W + w];
              if (op === 'max_pool2d') acc = v > acc || Number.isNaN(v) ? v : acc;
              else acc += v;
              inside++;
            }
          }
          yv[(p * OH + i) * OW + j] = op === 'max_pool2d' ? acc : acc / (countIncludePad ? kh * kw : inside);
        }
      }
    }
  });
}
