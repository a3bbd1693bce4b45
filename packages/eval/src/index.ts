// @ibq/eval: metric networks and metrics (FID, IS, LPIPS, PSNR, SSIM, codebook usage; see README.md).
export {
  codebookUsage, CodebookUsageCounter, inferDataRange, meanSquaredError, modelImageToUint8, psnr, psnrUint8,
  reconstructionMetrics, ReconstructionMetricsAccumulator, referenceUint8, ssim, ssimUint8, uint8ToUnit,
  type SsimOptions,
} from './image-metrics.js';
export * from './lpips.js';
export { FeatureStats, loadPartialStats, savePartialStats, type GaussianStats } from './feature-stats.js';
export {
  FRECHET_EPS, FRECHET_IMAGINARY_TOLERANCE, FrechetError, frechetDistance, frechetDistanceDetails, symmetricEigen, symmetricSqrt,
  traceSqrtProduct, type FrechetDetails,
} from './frechet.js';
export { accuracy, classifyImages, type ClassifiedSet, type ClassifierTraining, DemoClassifier, type ImageBatchSource, trainDemoClassifier } from './demo-classifier.js';
