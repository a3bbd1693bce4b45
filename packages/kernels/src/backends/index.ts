// Finding and creating backends. cpu and webgpu are loaded lazily: importing this package
// never loads Dawn or compiles wasm until a backend is asked for.

import type { Backend } from '../types.js';
import { ReferenceBackend } from './reference/index.js';

export type BackendName = 'reference' | 'cpu' | 'webgpu';
export const BACKEND_NAMES: BackendName[] = ['reference', 'cpu', 'webgpu'];

export interface BackendOptions {
  /** cpu: worker threads (default: available cores). */
  threads?: number;
  /** webgpu: dispatches recorded before a submit. */
  submitEvery?: number;
  /** webgpu: use f16 storage where the adapter has shader-f16. */
  f16?: boolean;
}

/** Whether a backend can hold f16 tensors (what mixed precision needs), or why not. */
export function supportsF16(backend: Backend): true | string {
  return backend.supports('cast', ['f16'], { dtype: 'f32' });
}

type Factory = (options: BackendOptions) => Promise<Backend>;

const factories: Record<BackendName, Factory> = {
  reference: async () => new ReferenceBackend(),
  cpu: async (o) => {
    const m = await loadOptional('cpu', () => import('./cpu/index.js' as string));
    return new m.CpuBackend(o);
  },
  webgpu: async (o) => {
    const m = await loadOptional('webgpu', () => import('./webgpu/index.js' as string));
    return new m.WebGpuBackend(o);
  },
};

async function loadOptional(name: string, load: () => Promise<any>): Promise<any> {
  try {
    return await load();
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ERR_MODULE_NOT_FOUND' || /Cannot find module|Failed to load url/.test(String(err.message))) {
      throw new BackendUnavailableError(name, `the ${name} backend is not built into this package`);
    }
    throw e;
  }
}

export class BackendUnavailableError extends Error {
  constructor(readonly backend: string, readonly reason: string) {
    super(`backend '${backend}' is unavailable: ${reason}`);
    this.name = 'BackendUnavailableError';
  }
}

/** Creates and initialises a backend; throws BackendUnavailableError with the reason if it cannot run here. */
export async function createBackend(name: BackendName, options: BackendOptions = {}): Promise<Backend> {
  const factory = factories[name];
  if (!factory) throw new Error(`unknown backend '${name}' (known: ${BACKEND_NAMES.join(', ')})`);
  const b = await factory(options);
  try {
    await b.init();
  } catch (e) {
    b.destroy();
    if (e instanceof BackendUnavailableError) throw e;
    throw new BackendUnavailableError(name, (e as Error).message);
  }
  return b;
}

export interface BackendProbe {
  name: BackendName;
  backend?: Backend;
  reason?: string;
}

/** Tries every backend (or those named); absent ones come back with their reason. */
export async function probeBackends(names: BackendName[] = BACKEND_NAMES, options: BackendOptions = {}): Promise<BackendProbe[]> {
  const out: BackendProbe[] = [];
  for (const name of names) {
    try {
      out.push({ name, backend: await createBackend(name, options) });
    } catch (e) {
      if (!(e instanceof BackendUnavailableError)) throw e;
      out.push({ name, reason: e.reason });
    }
  }
  return out;
}
