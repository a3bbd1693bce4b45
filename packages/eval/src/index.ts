// @ibq/eval: metrics that exist today: PSNR, SSIM, codebook usage, LPIPS (see README.md; FID and IS are not built yet).
export {
  codebookUsage, CodebookUsageCounter, inferDataRange, meanSquaredError, modelImageToUint8, psnr, psnrUint8,
  reconstructionMetrics, ReconstructionMetricsAccumulator, referenceUint8, ssim, ssimUint8, uint8ToUnit,
  type SsimOptions,
} from './image-metrics.js';
export * from './lpips.js';
