// The atomic writer and the zip writer: what a reader sees after success, failure and abort.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  AtomicFile, CheckpointError, crc32, encodeZip, MemoryFile, writeFileAtomic, writeFileAtomicSync, ZipReader, ZipWriter,
} from '../src/index.js';

const TMP = mkdtempSync(join(tmpdir(), 'ibq-formats-atomic-'));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));

describe('writeFileAtomic', () => {
  it('replaces a file whole, and a failing body leaves the old file and no temporary file', async () => {
    const p = join(TMP, 'a.bin');
    writeFileSync(p, 'old');
    await writeFileAtomic(p, 'new text');
    expect(readFileSync(p, 'utf8')).toBe('new text');
    await expect(writeFileAtomic(p, async (out) => {
      await out.write(new Uint8Array(10));
      throw new Error('disk on fire');
    })).rejects.toThrow('disk on fire');
    expect(readFileSync(p, 'utf8')).toBe('new text');
    writeFileAtomicSync(p, Uint8Array.from([1, 2, 3]));
    expect([...readFileSync(p)]).toEqual([1, 2, 3]);
    expect(readdirSync(TMP).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('needs the folder unless asked to make it', async () => {
    await expect(writeFileAtomic(join(TMP, 'no', 'x'), 'a')).rejects.toThrow(/ENOENT/);
    await writeFileAtomic(join(TMP, 'made', 'deep', 'x'), 'a', { mkdir: true });
    expect(readFileSync(join(TMP, 'made', 'deep', 'x'), 'utf8')).toBe('a');
  });

  it('AtomicFile: nothing is visible before commit; abort drops it', () => {
    const p = join(TMP, 'stream.bin');
    const f = AtomicFile.open(p);
    f.writeSync(Uint8Array.from([9, 9, 9, 9]));
    f.writeAtSync(Uint8Array.from([1]), 0);
    expect(existsSync(p)).toBe(false);
    f.commitSync();
    expect([...readFileSync(p)]).toEqual([1, 9, 9, 9]);
    const g = AtomicFile.open(p);
    g.writeSync(Uint8Array.from([0]));
    g.abort();
    expect([...readFileSync(p)]).toEqual([1, 9, 9, 9]);
    expect(readdirSync(TMP).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });
});

describe('ZipWriter', () => {
  it('streams a deflated entry in many pieces that inflates and CRC-checks', () => {
    const p = join(TMP, 'big.zip');
    const w = ZipWriter.create(p);
    const piece = Uint8Array.from({ length: 300_000 }, (_, i) => (i * 31) % 251);
    w.begin('data.bin', piece.length * 8, 'deflate');
    for (let k = 0; k < 8; k++) w.write(piece);
    w.begin('small.txt', 2);
    w.write(new TextEncoder().encode('hi'));
    w.close();
    const z = ZipReader.openPath(p);
    const e = z.entry('data.bin');
    expect(e.method).toBe(8);
    expect(e.compressedSize).toBeLessThan(e.uncompressedSize);
    const all = z.readEntrySync('data.bin');
    expect(all.length).toBe(2_400_000);
    expect(crc32(all)).toBe(e.crc32);
    expect(new TextDecoder().decode(z.readEntrySync('small.txt'))).toBe('hi');
    z.closeSync();
  });

  it('refuses short and overlong entries and duplicate names, and leaves no file', () => {
    const p = join(TMP, 'bad.zip');
    const w = ZipWriter.create(p);
    w.begin('a', 4);
    expect(() => w.write(new Uint8Array(5))).toThrow(/only 4 remain/);
    w.write(new Uint8Array(3));
    expect(() => w.begin('b', 1)).toThrow(/missing 1 of its declared 4 bytes/);
    w.abort();
    expect(existsSync(p)).toBe(false);
    expect(() => encodeZip([['x', new Uint8Array(1)], ['x', new Uint8Array(1)]])).toThrow(/duplicate entry name/);
  });

  it('a count past 65,535 entries goes through the zip64 end record', () => {
    const n = 70_000;
    const bytes = encodeZip(Array.from({ length: n }, (_, i) => [`${i}`, Uint8Array.of(i & 0xff)] as const));
    const dv = new DataView(bytes.buffer, bytes.byteOffset);
    expect(dv.getUint16(bytes.length - 22 + 10, true)).toBe(0xffff);
    const z = ZipReader.openSync(new MemoryFile(bytes, 'many.zip'));
    expect(z.entries.size).toBe(n);
    expect([...z.readEntrySync('69999')]).toEqual([69999 & 0xff]);
  });

  it('a reader of a cut archive names the file', () => {
    const bytes = encodeZip([['a', new Uint8Array(100)]]);
    expect(() => ZipReader.openSync(new MemoryFile(bytes.subarray(0, 60), 'cut.zip'))).toThrow(CheckpointError);
    expect(() => ZipReader.openSync(new MemoryFile(bytes.subarray(0, 60), 'cut.zip'))).toThrow(/cut\.zip/);
  });
});
