// `ibq convert IN.ckpt OUT.safetensors [--ema | --raw]`: an official checkpoint to safetensors.

import { convertCheckpoint } from '@ibq/ibq';
import { type Command, EXIT_OK, UsageError } from '../command.js';
import { existingFile } from '../options.js';

export const convertCommand: Command = {
  name: 'convert',
  summary: 'an official .ckpt to safetensors (EMA or raw tokenizer; AR checkpoints split in two)',
  usage: `usage: ibq convert IN.ckpt OUT.safetensors [--ema | --raw] [--allow-unknown-globals]

Reads an official Lightning checkpoint with the weights-only reader (nothing in the file
is executed) and writes the tokenizer's weights under the official names, float32:
  --ema                    the EMA copies (model_ema.*), what evaluation and the AR stage use (default)
  --raw                    the raw parameters
  --allow-unknown-globals  keep pickle globals outside the allow-list as inert records
                           instead of refusing the file (they are never called either way)
Loss, discriminator and optimizer entries are left out. An AR checkpoint (transformer.* and
first_stage_model.*) becomes OUT (its tokenizer) and OUT.transformer.safetensors.`,
  options: { ema: { type: 'boolean' }, raw: { type: 'boolean' }, 'allow-unknown-globals': { type: 'boolean' } },
  positionals: { names: ['IN.ckpt', 'OUT.safetensors'], min: 2, max: 2 },
  async run(values, io, [input, output]) {
    if (values.ema && values.raw) throw new UsageError('--ema and --raw exclude each other');
    existingFile(input, 'checkpoint');
    if (!output.endsWith('.safetensors')) throw new UsageError(`OUT must end in .safetensors, got '${output}'`);
    const res = await convertCheckpoint(input, output, {
      weights: values.raw ? 'raw' : values.ema ? 'ema' : undefined,
      allowUnknownGlobals: values['allow-unknown-globals'] === true,
      notice: (m) => io.err(m),
    });
    for (const w of res.written) io.out(`wrote ${w.path} (${w.tensors} tensors)`);
    return EXIT_OK;
  },
};
