// What encode, decode and reconstruct share: choosing the device, building the tokenizer
// from a config and a checkpoint, batching with progress.

import { BACKEND_NAMES, type Backend, type BackendName, BackendUnavailableError, createBackend } from '@ibq/kernels';
import { nn, setBackend } from '@ibq/tensor';
import { ConfigError, type IBQConfig, IBQTokenizer, loadConfig, readTokenizerWeights } from '@ibq/ibq';
import { type OptionSpec, type OptionValues, UsageError } from './command.js';
import { DEVICE_OPTION, existingFile, requiredString } from './options.js';

import type { Io } from './io.js';

export const TOKENIZER_OPTIONS: OptionSpec = {
  config: { type: 'string' },
  ckpt: { type: 'string' },
  ...DEVICE_OPTION,
  'batch-size': { type: 'string' },
  ema: { type: 'boolean' },
  raw: { type: 'boolean' },
};

export const TOKENIZER_USAGE = `  --config C.yaml     tokenizer config (the reference's YAML schema)
  --ckpt W            weights: an official .ckpt (EMA copies unless --raw), an AR .ckpt, or .safetensors
  --device D          auto (default: webgpu, else cpu, else reference), webgpu, cpu or reference
  --batch-size N      images per forward pass (default 4)
  --ema | --raw       which copy of an official tokenizer checkpoint to use (default --ema)`;

/** The best backend found, or the one asked for (an error naming why it is unavailable). */
export async function openBackend(device: string | undefined): Promise<Backend> {
  const want = device ?? 'auto';
  if (want !== 'auto' && !BACKEND_NAMES.includes(want as BackendName)) {
    throw new UsageError(`--device: unknown device '${want}' (known: auto, ${BACKEND_NAMES.join(', ')})`);
  }
  const order: BackendName[] = want === 'auto' ? ['webgpu', 'cpu', 'reference'] : [want as BackendName];
  const reasons: string[] = [];
  for (const name of order) {
    try {
      // f16 is requested where the adapter has it, so --precision 16-mixed can use it.
      const b = await createBackend(name, name === 'webgpu' ? { f16: true } : {});
      if (want === 'auto' && name === 'webgpu' && isSoftwareAdapter(b)) {
        // A CPU-emulated GPU (llvmpipe/lavapipe) is slower than the wasm backend on the same cores.
        b.destroy();
        reasons.push('webgpu: a software adapter (CPU emulation); the cpu backend is faster here');
        continue;
      }
      setBackend(b);
      return b;
    } catch (e) {
      if (!(e instanceof BackendUnavailableError)) throw e;
      reasons.push(`${name}: ${e.reason}`);
      if (want !== 'auto') throw new UsageError(`--device ${want} is unavailable: ${e.reason}`);
    }
  }
  throw new Error(`no backend could start:\n  ${reasons.join('\n  ')}`);
}

function isSoftwareAdapter(b: Backend): boolean {
  const adapter = (b.describe?.() as { adapter?: { architecture?: string; isFallbackAdapter?: boolean } } | undefined)?.adapter;
  return adapter?.architecture === 'software' || adapter?.isFallbackAdapter === true;
}

export interface LoadedTokenizer {
  model: IBQTokenizer;
  config: IBQConfig;
  backend: Backend;
}

/** Config + weights -> a tokenizer in eval mode on the chosen device. */
export async function loadTokenizer(values: OptionValues, io: Io): Promise<LoadedTokenizer> {
  const configPath = existingFile(requiredString(values, 'config'), 'config');
  const ckptPath = existingFile(requiredString(values, 'ckpt'), 'checkpoint');
  if (values.ema && values.raw) throw new UsageError('--ema and --raw exclude each other');
  let config: IBQConfig;
  try {
    config = loadConfig(configPath);
  } catch (e) {
    if (e instanceof ConfigError) throw new UsageError(e.message);
    throw e;
  }
  const backend = await openBackend(values.device as string | undefined);
  try {
    const model = await buildTokenizer(config, ckptPath, { weights: values.raw ? 'raw' : values.ema ? 'ema' : undefined, configPath }, io);
    return { model, config, backend };
  } catch (e) {
    backend.destroy();
    throw e;
  }
}

/** A tokenizer of `config` with the weights of `ckptPath`, in eval mode, on the current backend. */
export async function buildTokenizer(
  config: IBQConfig, ckptPath: string, o: { weights?: 'raw' | 'ema'; configPath: string }, io: Io,
): Promise<IBQTokenizer> {
  const weights = await readTokenizerWeights(ckptPath, { weights: o.weights, notice: (m) => io.err(m) });
  const model = nn.withoutRandomInit(() => new IBQTokenizer(config));
  try {
    model.loadStateDict(weights);
  } catch (e) {
    model.dispose();
    throw new Error(`checkpoint '${ckptPath}' does not fit config '${o.configPath}': ${(e as Error).message}`);
  }
  return model.eval();
}

/** Runs `work` over [0, n) in batches, showing progress on long inputs. */
export async function inBatches(n: number, batch: number, io: Io, what: string, work: (start: number, end: number) => Promise<void>): Promise<void> {
  const t0 = Date.now();
  for (let s = 0; s < n; s += batch) {
    const e = Math.min(n, s + batch);
    await work(s, e);
    const dt = (Date.now() - t0) / 1000;
    const rate = e / Math.max(dt, 1e-9);
    io.status(`${what} ${e}/${n}  ${rate.toFixed(2)}/s  ETA ${((n - e) / rate).toFixed(0)}s`);
  }
  io.status('');
}
