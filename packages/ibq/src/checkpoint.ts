// Official checkpoints -> our weights: which entries of a Lightning state_dict are the
// tokenizer's, where their EMA copies live, and how an AR checkpoint splits in two
// (spec: tokenizer.md §8-9, README-summary "Checkpoint facts").

/** Top-level modules of the generator; everything else (loss.*, model_ema.*) is left out. */
const GENERATOR_PREFIXES = ['encoder.', 'decoder.', 'quantize.', 'quant_conv.', 'post_quant_conv.'];
const AR_TOKENIZER_PREFIX = 'first_stage_model.';
const AR_TRANSFORMER_PREFIX = 'transformer.';

export class CheckpointContentError extends Error {
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'CheckpointContentError';
  }
}

export function isGeneratorKey(key: string): boolean {
  return GENERATOR_PREFIXES.some((p) => key.startsWith(p));
}

/** The EMA buffer name of a parameter: `model_ema.` + the name with every dot removed. */
export function emaKey(key: string): string {
  return `model_ema.${key.replaceAll('.', '')}`;
}

export type CheckpointKind = 'tokenizer' | 'ar';

export function checkpointKind<T>(sd: Map<string, T>): CheckpointKind {
  for (const k of sd.keys()) if (k.startsWith(AR_TOKENIZER_PREFIX) || k.startsWith(AR_TRANSFORMER_PREFIX)) return 'ar';
  return 'tokenizer';
}

/**
 * The generator's weights from a tokenizer checkpoint's state_dict, under their dotted names:
 * the EMA copies (`ema`, what evaluation and the AR stage use) or the raw parameters.
 */
export function extractGenerator<T>(sd: Map<string, T>, mode: 'ema' | 'raw', file = '<checkpoint>'): Map<string, T> {
  const keys = [...sd.keys()].filter(isGeneratorKey);
  if (keys.length === 0) {
    throw new CheckpointContentError(file, `no tokenizer weights found (no key starts with ${GENERATOR_PREFIXES.join(', ')})`);
  }
  const out = new Map<string, T>();
  if (mode === 'raw') {
    for (const k of keys) out.set(k, sd.get(k)!);
    return out;
  }
  const missing: string[] = [];
  for (const k of keys) {
    const v = sd.get(emaKey(k));
    if (v === undefined) missing.push(`${k} (expected ${emaKey(k)})`);
    else out.set(k, v);
  }
  if (missing.length) {
    throw new CheckpointContentError(
      file,
      `${missing.length} of ${keys.length} tokenizer weights have no EMA copy (use --raw for the raw weights):\n  ${missing.slice(0, 20).join('\n  ')}`,
    );
  }
  return out;
}

/**
 * An AR checkpoint holds the transformer (`transformer.*`) and the tokenizer it was trained with
 * (`first_stage_model.*`, already the EMA values). Returns both, the tokenizer under its plain names.
 */
export function splitArCheckpoint<T>(sd: Map<string, T>, file = '<checkpoint>'): { tokenizer: Map<string, T>; transformer: Map<string, T> } {
  const tokenizer = new Map<string, T>();
  const transformer = new Map<string, T>();
  for (const [k, v] of sd) {
    if (k.startsWith(AR_TOKENIZER_PREFIX)) {
      const name = k.slice(AR_TOKENIZER_PREFIX.length);
      if (isGeneratorKey(name)) tokenizer.set(name, v);
    } else if (k.startsWith(AR_TRANSFORMER_PREFIX)) transformer.set(k, v);
  }
  if (transformer.size === 0) throw new CheckpointContentError(file, "no 'transformer.*' weights: not an AR checkpoint");
  if (tokenizer.size === 0) throw new CheckpointContentError(file, "no 'first_stage_model.*' tokenizer weights in this AR checkpoint");
  return { tokenizer, transformer };
}
