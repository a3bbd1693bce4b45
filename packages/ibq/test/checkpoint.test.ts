import { describe, expect, it } from 'vitest';
import { checkpointKind, emaKey, extractGenerator, splitArCheckpoint } from '../src/checkpoint.js';

const official = new Map<string, string>([
  ['encoder.down.0.block.0.norm1.weight', 'raw1'],
  ['decoder.up.4.attn.0.q.weight', 'raw2'],
  ['quantize.embedding.weight', 'raw3'],
  ['quant_conv.weight', 'raw4'],
  ['post_quant_conv.bias', 'raw5'],
  ['loss.discriminator.main.0.weight', 'disc'],
  ['loss.perceptual_loss.lin0.model.1.weight', 'lpips'],
  ['model_ema.decay', 'd'],
  ['model_ema.encoderdown0block0norm1weight', 'ema1'],
  ['model_ema.decoderup4attn0qweight', 'ema2'],
  ['model_ema.quantizeembeddingweight', 'ema3'],
  ['model_ema.quant_convweight', 'ema4'],
  ['model_ema.post_quant_convbias', 'ema5'],
  ['model_ema.lossdiscriminatormain0weight', 'emadisc'],
]);

describe('official checkpoint contents', () => {
  it('EMA names drop every dot', () => {
    expect(emaKey('decoder.up.4.attn.0.q.weight')).toBe('model_ema.decoderup4attn0qweight');
    expect(emaKey('quant_conv.weight')).toBe('model_ema.quant_convweight');
  });

  it('extracts the EMA or raw generator, leaving loss and discriminator out', () => {
    const ema = extractGenerator(official, 'ema');
    expect([...ema]).toEqual([
      ['encoder.down.0.block.0.norm1.weight', 'ema1'],
      ['decoder.up.4.attn.0.q.weight', 'ema2'],
      ['quantize.embedding.weight', 'ema3'],
      ['quant_conv.weight', 'ema4'],
      ['post_quant_conv.bias', 'ema5'],
    ]);
    expect([...extractGenerator(official, 'raw').values()]).toEqual(['raw1', 'raw2', 'raw3', 'raw4', 'raw5']);
    expect(checkpointKind(official)).toBe('tokenizer');
  });

  it('a missing EMA copy is an error naming the key and the way out', () => {
    const sd = new Map(official);
    sd.delete('model_ema.quant_convweight');
    expect(() => extractGenerator(sd, 'ema', 'x.ckpt')).toThrow(/x\.ckpt: 1 of 5 tokenizer weights have no EMA copy \(use --raw[\s\S]*quant_conv\.weight \(expected model_ema\.quant_convweight\)/);
  });

  it('splits an AR checkpoint into transformer and tokenizer', () => {
    const ar = new Map([
      ['transformer.tok_embeddings.weight', 't1'],
      ['transformer.blocks.0.attention.wqkv.weight', 't2'],
      ['first_stage_model.encoder.conv_in.weight', 'e1'],
      ['first_stage_model.quantize.embedding.weight', 'e2'],
    ]);
    expect(checkpointKind(ar)).toBe('ar');
    const { tokenizer, transformer } = splitArCheckpoint(ar);
    expect([...tokenizer.keys()]).toEqual(['encoder.conv_in.weight', 'quantize.embedding.weight']);
    expect([...transformer.keys()]).toEqual(['transformer.tok_embeddings.weight', 'transformer.blocks.0.attention.wqkv.weight']);
    expect(() => splitArCheckpoint(official, 'tok.ckpt')).toThrow(/tok\.ckpt: no 'transformer\.\*' weights/);
  });
});
