// `ibq merge-samples DIR... --out sample.npz`: the shards of one `ibq sample --shard` run into
// the file the unsharded run writes (rows in the run's seeded order, streamed).

import { type Command, EXIT_OK, UsageError } from '../command.js';
import { checkShards, mergeSampleShards } from '../samples.js';
import { requiredString } from '../tokenizer.js';

export const mergeSamplesCommand: Command = {
  name: 'merge-samples',
  summary: 'the shards of an ibq sample --shard run into one sample.npz',
  usage: `usage: ibq merge-samples DIR... --out sample.npz

Checks that the folders are the shards 0..n-1 of one run (their shard.json: same settings,
none missing, none twice) and writes arr_0 (uint8 [N, H, W, 3]) and arr_1 (int64 labels) with
the rows in the run's seeded shuffled order: the same file as the unsharded run's samples.npz.
  --out FILE   the .npz to write (atomically)`,
  options: { out: { type: 'string' } },
  positionals: { names: ['DIR'], min: 1 },
  async run(values, io, dirs) {
    const out = requiredString(values, 'out');
    if (!out.endsWith('.npz')) throw new UsageError(`--out must end in .npz, got '${out}'`);
    const shards = checkShards(dirs);
    const seed = shards[0].meta.settings.seed as number;
    const n = mergeSampleShards(shards, out, seed);
    io.out(`wrote ${out}: ${n} samples from ${shards.length} shard${shards.length > 1 ? 's' : ''}`);
    return EXIT_OK;
  },
};
