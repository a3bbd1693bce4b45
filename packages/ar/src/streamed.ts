// Weights kept outside the backend's memory: a weight matrix lives in a host Float32Array and
// is copied into the backend one chunk of rows at a time, used, and freed, so the backend holds
// at most one chunk of it. This is how the GPT runs models whose float32 weights exceed the cpu
// backend's 4 GiB wasm memory (XL, XXL). `StreamedLinear` and `StreamedEmbedding` keep the
// state-dict names and forward semantics of nn.Linear and nn.Embedding; the GPT picks one pair
// or the other for every large matrix (`WeightLayers`), so the model code has no second path.

import { type Tensor, add, cast, concat, gatherRows, keep, matmul, nn, noGrad, scale, tensor, tidy, zeros } from '@ibq/tensor';

const { Module, Linear, Embedding } = nn;

/** Default bytes of weights copied into the backend per chunk (chosen by `--only stream_chunk`, see the README). */
export const DEFAULT_CHUNK_BYTES = 16 * 2 ** 20;

/** A row-major float32 matrix [rows, cols] in host memory. */
export class HostMatrix {
  private values: Float32Array | null = null;
  constructor(readonly rows: number, readonly cols: number) {}
  /** The values (allocated, zero, on first use: a model about to be loaded allocates nothing twice). */
  get host(): Float32Array {
    return (this.values ??= new Float32Array(this.rows * this.cols));
  }
  /** The values, read as a Tensor's are. */
  async data(): Promise<Float32Array> {
    return this.host;
  }
  /** Takes `values` as this matrix's storage, without a copy (a loaded checkpoint's array). */
  adopt(values: Float32Array): void {
    if (values.length !== this.rows * this.cols) throw new Error(`HostMatrix: ${values.length} values for [${this.rows}, ${this.cols}]`);
    this.values = values;
  }
  get shape(): number[] {
    return [this.rows, this.cols];
  }
  /** Rows per chunk of at most `chunkBytes` (at least one row). */
  chunkRows(chunkBytes: number): number {
    return Math.max(1, Math.floor(chunkBytes / (4 * Math.max(this.cols, 1))));
  }
  /** Uploads rows [r0, r0 + n) to the current backend. */
  upload(r0: number, n: number): Tensor {
    return tensor(this.host.subarray(r0 * this.cols, (r0 + n) * this.cols), [n, this.cols]);
  }
}

/** y = x2 W^T for x2 [M, cols] and a host W [rows, cols]: [M, rows], one chunk of W's rows at a time. */
export function streamedMatmulT(x2: Tensor, w: HostMatrix, chunkBytes: number): Tensor {
  const step = w.chunkRows(chunkBytes);
  if (step >= w.rows) return tidy(() => matmul(x2, w.upload(0, w.rows), false, true));
  const parts: Tensor[] = [];
  for (let r0 = 0; r0 < w.rows; r0 += step) {
    // tidy frees the chunk as soon as its product exists: one chunk resident at a time.
    parts.push(tidy(() => matmul(x2, w.upload(r0, Math.min(step, w.rows - r0)), false, true)));
  }
  return tidy(() => concat(parts, 1));
}

/**
 * table[ids] for a host table [V, D] and device ids, chunk by chunk: gather_rows gives a zero
 * row for an id outside the chunk, so the chunks' gathers sum to the lookup exactly.
 */
export function streamedGatherRows(w: HostMatrix, ids: Tensor, chunkBytes: number): Tensor {
  const step = w.chunkRows(chunkBytes);
  return tidy(() => {
    let out: Tensor = zeros([...ids.shape, w.cols]);
    const idsF = cast(ids, 'f32');
    for (let r0 = 0; r0 < w.rows; r0 += step) {
      const n = Math.min(step, w.rows - r0);
      out = tidy(() => add(out, gatherRows(w.upload(r0, n), cast(scale(idsF, 1, -r0), 'i32'))));
    }
    return out;
  });
}

/** nn.Linear with its weight [out, in] in host memory (the bias, small, stays on the backend). */
export class StreamedLinear extends Module {
  readonly weight: HostMatrix;
  readonly bias: Tensor | null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, bias: boolean, readonly chunkBytes: number) {
    super();
    this.weight = new HostMatrix(outFeatures, inFeatures);
    this.bias = bias ? this.param('bias', noGrad(() => keep(zeros([outFeatures])))) : null;
  }
  forward(x: Tensor): Tensor {
    const lead = x.shape.slice(0, -1);
    return tidy(() => {
      let y = streamedMatmulT(x.reshape([-1, this.inFeatures]), this.weight, this.chunkBytes);
      if (this.bias) y = add(y, this.bias);
      return y.reshape([...lead, this.outFeatures]);
    });
  }
}

/** nn.Embedding with its table in host memory. */
export class StreamedEmbedding extends Module {
  readonly weight: HostMatrix;
  constructor(readonly numEmbeddings: number, readonly dim: number, readonly chunkBytes: number) {
    super();
    this.weight = new HostMatrix(numEmbeddings, dim);
  }
  forward(ids: Tensor): Tensor {
    return streamedGatherRows(this.weight, ids, this.chunkBytes);
  }
}

/** The constructors of the GPT's large layers: the backend-resident ones, or the streamed ones. */
export interface WeightLayers {
  linear(inF: number, outF: number, bias: boolean): InstanceType<typeof Linear> | StreamedLinear;
  embedding(n: number, dim: number): InstanceType<typeof Embedding> | StreamedEmbedding;
}

export const residentLayers: WeightLayers = {
  linear: (i, o, b) => new Linear(i, o, b),
  embedding: (n, d) => new Embedding(n, d),
};

export function streamedLayers(chunkBytes = DEFAULT_CHUNK_BYTES): WeightLayers {
  return {
    linear: (i, o, b) => new StreamedLinear(i, o, b, chunkBytes),
    embedding: (n, d) => new StreamedEmbedding(n, d, chunkBytes),
  };
}

/** Every host matrix of a module tree under its state-dict name (`blocks.0.attention.wqkv.weight`...). */
export function hostMatrices(m: InstanceType<typeof Module>, prefix = ''): Map<string, HostMatrix> {
  const out = new Map<string, HostMatrix>();
  if (m instanceof StreamedLinear || m instanceof StreamedEmbedding) out.set(`${prefix}weight`, m.weight);
  for (const [n, c] of m.children()) for (const [k, v] of hostMatrices(c, `${prefix}${n}.`)) out.set(k, v);
  return out;
}

/**
 * Fills `out` with N(0, std) from a cheap seeded stream (xorshift128+ and Box-Muller): the
 * initial values of host matrices (a 2B-parameter model in tens of seconds; not the backend
 * generator's Philox stream, which would need every value on the backend first).
 */
export function fillNormal(out: Float32Array, seed: number, std: number): void {
  let s0 = (seed ^ 0x9e3779b9) >>> 0 || 1, s1 = (Math.imul(seed + 1, 0x85ebca6b) ^ 0xc2b2ae35) >>> 0 || 2;
  const next = () => {
    // xorshift64 on two 32-bit words (Marsaglia's xorshift, period 2^64 - 1), to (0, 1).
    let t = s0 ^ (s0 << 10);
    s0 = s1;
    s1 = (s1 ^ (s1 >>> 10) ^ (t ^ (t >>> 13))) >>> 0;
    t = 0;
    return ((s1 >>> 8) + 0.5) / 16777216;
  };
  for (let i = 0; i < out.length; i += 2) {
    const r = std * Math.sqrt(-2 * Math.log(next())), a = 2 * Math.PI * next();
    out[i] = r * Math.cos(a);
    if (i + 1 < out.length) out[i + 1] = r * Math.sin(a);
  }
}
