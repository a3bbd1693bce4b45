// Runs on every rank of `mpiexec -n N` (started by bench/run.mjs): rank 0 prints JSON lines.
//   allreduce: in-place all-reduce of the AR-B gradient (1.37 GB in f32), f32 and bf16 on the
//              wire, raw (comm.allReduce) and through DataParallel (device readback, 25 MB
//              buckets, write-back) from a tensor of the cpu backend.
//   train_s:   the config-S tokenizer step of `npm run bench -w @ibq/ibq` (batch 16 per rank),
//              with its gradient averaged over the ranks; images/s over all ranks.
import { createBackend } from '@ibq/kernels';
import { IBQTrainer, parseConfig } from '@ibq/ibq';
import { dispose, keep, noGrad, setBackend, tensor, zeros } from '@ibq/tensor';
import { DataParallel, initMpi } from '../src/index.js';

const args = process.argv.slice(2);
const what = args[0];
const get = (k: string) => (args.includes(`--${k}`) ? args[args.indexOf(`--${k}`) + 1] : undefined);
const runs = Number(get('runs') ?? 3);
const comm = await initMpi();
const emit = (o: Record<string, unknown>) => comm.isRoot && console.log(JSON.stringify({ ranks: comm.size, ...o }));

async function medianMs(fn: () => Promise<void>, n = runs): Promise<number> {
  await comm.barrier();
  await fn();
  const ts: number[] = [];
  for (let i = 0; i < n; i++) {
    await comm.barrier();
    const t = performance.now();
    await fn();
    ts.push(performance.now() - t);
  }
  ts.sort((a, b) => a - b);
  return ts[Math.floor(ts.length / 2)];
}

if (what === 'allreduce') {
  const bytes = Number(get('bytes') ?? 1.37e9);
  const n = Math.floor(bytes / 4);
  // NCCL's "bus bandwidth": what each link carries in a ring all-reduce, 2(N-1)/N x the payload per unit time.
  const bus = (payload: number, ms: number) => +((2 * (comm.size - 1) / comm.size) * payload / (ms / 1000) / 1e9).toFixed(3);
  const f32 = new Float32Array(n).fill(1 + comm.rank);
  const msF32 = await medianMs(() => comm.allReduce(f32, { op: 'avg' }));
  emit({ bench: 'allreduce', wire: 'f32', gradient_bytes: n * 4, wire_bytes: n * 4, ms: +msF32.toFixed(1), algbw_GBps: +(n * 4 / (msF32 / 1000) / 1e9).toFixed(3), busbw_GBps: bus(n * 4, msF32) });
  const half = new Uint16Array(n).fill(0x3f80);
  const msBf16 = await medianMs(() => comm.allReduce(half, { dtype: 'bf16', op: 'avg' }));
  emit({ bench: 'allreduce', wire: 'bf16', gradient_bytes: n * 4, wire_bytes: n * 2, ms: +msBf16.toFixed(1), algbw_GBps: +(n * 4 / (msBf16 / 1000) / 1e9).toFixed(3), busbw_GBps: bus(n * 2, msBf16), vs: 'f32 above', ratio: +(msF32 / msBf16).toFixed(3) });
  const msWire = await medianMs(() => comm.allReduce(f32, { op: 'avg', wire: 'bf16' }));
  emit({ bench: 'allreduce', wire: 'bf16 from f32 (converted on the MPI thread)', gradient_bytes: n * 4, wire_bytes: n * 2, ms: +msWire.toFixed(1), algbw_GBps: +(n * 4 / (msWire / 1000) / 1e9).toFixed(3), vs: 'f32 above', ratio: +(msF32 / msWire).toFixed(3) });
  // The trainer's path: gradients of device tensors, in 25 MB buckets.
  const backend = await createBackend('cpu');
  setBackend(backend);
  const p = keep(noGrad(() => zeros([n])));
  p.grad = keep(noGrad(() => zeros([n])));
  for (const wire of ['f32', 'bf16'] as const) {
    const dp = new DataParallel(comm, { wire });
    const ms = await medianMs(() => dp.allReduceGradients([p]));
    emit({ bench: 'DataParallel.allReduceGradients', wire, backend: 'cpu', gradient_bytes: n * 4, ms: +ms.toFixed(1), algbw_GBps: +(n * 4 / (ms / 1000) / 1e9).toFixed(3), vs: `allreduce ${wire} above`, ratio: +((wire === 'f32' ? msF32 : msWire) / ms).toFixed(3) });
  }
  dispose([p]);
  backend.destroy();
} else if (what === 'train_s') {
  const backend = await createBackend('cpu');
  setBackend(backend);
  const yaml = `model:
  init_args:
    ddconfig: {double_z: false, z_channels: 64, resolution: 32, in_channels: 3, out_ch: 3, ch: 64, ch_mult: [1, 2, 2], num_res_blocks: 2, attn_resolutions: [8], dropout: 0.0}
    n_embed: 1024
    embed_dim: 64
    use_entropy_loss: true
    learning_rate: 1e-4
`;
  const cfg = parseConfig(yaml);
  const dp = new DataParallel(comm);
  const t = new IBQTrainer({ config: { ...cfg, use_ema: false }, backend, gan: false, dataParallel: dp });
  await t.synchronize();
  const x = tensor(new Float32Array(16 * 3 * 32 * 32).map((_, i) => Math.sin(i * 0.37 + comm.rank)), [16, 3, 32, 32]);
  const ms = await medianMs(async () => {
    await t.trainStep([x]);
  });
  emit({
    bench: 'train step', config: 'S (as npm run bench -w @ibq/ibq), batch 16 per rank', backend: 'cpu', threads_per_rank: process.env.IBQ_THREADS,
    ms: +ms.toFixed(1), images_per_s: +((16 * comm.size * 1000) / ms).toFixed(2),
  });
  dispose([x]);
  t.dispose();
  backend.destroy();
} else {
  throw new Error(`usage: mpi.bench.ts allreduce [--bytes B] | train_s  [--runs N]`);
}
await comm.finalize();
process.exit(0);
