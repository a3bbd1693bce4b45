// A weights file (PyTorch .pth / Lightning .ckpt through the weights-only reader, or
// .safetensors) opened for reading its tensors one at a time: the one door through which the
// metric networks (LPIPS, Inception) read user-supplied weights. Nothing in a file is executed.

import { access } from 'node:fs/promises';
import { CheckpointError, type HostTensor, SafetensorsReader, TorchCheckpoint } from '@ibq/tensor';

/** A weights file opened for reading its tensors one at a time. */
export interface WeightFile {
  path: string;
  shapes: Map<string, readonly number[]>;
  read(key: string): Promise<HostTensor>;
  close(): Promise<void>;
}

/**
 * unknownGlobals: 'opaque' (default) keeps a Lightning checkpoint's hyper-parameter objects as
 * inert records; 'reject' refuses any global outside torch's tensor machinery (files that
 * should hold nothing but a state dict).
 */
export async function openWeightFile(path: string, options: { unknownGlobals?: 'opaque' | 'reject' } = {}): Promise<WeightFile> {
  await access(path).catch(() => {
    throw new CheckpointError(path, 'file not found or not readable');
  });
  if (path.endsWith('.safetensors')) {
    const r = await SafetensorsReader.open(path);
    return {
      path,
      shapes: new Map(r.keys().map((k) => [k, r.info(k).shape])),
      read: (k) => r.read(k),
      close: () => r.close(),
    };
  }
  // Weights-only: nothing in the file is executed; unknown globals (a Lightning checkpoint's
  // hyper-parameter objects) stay inert records, and only tensors are used.
  const ck = await TorchCheckpoint.open(path, { unknownGlobals: options.unknownGlobals ?? 'opaque' });
  try {
    const refs = ck.stateDict();
    return {
      path,
      shapes: new Map([...refs].map(([k, r]) => [k, r.shape])),
      read: (k) => ck.read(refs.get(k)!),
      close: () => ck.close(),
    };
  } catch (e) {
    await ck.close();
    throw e;
  }
}

