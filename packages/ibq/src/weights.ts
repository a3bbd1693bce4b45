// Reading tokenizer weights from any file a user may hold: an official Lightning .ckpt (through
// the weights-only reader), an AR .ckpt (its embedded tokenizer), our converted .safetensors,
// or a training checkpoint of ours; and `ibq convert`'s writing of the official ones.

import { basename, dirname, extname, join } from 'node:path';
import {
  type HostTensor, type LazyHostTensor, SafetensorsReader, TorchCheckpoint, type TorchTensorRef, toFloat32, writeSafetensors,
} from '@ibq/tensor';
import { checkpointKind, emaKey, extractGenerator, isGeneratorKey, splitArCheckpoint } from './checkpoint.js';

export type WeightsChoice = 'ema' | 'raw';

export interface ReadWeightsOptions {
  /** Which copy of an official tokenizer checkpoint to take (default 'ema', as evaluation does). */
  weights?: WeightsChoice;
  /** Keep pickle globals outside the allow-list as inert records instead of refusing the file. */
  allowUnknownGlobals?: boolean;
  /** Told when a choice was made for the user (e.g. no EMA copies, raw weights used). */
  notice?: (message: string) => void;
}

const isTorchFile = (path: string) => ['.ckpt', '.pth', '.pt', '.bin'].includes(extname(path).toLowerCase());

/** The tokenizer's weights under their official names, as float32 host tensors. */
export async function readTokenizerWeights(path: string, o: ReadWeightsOptions = {}): Promise<Map<string, HostTensor>> {
  if (isTorchFile(path)) return readFromTorch(path, o);
  const r = await SafetensorsReader.open(path);
  try {
    const keys = r.keys();
    // A training checkpoint of ours holds the official layout too: pick EMA or raw the same way.
    const hasEma = keys.some((k) => k.startsWith('model_ema.'));
    const gen = keys.filter(isGeneratorKey);
    if (gen.length === 0) throw new Error(`${path}: no tokenizer weights (no encoder.*, decoder.*, quantize.* keys)`);
    const choice = o.weights ?? (hasEma ? 'ema' : 'raw');
    if (choice === 'ema' && !hasEma) {
      if (o.weights === 'ema') throw new Error(`${path}: holds no EMA copies (model_ema.*); drop --ema to use its weights`);
    }
    const out = new Map<string, HostTensor>();
    for (const k of gen) {
      const src = choice === 'ema' && hasEma ? emaKey(k) : k;
      if (!r.has(src)) throw new Error(`${path}: missing '${src}'`);
      out.set(k, f32(await r.read(src)));
    }
    return out;
  } finally {
    await r.close();
  }
}

function f32(t: HostTensor): HostTensor {
  return t.dtype === 'f32' ? t : { dtype: 'f32', shape: t.shape, data: toFloat32(t) };
}

async function openTorch(path: string, o: ReadWeightsOptions): Promise<TorchCheckpoint> {
  return TorchCheckpoint.open(path, { unknownGlobals: o.allowUnknownGlobals ? 'opaque' : 'reject' });
}

/** The tokenizer's entries of a torch checkpoint (refs, not yet read) with the names they load under. */
function tokenizerRefs(ck: TorchCheckpoint, path: string, o: ReadWeightsOptions): Map<string, TorchTensorRef> {
  const sd = ck.stateDict();
  if (checkpointKind(sd) === 'ar') return splitArCheckpoint(sd, path).tokenizer;
  const hasEma = [...sd.keys()].some((k) => k.startsWith('model_ema.'));
  let choice = o.weights ?? 'ema';
  if (choice === 'ema' && !hasEma && o.weights === undefined) {
    o.notice?.(`${path}: no EMA copies (model_ema.*) in this checkpoint; using its raw weights`);
    choice = 'raw';
  }
  return extractGenerator(sd, choice, path);
}

async function readFromTorch(path: string, o: ReadWeightsOptions): Promise<Map<string, HostTensor>> {
  const ck = await openTorch(path, o);
  try {
    const out = new Map<string, HostTensor>();
    for (const [k, ref] of tokenizerRefs(ck, path, o)) out.set(k, f32(await ck.read(ref)));
    return out;
  } finally {
    await ck.close();
  }
}

/**
 * An AR model's transformer weights (`transformer.*`, float32) from an official AR .ckpt, the
 * `.transformer.safetensors` that `ibq convert` writes, or any safetensors holding them under
 * the official names (with or without the `transformer.` prefix; returned with it).
 */
export async function readTransformerWeights(path: string, o: ReadWeightsOptions = {}): Promise<Map<string, HostTensor>> {
  const out = new Map<string, HostTensor>();
  if (isTorchFile(path)) {
    const ck = await openTorch(path, o);
    try {
      for (const [k, ref] of splitArCheckpoint(ck.stateDict(), path).transformer) out.set(k, f32(await ck.read(ref)));
    } finally {
      await ck.close();
    }
    return out;
  }
  const r = await SafetensorsReader.open(path);
  try {
    const keys = r.keys();
    const prefixed = keys.some((k) => k.startsWith('transformer.'));
    const own = prefixed ? keys.filter((k) => k.startsWith('transformer.')) : keys.filter((k) => !isGeneratorKey(k));
    if (!own.some((k) => k.endsWith('tok_emb.weight'))) {
      throw new Error(`${path}: no AR transformer weights (no 'transformer.tok_emb.weight' or 'tok_emb.weight')`);
    }
    for (const k of own) out.set(prefixed ? k : `transformer.${k}`, f32(await r.read(k)));
    return out;
  } finally {
    await r.close();
  }
}

export interface ConvertResult {
  kind: 'tokenizer' | 'ar';
  /** Files written with their tensor counts. */
  written: { path: string; tensors: number }[];
}

/**
 * `ibq convert`: an official checkpoint to safetensors under the official names, float32,
 * one tensor in memory at a time. Tokenizer checkpoints give the EMA (default) or raw
 * generator; AR checkpoints give OUT (the tokenizer) and OUT's sibling `.transformer.safetensors`.
 */
export async function convertCheckpoint(input: string, output: string, o: ReadWeightsOptions = {}): Promise<ConvertResult> {
  const ck = await openTorch(input, o);
  try {
    const sd = ck.stateDict();
    const kind = checkpointKind(sd);
    const lazy = (ref: TorchTensorRef): LazyHostTensor => ({
      dtype: 'f32',
      shape: ref.shape,
      data: async () => toFloat32(await ck.read(ref)),
    });
    const meta = { source: basename(input), format: 'ibq-weights' };
    const written: ConvertResult['written'] = [];
    const write = async (path: string, refs: Map<string, TorchTensorRef>, extra: Record<string, string>) => {
      await writeSafetensors(path, [...refs].map(([k, r]) => [k, lazy(r)] as const), { metadata: { ...meta, ...extra } });
      written.push({ path, tensors: refs.size });
    };
    if (kind === 'tokenizer') {
      const choice = o.weights ?? 'ema';
      await write(output, extractGenerator(sd, choice, input), { weights: choice });
    } else {
      if (o.weights) o.notice?.(`${input}: an AR checkpoint's tokenizer is stored once (already the EMA values); --${o.weights} has no effect`);
      const { tokenizer, transformer } = splitArCheckpoint(sd, input);
      await write(output, tokenizer, { weights: 'ema', part: 'tokenizer' });
      await write(transformerPath(output), transformer, { part: 'transformer' });
    }
    return { kind, written };
  } finally {
    await ck.close();
  }
}

/** OUT.safetensors -> OUT.transformer.safetensors (beside it). */
export function transformerPath(output: string): string {
  const ext = extname(output);
  return join(dirname(output), `${basename(output, ext)}.transformer${ext || '.safetensors'}`);
}
