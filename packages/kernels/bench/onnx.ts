// A minimal ONNX model writer (protobuf by hand) for the benchmark peers: one graph of a few
// nodes with float32 inputs and outputs. Field numbers from onnx.proto.

type Field = [number, number | bigint | string | Uint8Array | Field[]];

function varint(v: number | bigint): number[] {
  let x = BigInt(v);
  if (x < 0n) x += 1n << 64n;
  const out: number[] = [];
  do {
    let byte = Number(x & 0x7fn);
    x >>= 7n;
    if (x > 0n) byte |= 0x80;
    out.push(byte);
  } while (x > 0n);
  return out;
}

function encode(fields: Field[]): Uint8Array {
  const parts: number[] = [];
  for (const [num, value] of fields) {
    if (typeof value === 'number' || typeof value === 'bigint') {
      parts.push(...varint((num << 3) | 0), ...varint(value));
    } else {
      const bytes = typeof value === 'string' ? new TextEncoder().encode(value) : value instanceof Uint8Array ? value : encode(value);
      parts.push(...varint((num << 3) | 2), ...varint(bytes.length));
      for (const b of bytes) parts.push(b);
    }
  }
  return Uint8Array.from(parts);
}

export interface OnnxNode {
  op: string;
  inputs: string[];
  outputs: string[];
  ints?: Record<string, number[]>;
  int?: Record<string, number>;
}

const FLOAT = 1;
const ATTR_INT = 2, ATTR_INTS = 7;

function valueInfo(name: string, shape: number[], elemType = FLOAT): Field[] {
  const dims: Field[] = shape.map((d): Field => [1, [[1, d]]]);
  return [[1, name], [2, [[1, [[1, elemType], [2, dims]]]]]];
}

/** Serialises a model of `nodes` with the given graph inputs and outputs (opset 17). */
export function onnxModel(nodes: OnnxNode[], inputs: [string, number[]][], outputs: [string, number[], number?][]): Uint8Array {
  const nodeFields: Field[] = nodes.map((n, i) => {
    const f: Field[] = [];
    for (const x of n.inputs) f.push([1, x]);
    for (const y of n.outputs) f.push([2, y]);
    f.push([3, `n${i}`], [4, n.op]);
    for (const [k, v] of Object.entries(n.ints ?? {})) f.push([5, [[1, k], ...v.map((x) => [8, x] as Field), [20, ATTR_INTS]]]);
    for (const [k, v] of Object.entries(n.int ?? {})) f.push([5, [[1, k], [3, v], [20, ATTR_INT]]]);
    return [1, f] as Field;
  });
  const graph: Field[] = [
    ...nodeFields,
    [2, 'bench'],
    ...inputs.map(([n, s]) => [11, valueInfo(n, s)] as Field),
    ...outputs.map(([n, s, t]) => [12, valueInfo(n, s, t ?? FLOAT)] as Field),
  ];
  return encode([[1, 8], [7, graph], [8, [[1, ''], [2, 17]]]]);
}
