// CIFAR-10 binary batches: records of 1 label byte + 3072 bytes (R, G, B planes of 32x32).

import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DataFormatError } from '../errors.js';
import { checkIndex, type ImageDataset, type ImageSample } from './types.js';

export const CIFAR10_CLASSES: readonly string[] = [
  'airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck',
];

const RECORD = 1 + 3 * 32 * 32;

/** CIFAR-10 from its binary version (cifar-10-binary.tar.gz, unpacked). */
export class Cifar10Dataset implements ImageDataset {
  readonly classes: readonly string[];
  private constructor(private readonly records: Uint8Array, readonly files: readonly string[], classes?: readonly string[]) {
    this.classes = classes ?? CIFAR10_CLASSES;
  }

  /**
   * `root` holds data_batch_1.bin ... data_batch_5.bin and test_batch.bin (or a
   * cifar-10-batches-bin folder that does). Class names come from batches.meta.txt when present.
   */
  static async open(root: string, split: 'train' | 'test'): Promise<Cifar10Dataset> {
    const dir = existsSync(join(root, 'cifar-10-batches-bin')) ? join(root, 'cifar-10-batches-bin') : root;
    const names = split === 'train' ? [1, 2, 3, 4, 5].map((k) => `data_batch_${k}.bin`) : ['test_batch.bin'];
    const files = names.map((n) => join(dir, n));
    const missing = files.filter((f) => !existsSync(f));
    if (missing.length) throw new Error(`CIFAR-10 ${split} split: missing ${missing.join(', ')}`);
    return Cifar10Dataset.fromFiles(files, existsSync(join(dir, 'batches.meta.txt')) ? join(dir, 'batches.meta.txt') : undefined);
  }

  /** Any list of batch files, concatenated in the order given. */
  static async fromFiles(files: readonly string[], metaPath?: string): Promise<Cifar10Dataset> {
    const parts: Uint8Array[] = [];
    for (const f of files) {
      const b = await readFile(f);
      if (b.length === 0 || b.length % RECORD !== 0) {
        throw new DataFormatError(f, `${b.length} bytes is not a whole number of ${RECORD}-byte CIFAR-10 records`);
      }
      parts.push(b);
    }
    const all = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
    let o = 0;
    for (const p of parts) {
      all.set(p, o);
      o += p.length;
    }
    let classes: string[] | undefined;
    if (metaPath) {
      classes = (await readFile(metaPath, 'utf8')).split('\n').map((s) => s.trim()).filter((s) => s.length > 0);
    }
    return new Cifar10Dataset(all, files, classes);
  }

  get length(): number {
    return this.records.length / RECORD;
  }

  labelOf(i: number): number {
    checkIndex(i, this.length, 'Cifar10Dataset');
    return this.records[i * RECORD];
  }

  getSync(i: number): ImageSample {
    checkIndex(i, this.length, 'Cifar10Dataset');
    const base = i * RECORD + 1;
    const n = 32 * 32;
    const image = new Uint8Array(n * 3);
    for (let p = 0; p < n; p++) {
      image[p * 3] = this.records[base + p];
      image[p * 3 + 1] = this.records[base + n + p];
      image[p * 3 + 2] = this.records[base + 2 * n + p];
    }
    return { image, height: 32, width: 32, label: this.records[i * RECORD] };
  }

  async get(i: number): Promise<ImageSample> {
    return this.getSync(i);
  }
}
