// ibq train and ibq demo end to end on small real data: an image folder made here (with a
// corrupt file that must be reported, not fatal) and Debian's Fashion-MNIST.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { FASHION_MNIST_DIR, encodePng, readImage } from '@ibq/data';
import { testF16Backend } from '@ibq/kernels/harness';
import { main } from '../src/main.js';
import { memoryIo } from '../src/io.js';

const CONFIG = fileURLToPath(new URL('../../ibq/configs/micro_test.yaml', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'ibq-cli-train-'));

async function run(...argv: string[]) {
  const io = memoryIo({});
  const code = await main(argv, io);
  return { code, out: io.stdout.join('\n'), err: io.stderr.join('\n') };
}

async function imageFolder(): Promise<string> {
  const root = join(dir, 'images');
  for (const cls of ['a', 'b']) {
    mkdirSync(join(root, cls), { recursive: true });
    for (let i = 0; i < 3; i++) {
      const data = new Uint8Array(10 * 12 * 3).map((_, j) => (j * (i + 3) + cls.charCodeAt(0)) % 256);
      writeFileSync(join(root, cls, `${i}.png`), await encodePng({ data, height: 10, width: 12, channels: 3 }));
    }
  }
  writeFileSync(join(root, 'b', 'corrupt.png'), Buffer.from('not an image at all'));
  return root;
}

describe('ibq train', () => {
  it('trains, writes a run folder, and resumes from it', async () => {
    const data = await imageFolder();
    const out = join(dir, 'run');
    const args = ['train', '--config', CONFIG, '--data', data, '--out', out, '--device', 'reference', '--batch-size', '2', '--log-every', '1', '--image-every', '2', '--checkpoint-every', '2'];
    const r1 = await run(...args, '--steps', '2');
    expect(r1.err).toMatch(/training without the perceptual \(LPIPS\) term/);
    expect(r1.err).toMatch(/skipped .*corrupt\.png/);
    expect(r1.code).toBe(0);
    expect(r1.out).toMatch(/finished at step 2/);
    for (const f of ['checkpoint.safetensors', 'metrics.jsonl', 'config.yaml']) expect(existsSync(join(out, f)), f).toBe(true);
    expect(readdirSync(out).some((f) => f.startsWith('events.out.tfevents.'))).toBe(true);
    expect(readdirSync(join(out, 'images'))).toContain('step_0000002.png');
    const r2 = await run(...args, '--steps', '4', '--resume');
    expect(r2.code).toBe(0);
    expect(r2.err).toMatch(/resumed from .* at step 2/);
    const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.step)).toEqual([1, 2, 3, 4]);
    expect(Object.keys(lines[0])).toEqual(expect.arrayContaining(['total_loss', 'reconstruct_loss', 'codebook_usage', 'lr']));
  }, 300_000);

  it('names what is wrong with its arguments', async () => {
    const r = await run('train', '--config', CONFIG, '--data', join(dir, 'nowhere'));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/data folder '.*nowhere' does not exist/);
    const r2 = await run('train', '--config', CONFIG, '--data', 'fashion-mnist', '--lpips-vgg16', 'x.pth');
    expect(r2.code).toBe(2);
    expect(r2.err).toContain('--lpips-vgg16 and --lpips-heads go together');
    const r3 = await run('train', '--config', CONFIG, '--data', 'fashion-mnist', '--device', 'reference', '--precision', '16-mixed');
    expect(r3.code).toBe(2);
    expect(r3.err).toContain("--precision 16-mixed: backend 'reference' cannot: f16 is not supported on reference");
  });

  it('takes the precision from the config, and trains in 16-mixed where the device has f16', async () => {
    const data = await imageFolder();
    // The official configs ask for 16-mixed under trainer:.
    const config = join(dir, 'mixed.yaml');
    writeFileSync(config, `${readFileSync(CONFIG, 'utf8')}\ntrainer:\n  precision: 16-mixed\n`);
    const base = ['train', '--config', config, '--data', data, '--batch-size', '2', '--steps', '2', '--log-every', '1', '--image-every', '100'];
    const onRef = await run(...base, '--out', join(dir, 'mixed-ref'), '--device', 'reference');
    expect(onRef.code, onRef.err).toBe(0);
    expect(onRef.err).toMatch(/the config asks for precision 16-mixed, but backend 'reference' has no f16 .*: training in 32/);
    const gpu = await testF16Backend();
    gpu.destroy();
    if (!gpu.backend) return; // the harness has said why
    const out = join(dir, 'mixed-gpu');
    const onGpu = await run(...base, '--out', out, '--device', 'webgpu');
    expect(onGpu.code).toBe(0);
    expect(onGpu.err).toMatch(/training on webgpu in precision 16-mixed/);
    const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.loss_scale)).toEqual([65536, 65536]);
  }, 300_000);
});

describe.skipIf(!existsSync(FASHION_MNIST_DIR))('ibq demo (needs Debian dataset-fashion-mnist, installed by npm run setup)', () => {
  it('runs the whole pipeline: tokenizer figures, then tokens, classifier, GPT, CFG samples and their figures', async () => {
    const out = join(dir, 'demo');
    const small = ['--out', out, '--device', 'cpu', '--batch-size', '4', '--test-images', '40'];
    const r = await run('demo', ...small, '--stage', 'tokenizer', '--steps', '3');
    expect(r.err.replace(/Warning: max.*\n?/g, '')).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/test set \(40 images, \d+ s\): PSNR \d+\.\d\d dB {2}SSIM -?\d\.\d{4} {2}codebook usage \d+\.\d% \(\d+\/1024\)/);
    expect(existsSync(join(out, 'reconstructions.png'))).toBe(true);
    const ar = await run('demo', ...small, '--stage', 'ar', '--ar-steps', '3', '--ar-train-images', '300', '--ar-test-images', '100',
      '--samples-per-class', '2', '--classifier-seconds', '2');
    expect(ar.code, ar.err).toBe(0);
    expect(ar.out).toMatch(/classifier: \d+ steps in \d+ s, test accuracy \d+\.\d% \(10000 images\)/);
    expect(ar.out).toMatch(/test tokens \(100 images\): loss \d+\.\d{4} nats\/token, perplexity \d+\.\d/);
    expect(ar.out).toMatch(/generation: \d+\.\d% of 2 samples per class classified as their intended class/);
    expect(ar.out).toMatch(/classifier-feature Frechet distance \(samples vs test images; NOT the ImageNet FID\) \d+\.\d\d/);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
    expect(report.trainSteps).toBe(3);
    expect(report.test.images).toBe(40);
    expect(report.tokens).toMatchObject({ trainImages: 300, testImages: 100 });
    expect(report.ar.trainSteps).toBe(3);
    expect(report.ar.testPerplexity).toBeCloseTo(Math.exp(report.ar.testLoss), 6);
    expect(report.generation.perClass).toHaveLength(10);
    expect(report.generation.note).toMatch(/NOT the ImageNet FID/);
    expect(report.classifier.testAccuracy).toBeGreaterThan(0.1);
    const grid = await readImage(join(out, 'samples.png'));
    expect([grid.height, grid.width]).toEqual([10 * 32 + 11 * 2, 2 * 32 + 3 * 2]); // a row per class, 2 px padding
  }, 300_000);
});
