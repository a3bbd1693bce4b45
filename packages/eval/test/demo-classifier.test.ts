// The demo's Fashion-MNIST classifier: trained here on the cpu backend for a short budget, it
// must classify the held-out test images well above chance, and its feature statistics give a
// Frechet distance near zero between two halves of the test set and a large one against noise.
import { existsSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { createBackend } from '@ibq/kernels';
import { FASHION_MNIST_DIR, imageToFloat, openMnist } from '@ibq/data';
import { setBackend } from '@ibq/tensor';
import { accuracy, classifyImages, frechetDistance, trainDemoClassifier } from '../src/index.js';

const have = existsSync(FASHION_MNIST_DIR);

describe.skipIf(!have)('DemoClassifier', () => {
  it('trains in 150 steps, classifies the test set, and its Frechet distance separates real from noise', async () => {
    const backend = await createBackend('cpu');
    setBackend(backend);
    afterAll(() => backend.destroy());
    const train = await openMnist('fashion-mnist', 'train', { size: 32 });
    const test = await openMnist('fashion-mnist', 'test', { size: 32 });
    const floats = async (ds: typeof train, s: number, e: number) => {
      const images = new Float32Array((e - s) * 3 * 32 * 32);
      const labels = new Int32Array(e - s);
      for (let i = s; i < e; i++) {
        const it = await ds.get(i);
        images.set(imageToFloat({ data: it.image, height: 32, width: 32, channels: 3 }, 'chw'), (i - s) * 3 * 32 * 32);
        labels[i - s] = it.label ?? -1;
      }
      return { images, labels };
    };
    const t0 = Date.now();
    const r = await trainDemoClassifier({ length: train.length, batch: (s, e) => floats(train, s, e) }, { seconds: Infinity, maxSteps: 150 });
    const n = 2000;
    const { images, labels } = await floats(test, 0, n);
    const c = await classifyImages(r.classifier, images, n);
    const acc = accuracy(c.predictions, labels);
    console.log(`demo classifier: ${r.steps} steps in ${r.seconds.toFixed(1)} s (total ${((Date.now() - t0) / 1000).toFixed(1)} s), accuracy ${acc.toFixed(4)} on ${n} test images`);
    expect(acc).toBeGreaterThan(0.75);
    const a = await classifyImages(r.classifier, images.subarray(0, 1000 * 3072), 1000);
    const b = await classifyImages(r.classifier, images.subarray(1000 * 3072), 1000);
    const noise = Float32Array.from({ length: 1000 * 3072 }, (_, i) => ((i * 2654435761) % 1000) / 500 - 1);
    const z = await classifyImages(r.classifier, noise, 1000);
    const same = frechetDistance(a.stats.mean(), a.stats.covariance(), b.stats.mean(), b.stats.covariance());
    const far = frechetDistance(a.stats.mean(), a.stats.covariance(), z.stats.mean(), z.stats.covariance());
    expect(far).toBeGreaterThan(10 * same);
    r.classifier.dispose();
  }, 240_000);
});
