// `ibq tokenize` as a person meets it: the built CLI in a child process, on an image folder
// made here (with a corrupt file) and on Debian's Fashion-MNIST; re-runs skip finished
// shards; the tokens are those `ibq encode` gives for the same images.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { encodePng, FASHION_MNIST_DIR, readNpy, readShardRecord, TokenShardDataset } from '@ibq/data';

const CLI = fileURLToPath(new URL('../dist/ibq.mjs', import.meta.url));
const CONFIG = fileURLToPath(new URL('../../ibq/configs/micro_test.yaml', import.meta.url));
const CKPT = fileURLToPath(new URL('../../ibq/test/fixtures/micro.ckpt', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'ibq-cli-tokenize-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function ibq(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 240_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

async function imageFolder(): Promise<string> {
  const root = join(dir, 'images');
  for (const cls of ['a', 'b']) {
    mkdirSync(join(root, cls), { recursive: true });
    for (let i = 0; i < 3; i++) {
      const data = new Uint8Array(11 * 13 * 3).map((_, j) => (j * (i + 3) + cls.charCodeAt(0) * 7) % 256);
      writeFileSync(join(root, cls, `${i}.png`), await encodePng({ data, height: 11, width: 13, channels: 3 }));
    }
  }
  writeFileSync(join(root, 'b', '1-corrupt.png'), Buffer.from('not an image at all'));
  return root;
}

const tok = ['--config', CONFIG, '--ckpt', CKPT, '--device', 'reference'];

describe('ibq tokenize', () => {
  it('an image folder: shards, index, labels, a corrupt file reported, re-runs skip; tokens equal ibq encode', async () => {
    const data = await imageFolder();
    const out = join(dir, 'plain');
    const r = ibq('tokenize', ...tok, '--data', data, '--out', out, '--shard-items', '4', '--batch-size', '3');
    expect(r.err).toMatch(/skipped .*1-corrupt\.png/);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/wrote 2 shards .* 2\/2 finished .*: 6 images x 1 view\(s\), 1 corrupt image\(s\) skipped/);
    const index = JSON.parse(readFileSync(join(out, 'index.json'), 'utf8'));
    expect(index).toMatchObject({ format: 'ibq-token-shards', grid: [8, 8], augmentation: { kind: 'none', views: 1 }, shards: 2, shardItems: 4 });
    expect(index.tokenizer.configSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(index.dataset.classes).toEqual(['a', 'b']);
    expect(readShardRecord(out, 1)?.skipped.map((s) => s.path)).toEqual([join(data, 'b', '1-corrupt.png')]);
    const labels = await readNpy(join(out, 'shard-00000.labels.npy'));
    expect(labels.dtype).toBe('int64');
    expect(Array.from(labels.data as BigInt64Array, Number)).toEqual([0, 0, 0, 1]);
    const ds = await TokenShardDataset.open(out);
    expect([ds.length, ds.views, ds.height, ds.width]).toEqual([6, 1, 8, 8]);

    // The same images through `ibq encode` give the same tokens (same resize and centre crop).
    const files = ['a/0.png', 'a/1.png', 'a/2.png', 'b/0.png', 'b/2.png'].map((f) => join(data, f));
    const enc = ibq('encode', ...tok, ...files, '--out', join(dir, 'enc.npy'));
    expect(enc.code, enc.err).toBe(0);
    const e = (await readNpy(join(dir, 'enc.npy'))).data as Int32Array;
    expect([...ds.getBatch([0, 1, 2, 3, 5]).tokens]).toEqual([...e]);
    await ds.close();

    const before = statSync(join(out, 'shard-00000.npy')).mtimeMs;
    const again = ibq('tokenize', ...tok, '--data', data, '--out', out, '--shard-items', '4');
    expect(again.code, again.err).toBe(0);
    expect(again.err).toMatch(/2 of this process's 2 shards already finished/);
    expect(again.out).toMatch(/wrote 0 shards/);
    expect(statSync(join(out, 'shard-00000.npy')).mtimeMs).toBe(before);
    // Another tokenizer setting into the same folder is refused, naming what differs.
    const clash = ibq('tokenize', ...tok, '--data', data, '--out', out, '--shard-items', '4', '--flip');
    expect(clash.code).toBe(2);
    expect(clash.err).toMatch(/holds tokens of another run: its augmentation is/);
  }, 300_000);

  it('--ten-crop stores ten views; --flip the image and its mirror (view 0 = the plain tokens)', async () => {
    const data = join(dir, 'images');
    const ten = join(dir, 'ten');
    const r = ibq('tokenize', ...tok, '--data', data, '--out', ten, '--ten-crop', '1.25');
    expect(r.code, r.err).toBe(0);
    expect((await readNpy(join(ten, 'shard-00000.npy'))).shape).toEqual([6, 10, 8, 8]);
    const flip = join(dir, 'flip');
    expect(ibq('tokenize', ...tok, '--data', data, '--out', flip, '--flip').code).toBe(0);
    const f = await TokenShardDataset.open(flip);
    const plain = await TokenShardDataset.open(join(dir, 'plain'));
    expect(f.views).toBe(2);
    expect([...f.get(4, 0).tokens]).toEqual([...plain.get(4).tokens]);
    expect([...f.get(4, 1).tokens]).not.toEqual([...plain.get(4).tokens]);
    await f.close();
    await plain.close();
    const bad = ibq('tokenize', ...tok, '--data', data, '--out', join(dir, 'x'), '--ten-crop', '0.5');
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--ten-crop: expected a crop range >= 1/);
  }, 300_000);

  it.skipIf(!existsSync(FASHION_MNIST_DIR))('fashion-mnist with --shard i/n: one part written, the folder reports the rest unfinished', async () => {
    const out = join(dir, 'fm');
    const r = ibq('tokenize', ...tok, '--device', 'cpu', '--data', 'fashion-mnist', '--split', 'test', '--out', out, '--shard-items', '2500', '--shard', '1/4');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/wrote 1 shards .* 1\/4 finished/);
    expect(readShardRecord(out, 1)).toMatchObject({ first: 2500, end: 5000, rows: 2500 });
    expect((await readNpy(join(out, 'shard-00001.labels.npy'))).shape).toEqual([2500]);
    await expect(TokenShardDataset.open(out)).rejects.toThrow(/3 of 4 shards are not finished \(shard-00000, shard-00002, shard-00003\)/);
  }, 300_000);
});
