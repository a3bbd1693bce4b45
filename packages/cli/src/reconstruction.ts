// "Reconstruct a batch and tile it", once: the tokenizer's forward pass on a batch of model
// images, and grids of inputs beside their reconstructions (train's image grids, the demo's
// grid, reconstruct's grid.png).

import { floatToImage, type PixelImage, tileImages, writePng } from '@ibq/data';
import type { IBQTokenizer } from '@ibq/ibq';
import { dispose, noGrad, tensor } from '@ibq/tensor';

/** Model images [n, 3, h, w] in [-1, 1] back to back, as one array. */
export function concatF32(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The tokenizer's reconstructions of `n` model images [n, 3, h, w] (no gradients; every tensor freed). */
export async function reconstructBatch(model: IBQTokenizer, xs: Float32Array, n: number, h: number, w: number): Promise<Float32Array> {
  const x = tensor(xs.subarray(0, n * 3 * h * w), [n, 3, h, w]);
  const { xrec, indices, losses } = noGrad(() => model.forward(x));
  try {
    return (await xrec.data()) as Float32Array;
  } finally {
    dispose([x, xrec, indices, losses]);
  }
}

/** Tiles: input i, then its reconstruction, for i in [0, n). */
export function reconstructionTiles(xs: Float32Array, rec: Float32Array, n: number, h: number, w: number): PixelImage[] {
  const tiles: PixelImage[] = [];
  for (let i = 0; i < n; i++) tiles.push(floatToImage(xs, h, w, 'chw', i * 3 * h * w), floatToImage(rec, h, w, 'chw', i * 3 * h * w));
  return tiles;
}

/** Reconstructs `n` images and writes them beside their inputs as a PNG grid of `columns` tiles. */
export async function writeReconstructionGrid(
  model: IBQTokenizer, xs: Float32Array, n: number, h: number, w: number, path: string, columns: number,
): Promise<void> {
  const rec = await reconstructBatch(model, xs, n, h, w);
  await writePng(path, tileImages(reconstructionTiles(xs, rec, n, h, w), { columns }));
}
