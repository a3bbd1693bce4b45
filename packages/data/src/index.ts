// @ibq/data: image I/O, the reference's transforms, datasets, the batch loader. The .npy/.npz
// names are re-exported from @ibq/formats, their one home; writeFileAtomic is formats' atomic
// writer with this package's default (missing folders are created).

export { DataFormatError, ImageDecodeError } from './errors.js';
export { writeFileAtomic } from './fsutil.js';
export {
  decodeImage, encodeJpeg, encodePng, floatToImage, imageToFloat, readImage, readImageForModel, readImageSize, tileImages,
  writePng, type ModelInput, type PixelImage, type RgbImage,
} from './image.js';
export {
  applyTransform, centerCrop, centerCropOffset, cropHWC, evalTransform, floatToByte, fromFloat, randomCrop,
  randomCropOffset, resizeBilinear, resizeBilinearCv, resizeBilinearCvWindow, roundHalfEven, smallestMaxSize, smallestMaxSizeShape, toFloat,
  trainTransform, transformImage, type TransformSpec,
} from './transforms.js';
export { hash32, permutation, Rng, uniformAt } from './rng.js';
export {
  decodeNpy, dtypeOf, dtypeSize, encodeNpy, NpyFile, npyHeader, parseNpyHeader, readNpy, writeNpy,
  type NpyArray, type NpyData, type NpyDtype, type NpyHeader,
} from '@ibq/formats';
export {
  crc32, encodeNpz, NpzFile, NpzWriter, readNpz, SampleNpzWriter, writeNpz, type NpzInput, type NpzWriterOptions,
} from '@ibq/formats';
export type { ImageDataset, ImageSample } from './datasets/types.js';
export { IMAGE_EXTENSIONS, IMAGENET_EXCLUDED, ImageFolderDataset, type ImageFolderOptions } from './datasets/image-folder.js';
export {
  decodeIdx, FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, IdxImageDataset, MNIST_CLASSES, mnistFiles, openMnist, readIdx,
  type IdxArray, type IdxImageOptions, type IdxType,
} from './datasets/idx.js';
export { CIFAR10_CLASSES, Cifar10Dataset } from './datasets/cifar.js';
export {
  labelsPathOf, readShardRecord, readTokenIndex, shardStem, TOKEN_INDEX_FILE, TOKEN_INDEX_FORMAT, TokenShardDataset, writeIndexedShard,
  writeTokenIndex, writeTokenShard, type TokenAugmentation, type TokenSample, type TokenShardIndex, type TokenShardRecord,
} from './datasets/tokens.js';
export { TokenLoader, type TokenBatch, type TokenLoaderOptions } from './token-loader.js';
export { augmentViews, viewCount } from './views.js';
export { BatchLoader, type Batch, type LoaderOptions, type LoaderPosition, type Shard, type SkippedItem, type SkipSummary, shardOrder } from './loader.js';
export { DecodePool, defaultWorkerCount, workerSource } from './pool.js';
