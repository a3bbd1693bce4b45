// Loading the FID Inception's weights from a user's file (pytorch-fid's
// pt_inception-2015-12-05-6726825d.pth, or any file in its key layout, .pth or .safetensors),
// strictly: every key, exact shapes, nothing else (num_batches_tracked entries allowed). The
// file's sha256 says whether it is pytorch-fid's release file; another file is accepted with a
// note, since its FIDs are not comparable with published ones.

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { Backend } from '@ibq/kernels';
import type { HostTensor } from '@ibq/tensor';
import { FID_WEIGHTS_FILE, FID_WEIGHTS_SHA256_PREFIX, InceptionV3, inceptionStateShapes } from './inception.js';
import { openWeightFile } from './weight-file.js';

export class InceptionWeightsError extends Error {
  override readonly name = 'InceptionWeightsError';
}

export interface InceptionWeightsInfo {
  path: string;
  sha256: string;
  /** The sha256 starts with the prefix in pytorch-fid's release URL. */
  official: boolean;
  /** One line for the user: which weights these are. */
  note: string;
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

/** Reads and validates the state dict; names the file and every bad key. */
export async function loadInceptionState(path: string): Promise<{ state: Map<string, HostTensor>; info: InceptionWeightsInfo }> {
  // A state dict and nothing else: any other pickled global is refused, not kept.
  const file = await openWeightFile(path, { unknownGlobals: 'reject' }).catch((e: Error) => {
    throw new InceptionWeightsError(`${path}: cannot read Inception weights: ${e.message}`);
  });
  try {
    const want = inceptionStateShapes();
    const missing = [...want.keys()].filter((k) => !file.shapes.has(k));
    const unexpected = [...file.shapes.keys()].filter((k) => !want.has(k) && !k.endsWith('.num_batches_tracked'));
    const mismatched = [...want]
      .filter(([k, s]) => file.shapes.has(k) && !sameShape(file.shapes.get(k)!, s))
      .map(([k, s]) => `${k}: file [${file.shapes.get(k)}] vs expected [${s}]`);
    if (missing.length || unexpected.length || mismatched.length) {
      const list = (label: string, keys: string[]) =>
        keys.length ? `\n  ${keys.length} ${label}: ${keys.slice(0, 20).join(', ')}${keys.length > 20 ? `, ... and ${keys.length - 20} more` : ''}` : '';
      throw new InceptionWeightsError(
        `${path}: not the FID Inception's weights (pytorch-fid's ${FID_WEIGHTS_FILE} key layout)`
        + list('missing keys', missing) + list('unexpected keys', unexpected) + list('shape mismatches', mismatched),
      );
    }
    const state = new Map<string, HostTensor>();
    for (const k of want.keys()) {
      const t = await file.read(k);
      const data = t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as ArrayLike<number>);
      for (let i = 0; i < data.length; i++) {
        if (!Number.isFinite(data[i])) throw new InceptionWeightsError(`${path}: ${k} holds a non-finite value at element ${i}`);
      }
      state.set(k, { dtype: 'f32', shape: t.shape, data });
    }
    const sha256 = await sha256File(path);
    const official = sha256.startsWith(FID_WEIGHTS_SHA256_PREFIX);
    const note = official
      ? `Inception weights: pytorch-fid's ${FID_WEIGHTS_FILE} (sha256 ${sha256.slice(0, 16)}...)`
      : `note: ${path} is in the FID Inception's layout but is not pytorch-fid's ${FID_WEIGHTS_FILE} `
        + `(sha256 ${sha256.slice(0, 16)}... does not start with ${FID_WEIGHTS_SHA256_PREFIX}): scores are not comparable with published ones`;
    return { state, info: { path, sha256, official, note } };
  } finally {
    await file.close();
  }
}

/** Loads the network from a weights file (see loadInceptionState). */
export async function loadInception(path: string, options: { backend?: Backend } = {}): Promise<{ net: InceptionV3; info: InceptionWeightsInfo }> {
  const { state, info } = await loadInceptionState(path);
  return { net: new InceptionV3(state, options), info };
}
