// @ibq/eval: metrics that exist today: PSNR, SSIM, codebook usage, LPIPS (see README.md; FID and IS are not built yet).
export {
  codebookUsage, CodebookUsageCounter, inferDataRange, meanSquaredError, modelImageToUint8, psnr, psnrUint8,
  reconstructionMetrics, ReconstructionMetricsAccumulator, referenceUint8, ssim, ssimUint8, uint8ToUnit,
  type SsimOptions,
} from './image-metrics.js';
export * from './lpips.js';
export { FeatureStats, loadPartialStats, saveGaussianStats, savePartialStats, type GaussianStats } from './feature-stats.js';
export {
  FRECHET_EPS, pivotedCholesky, FRECHET_IMAGINARY_TOLERANCE, FrechetError, frechetDistance, frechetDistanceDetails, symmetricEigen, symmetricSqrt,
  traceSqrtProduct, type FrechetDetails,
} from './frechet.js';
export * from './inception.js';
export { InceptionWeightsError, loadInception, loadInceptionState, sha256File, type InceptionWeightsInfo } from './inception-weights.js';
export { fnv1a32, lowbias32, syntheticImage, syntheticInceptionState, syntheticValues } from './synthetic-weights.js';
export * from './fid.js';
export { inceptionScore, IS_SPLIT_SIZE, manifoldRadii, pairwiseSquaredDistances, PR_NEIGHBOURHOOD, precisionRecall, type InceptionScore } from './adm-metrics.js';
export { ALEX_CHANNELS, alexHeadShapes, alexStateShapes, LpipsAlex, loadLpipsAlex } from './lpips-alex.js';
export { accuracy, classifyImages, type ClassifiedSet, type ClassifierTraining, DemoClassifier, type ImageBatchSource, trainDemoClassifier } from './demo-classifier.js';
