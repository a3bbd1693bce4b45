// Image folders in ImageNet layout: root/<class>/**/<image>, classes = sorted folder names.

import { readdir, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { readImage } from '../image.js';
import { checkIndex, type ImageDataset, type ImageSample } from './types.js';

/** torchvision's IMG_EXTENSIONS, matched case-insensitively. */
export const IMAGE_EXTENSIONS: readonly string[] = ['.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp'];

/** Files the reference's ImageNet loader leaves out (by file name). */
export const IMAGENET_EXCLUDED: readonly string[] = ['n06596364_9591.JPEG'];

export interface ImageFolderOptions {
  /** Extensions to keep (with the dot, case-insensitive). Default: IMAGE_EXTENSIONS. */
  extensions?: readonly string[];
  /** File names to leave out. Default: IMAGENET_EXCLUDED (as the reference does). */
  exclude?: readonly string[];
  /** Descend into sub-folders of each class folder. Default: true. */
  recursive?: boolean;
}

/** Code-unit order (Python's sorted() order for BMP names). */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

async function listFiles(dir: string, recursive: boolean, keep: (name: string) => boolean, out: string[]): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true });
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    const p = join(dir, e.name);
    let directory = e.isDirectory();
    let file = e.isFile();
    if (e.isSymbolicLink()) {
      try {
        const s = await stat(p);
        directory = s.isDirectory();
        file = s.isFile();
      } catch {
        continue; // dangling link
      }
    }
    if (directory && recursive) await listFiles(p, recursive, keep, out);
    else if (file && keep(e.name)) out.push(p);
  }
}

/**
 * An image folder dataset. With class sub-folders: label = index of the folder in sorted
 * order, items = image files in sorted order of their paths relative to the root (the
 * reference's `sorted(relpaths)`: class-major). Without sub-folders: the root's own images,
 * unlabelled. Hidden entries (starting with '.') are ignored.
 */
export class ImageFolderDataset implements ImageDataset {
  private constructor(
    readonly root: string,
    readonly classes: readonly string[],
    /** Paths relative to root, '/'-separated, sorted. */
    readonly files: readonly string[],
    private readonly labels: Int32Array | null,
  ) {}

  static async open(root: string, options: ImageFolderOptions = {}): Promise<ImageFolderDataset> {
    if (!(await isDir(root))) throw new Error(`image folder ${root} does not exist or is not a folder`);
    const exts = (options.extensions ?? IMAGE_EXTENSIONS).map((e) => e.toLowerCase());
    const exclude = new Set(options.exclude ?? IMAGENET_EXCLUDED);
    const keep = (name: string): boolean => !exclude.has(name) && exts.some((e) => name.toLowerCase().endsWith(e));
    const recursive = options.recursive ?? true;

    const top = await readdir(root, { withFileTypes: true });
    const classes: string[] = [];
    for (const e of top) {
      if (e.name.startsWith('.')) continue;
      if (e.isDirectory() || (e.isSymbolicLink() && (await isDir(join(root, e.name))))) classes.push(e.name);
    }
    classes.sort(compare);

    const rel = (p: string): string => relative(root, p).split(sep).join('/');
    if (classes.length === 0) {
      const files: string[] = [];
      await listFiles(root, false, keep, files);
      const sorted = files.map(rel).sort(compare);
      return new ImageFolderDataset(root, [], sorted, null);
    }
    const items: { path: string; label: number }[] = [];
    for (let c = 0; c < classes.length; c++) {
      const files: string[] = [];
      await listFiles(join(root, classes[c]), recursive, keep, files);
      for (const f of files) items.push({ path: rel(f), label: c });
    }
    items.sort((a, b) => compare(a.path, b.path));
    return new ImageFolderDataset(root, classes, items.map((x) => x.path), Int32Array.from(items, (x) => x.label));
  }

  get length(): number {
    return this.files.length;
  }

  pathOf(i: number): string {
    checkIndex(i, this.files.length, 'ImageFolderDataset');
    return join(this.root, ...this.files[i].split('/'));
  }

  labelOf(i: number): number | undefined {
    checkIndex(i, this.files.length, 'ImageFolderDataset');
    return this.labels ? this.labels[i] : undefined;
  }

  async get(i: number): Promise<ImageSample> {
    const path = this.pathOf(i);
    const img = await readImage(path);
    return { image: img.data, height: img.height, width: img.width, label: this.labelOf(i), path };
  }
}
