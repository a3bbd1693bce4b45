// convert, encode, decode and reconstruct on real files: PNGs made here, the micro test
// config and its real-format Lightning checkpoint (packages/ibq/scripts/make_golden.py).
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { encodePng, readImage, readNpy } from '@ibq/data';
import { main } from '../src/main.js';
import { memoryIo } from '../src/io.js';

const ibq = (p: string) => fileURLToPath(new URL(`../../ibq/${p}`, import.meta.url));
const CONFIG = ibq('configs/micro_test.yaml');
const CKPT = ibq('test/fixtures/micro.ckpt');
const dir = mkdtempSync(join(tmpdir(), 'ibq-cli-tok-'));

async function image(name: string, h: number, w: number, seed: number): Promise<string> {
  const data = new Uint8Array(h * w * 3).map((_, i) => (i * 37 + seed * 101) % 256);
  const path = join(dir, name);
  writeFileSync(path, await encodePng({ data, height: h, width: w, channels: 3 }));
  return path;
}

async function run(...argv: string[]) {
  const io = memoryIo({});
  const code = await main(argv, io);
  return { code, out: io.stdout.join('\n'), err: io.stderr.join('\n') };
}

const common = ['--config', CONFIG, '--ckpt', CKPT, '--device', 'reference'];

describe('tokenizer commands', () => {
  it('convert writes the EMA weights as safetensors', async () => {
    const out = join(dir, 'micro.safetensors');
    const r = await run('convert', CKPT, out);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/wrote .*micro\.safetensors \(\d+ tensors\)/);
    expect(existsSync(out)).toBe(true);
  });

  it('encode -> decode round trip and reconstruct with metrics', async () => {
    const a = await image('a.png', 12, 10, 1); // resized (shorter side) and centre-cropped to 8x8
    const b = await image('b.png', 8, 8, 2);
    const tokens = join(dir, 'tokens.npy');
    const enc = await run('encode', ...common, a, b, '--out', tokens, '--batch-size', '1');
    expect(enc.err).toBe('');
    expect(enc.code).toBe(0);
    const arr = await readNpy(tokens);
    expect(arr.shape).toEqual([2, 8, 8]);
    expect(arr.data).toBeInstanceOf(Int32Array);
    expect(Array.from(arr.data as Int32Array).every((v) => v >= 0 && v < 16)).toBe(true);

    const out = join(dir, 'decoded');
    const dec = await run('decode', ...common, tokens, '--out', out);
    expect(dec.code).toBe(0);
    const img = await readImage(join(out, '000001.png'));
    expect([img.height, img.width]).toEqual([8, 8]);

    // the converted file works as --ckpt too
    const rec = join(dir, 'rec');
    const r = await run('reconstruct', '--config', CONFIG, '--ckpt', join(dir, 'micro.safetensors'), '--device', 'reference', a, b, '--out', rec);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/image\s+PSNR \(dB\)\s+SSIM/);
    expect(r.out).toMatch(/mean\s+\d+\.\d{3}\s+-?\d\.\d{4}/);
    const metrics = JSON.parse(readFileSync(join(rec, 'metrics.json'), 'utf8'));
    expect(metrics.images.map((m: { image: string }) => m.image)).toEqual([a, b]);
    const grid = await readImage(join(rec, 'grid.png'));
    expect(grid.width).toBe(2 * 8 + 3 * 2); // two columns (input | reconstruction), 2 px padding
    expect(existsSync(join(rec, 'a.png'))).toBe(true);
  });

  it('bad input is a clear error naming the file, the key or the argument', async () => {
    const bad = join(dir, 'broken.png');
    writeFileSync(bad, Buffer.from('definitely not a png'));
    const r1 = await run('encode', ...common, bad, '--out', join(dir, 'x.npy'));
    expect(r1.code).not.toBe(0);
    expect(r1.err).toContain('broken.png');

    const r2 = await run('encode', '--ckpt', CKPT, bad, '--out', join(dir, 'x.npy'));
    expect(r2.code).toBe(2);
    expect(r2.err).toContain('--config is required');

    const r3 = await run('encode', '--config', ibq('configs/tiny_test.yaml'), '--ckpt', CKPT, '--device', 'reference', await image('c.png', 16, 16, 3), '--out', join(dir, 'y.npy'));
    expect(r3.code).not.toBe(0);
    expect(r3.err).toMatch(/checkpoint '.*micro\.ckpt' does not fit config '.*tiny_test\.yaml'/);
    expect(r3.err).toMatch(/shape mismatches|missing keys/);

    const r4 = await run('convert', join(dir, 'absent.ckpt'), join(dir, 'o.safetensors'));
    expect(r4.code).toBe(2);
    expect(r4.err).toContain("checkpoint '");
    expect(r4.err).toContain("absent.ckpt' does not exist");

    const r5 = await run('decode', ...common, join(dir, 'tokens.npy'));
    expect(r5.code).toBe(2);
    expect(r5.err).toContain('--out is required');

    const r6 = await run('convert', CKPT);
    expect(r6.code).toBe(2);
    expect(r6.err).toContain('missing OUT.safetensors');
  });
});
