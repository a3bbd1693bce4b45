// What every image dataset offers.

/** One item of an image dataset: RGB uint8 HWC. */
export interface ImageSample {
  image: Uint8Array;
  height: number;
  width: number;
  /** Class index, where the dataset has labels. */
  label?: number;
  /** The file the image came from, for file-backed datasets. */
  path?: string;
}

/** A random-access image dataset. */
export interface ImageDataset {
  readonly length: number;
  /** Item i (0 <= i < length); rejects with ImageDecodeError for an unreadable file. */
  get(i: number): Promise<ImageSample>;
  /** File-backed datasets: the file of item i, so that a decode worker can read it itself. */
  pathOf?(i: number): string;
  /** The label of item i without decoding it (file-backed datasets). */
  labelOf?(i: number): number | undefined;
  /** Class names, index = label. */
  readonly classes?: readonly string[];
}

export function checkIndex(i: number, length: number, what: string): void {
  if (!(Number.isInteger(i) && i >= 0 && i < length)) throw new RangeError(`${what}: index ${i} outside 0..${length - 1}`);
}
