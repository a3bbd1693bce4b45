// openFidSource on an ADM reference batch (images in 'arr_0' beside precomputed 'mu' / 'sigma'):
// statistics for `ibq fid` (as pytorch-fid reads a .npz), images when asked (eval-samples).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeNpz } from '@ibq/data';
import { afterAll, expect, it } from 'vitest';
import { closeSource, openFidSource, sourceLength } from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'ibq-fid-source-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it("an ADM reference batch is statistics by default and its 3 images with { images: true }", () => {
  const path = join(dir, 'ref.npz');
  writeNpz(path, {
    arr_0: { data: new Uint8Array(3 * 4 * 5 * 3), shape: [3, 4, 5, 3] },
    mu: new Float64Array(2), sigma: { data: Float64Array.of(1, 0, 0, 1), shape: [2, 2] },
  });
  const stats = openFidSource(path);
  expect(stats.kind).toBe('stats');
  const images = openFidSource(path, { images: true });
  expect(images.kind).toBe('images');
  expect(sourceLength(images)).toBe(3);
  closeSource(images);
});
