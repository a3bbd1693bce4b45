// The demo's Fashion-MNIST classifier: a small CNN (three stride-2 3x3 convolutions, a 64-wide
// hidden layer, 10 logits) on 32x32 RGB images in [-1, 1], trained by the demo itself in under
// a minute on the CPU. It judges generated samples: the share classified as the intended
// class, and a Frechet distance between its 64-d penultimate features of generated and test
// images. That distance is NOT the ImageNet FID (a different network, data and feature space);
// it only compares runs of this demo with each other.

import { Adam, type Tensor, apply, argmax, backward, dispose, mean, nn, noGrad, relu, tensor, tidy } from '@ibq/tensor';
import { FeatureStats } from './feature-stats.js';

const { Module, Conv2d, Linear } = nn;

export class DemoClassifier extends Module {
  readonly conv1;
  readonly conv2;
  readonly conv3;
  readonly fc;
  readonly head;
  static readonly FEATURES = 64;

  constructor(readonly classes = 10) {
    super();
    this.conv1 = this.module('conv1', new Conv2d(3, 16, 3, { stride: 2, padding: 1 }));
    this.conv2 = this.module('conv2', new Conv2d(16, 32, 3, { stride: 2, padding: 1 }));
    this.conv3 = this.module('conv3', new Conv2d(32, 64, 3, { stride: 2, padding: 1 }));
    this.fc = this.module('fc', new Linear(64 * 4 * 4, DemoClassifier.FEATURES));
    this.head = this.module('head', new Linear(DemoClassifier.FEATURES, classes));
  }

  /** Penultimate features [B, 64] of images [B, 3, 32, 32]. */
  features(x: Tensor): Tensor {
    return tidy(() => {
      if (x.rank !== 4 || x.shape[1] !== 3 || x.shape[2] !== 32 || x.shape[3] !== 32) throw new Error(`DemoClassifier: expected [B, 3, 32, 32], got [${x.shape}]`);
      const h = relu(this.conv3.forward(relu(this.conv2.forward(relu(this.conv1.forward(x))))));
      return relu(this.fc.forward(h.reshape([x.shape[0], 64 * 4 * 4])));
    });
  }

  /** Logits [B, classes] and the features they come from. */
  forward(x: Tensor): { logits: Tensor; features: Tensor } {
    return tidy(() => {
      const features = this.features(x);
      return { logits: this.head.forward(features), features };
    });
  }
}

/** Batches of images as the classifier takes them (float CHW [B, 3, 32, 32] in [-1, 1]) with their labels. */
export type ImageBatchSource = { length: number; batch(start: number, end: number): Promise<{ images: Float32Array; labels: Int32Array }> };

export interface ClassifierTraining {
  classifier: DemoClassifier;
  steps: number;
  seconds: number;
  /** Mean training loss over the last 50 steps. */
  loss: number;
}

/**
 * Trains the classifier with Adam (lr 2e-3, batch 64) for one pass over `train` in its order
 * (Fashion-MNIST's files are already class-mixed), or until `seconds` have passed or `maxSteps` were taken.
 */
export async function trainDemoClassifier(
  train: ImageBatchSource, o: { seconds: number; maxSteps?: number; seed?: number; batchSize?: number; onStep?: (step: number, loss: number) => void },
): Promise<ClassifierTraining> {
  nn.manualSeed(o.seed ?? 0);
  const classifier = new DemoClassifier();
  const opt = new Adam(classifier.parameters(), { lr: 2e-3 });
  const B = o.batchSize ?? 64;
  const t0 = Date.now();
  const recent: number[] = [];
  let steps = 0;
  try {
    for (let s = 0; s + B <= train.length; s += B) {
      const { images, labels } = await train.batch(s, s + B);
      const x = tensor(images, [B, 3, 32, 32]);
      const y = tensor(labels, [B], { dtype: 'i32' });
      const loss = tidy(() => {
        const [l, lse] = apply('cross_entropy', [classifier.forward(x).logits, y]);
        lse.dispose();
        return mean(l);
      });
      opt.zeroGrad();
      backward(loss);
      opt.step();
      recent.push(Number((await loss.data())[0]));
      if (recent.length > 50) recent.shift();
      dispose([x, y, loss]);
      steps++;
      o.onStep?.(steps, recent[recent.length - 1]);
      if ((Date.now() - t0) / 1000 >= o.seconds || steps >= (o.maxSteps ?? Infinity)) break;
    }
  } finally {
    opt.zeroGrad();
    opt.dispose();
  }
  classifier.eval();
  return { classifier, steps, seconds: (Date.now() - t0) / 1000, loss: recent.reduce((a, b) => a + b, 0) / Math.max(1, recent.length) };
}

export interface ClassifiedSet {
  /** Predicted class per image. */
  predictions: Int32Array;
  /** Penultimate features, accumulated. */
  stats: FeatureStats;
}

/** Predictions and feature statistics of images [n, 3, 32, 32] in [-1, 1]. */
export async function classifyImages(classifier: DemoClassifier, images: Float32Array, n: number, batchSize = 250): Promise<ClassifiedSet> {
  const per = 3 * 32 * 32;
  if (images.length !== n * per) throw new Error(`classifyImages: ${images.length} values for [${n}, 3, 32, 32]`);
  const predictions = new Int32Array(n);
  const stats = new FeatureStats(DemoClassifier.FEATURES);
  for (let s = 0; s < n; s += batchSize) {
    const e = Math.min(n, s + batchSize);
    const x = tensor(images.subarray(s * per, e * per), [e - s, 3, 32, 32]);
    const { logits, features, pred } = noGrad(() => tidy(() => {
      const r = classifier.forward(x);
      return { ...r, pred: argmax(r.logits, 1) };
    }));
    predictions.set(Int32Array.from(await pred.data()), s);
    stats.add(Float32Array.from(await features.data()), e - s);
    dispose([x, logits, features, pred]);
  }
  return { predictions, stats };
}

/** Share of predictions equal to the labels. */
export function accuracy(predictions: Int32Array, labels: ArrayLike<number>): number {
  let hit = 0;
  for (let i = 0; i < predictions.length; i++) if (predictions[i] === labels[i]) hit++;
  return hit / Math.max(1, predictions.length);
}
