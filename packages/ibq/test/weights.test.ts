import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ReferenceBackend } from '@ibq/kernels';
import { readSafetensors, setBackend, f16ToF32, f32ToF16 } from '@ibq/tensor';
import { IBQTokenizer, convertCheckpoint, loadConfig, readTokenizerWeights, transformerPath } from '../src/index.js';

const fixture = (f: string) => fileURLToPath(new URL(`./fixtures/${f}`, import.meta.url));
const config = loadConfig(fileURLToPath(new URL('../configs/micro_test.yaml', import.meta.url)));
const tmp = () => mkdtempSync(join(tmpdir(), 'ibq-weights-'));

/** The EMA values the generator script stored (float32), to compare against. */
const ema = (await readSafetensors(fixture('micro_ema.safetensors'))).tensors;

describe('official checkpoints', () => {
  it('convert --ema writes the EMA generator under the official names, nothing else', async () => {
    const out = join(tmp(), 'micro.safetensors');
    const res = await convertCheckpoint(fixture('micro.ckpt'), out, { weights: 'ema' });
    expect(res).toEqual({ kind: 'tokenizer', written: [{ path: out, tensors: ema.size }] });
    const { tensors, metadata } = await readSafetensors(out);
    expect(metadata).toMatchObject({ weights: 'ema', source: 'micro.ckpt' });
    expect([...tensors.keys()].sort()).toEqual([...ema.keys()].sort());
    for (const [k, t] of ema) expect(Array.from(tensors.get(k)!.data as Float32Array), k).toEqual(Array.from(t.data as Float32Array));
  });

  it('convert --raw takes the raw (float16) weights, decoded to float32', async () => {
    const out = join(tmp(), 'raw.safetensors');
    await convertCheckpoint(fixture('micro.ckpt'), out, { weights: 'raw' });
    const { tensors } = await readSafetensors(out);
    const k = 'encoder.conv_in.weight';
    const want = f16ToF32(f32ToF16(Array.from(ema.get(k)!.data as Float32Array, (v) => v * 0.5)));
    expect(tensors.get(k)!.dtype).toBe('f32');
    expect(Array.from(tensors.get(k)!.data as Float32Array)).toEqual(Array.from(want));
  });

  it('splits an AR checkpoint into tokenizer and transformer files', async () => {
    const out = join(tmp(), 'ar.safetensors');
    const res = await convertCheckpoint(fixture('ar_micro.ckpt'), out);
    expect(res.kind).toBe('ar');
    expect(res.written.map((w) => w.path)).toEqual([out, transformerPath(out)]);
    expect(transformerPath(out)).toMatch(/ar\.transformer\.safetensors$/);
    const tok = (await readSafetensors(out)).tensors;
    expect([...tok.keys()].sort()).toEqual([...ema.keys()].sort());
    const tr = (await readSafetensors(transformerPath(out))).tensors;
    expect([...tr.keys()]).toEqual(['transformer.tok_embeddings.weight', 'transformer.blocks.0.attention.wqkv.weight']);
  });

  it('a model loads strictly from a .ckpt, an AR .ckpt and a converted file alike', async () => {
    setBackend(new ReferenceBackend());
    for (const f of [fixture('micro.ckpt'), fixture('ar_micro.ckpt'), fixture('micro_ema.safetensors')]) {
      const model = new IBQTokenizer(config);
      model.loadStateDict(await readTokenizerWeights(f));
      const got = await model.stateDict().get('quantize.embedding.weight')!.array();
      expect(got, f).toEqual(Array.from(ema.get('quantize.embedding.weight')!.data as Float32Array));
      model.dispose();
    }
  });

  it('errors name the file: not a checkpoint, no EMA copies', async () => {
    const bogus = fixture('golden_small.safetensors').replace('.safetensors', '.missing.ckpt');
    await expect(readTokenizerWeights(bogus)).rejects.toThrow(/golden_small\.missing\.ckpt/);
    await expect(readTokenizerWeights(fixture('micro_ema.safetensors'), { weights: 'ema' })).rejects.toThrow(/micro_ema\.safetensors: holds no EMA copies/);
  });
});
