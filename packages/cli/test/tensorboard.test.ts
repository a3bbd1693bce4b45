import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TensorBoardWriter, crc32c } from '../src/tensorboard.js';

/** Reads TFRecord frames back, checking both masked CRCs. */
function records(buf: Buffer): Buffer[] {
  const mask = (c: number) => ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
  const out: Buffer[] = [];
  let at = 0;
  while (at < buf.length) {
    const len = Number(buf.readBigUInt64LE(at));
    expect(buf.readUInt32LE(at + 8)).toBe(mask(crc32c(buf.subarray(at, at + 8))));
    const data = buf.subarray(at + 12, at + 12 + len);
    expect(buf.readUInt32LE(at + 12 + len)).toBe(mask(crc32c(data)));
    out.push(data);
    at += 16 + len;
  }
  return out;
}

describe('TensorBoard event files', () => {
  it('CRC-32C matches the standard check value', () => {
    expect(crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
  });

  it('writes a version record then scalar events TensorBoard can frame', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ibq-tb-'));
    const w = new TensorBoardWriter(dir, 1_700_000_000_000);
    w.scalars(3, { 'train/total_loss': 0.5, 'train/lr': 1e-4 }, 1_700_000_001_000);
    w.close();
    const recs = records(readFileSync(w.path));
    expect(recs.length).toBe(2);
    expect(recs[0].toString('latin1')).toContain('brain.Event:2');
    const ev = recs[1];
    // wall_time (field 1, double), step (field 2, varint 3), summary (field 5)
    expect(ev[0]).toBe(0x09);
    expect(ev.readDoubleLE(1)).toBe(1_700_000_001);
    expect([ev[9], ev[10]]).toEqual([0x10, 3]);
    expect(ev[11]).toBe(0x2a);
    const text = ev.toString('latin1');
    expect(text).toContain('train/total_loss');
    const i = ev.indexOf('train/total_loss') + 'train/total_loss'.length;
    expect(ev[i]).toBe(0x15); // simple_value, fixed32
    expect(ev.readFloatLE(i + 1)).toBe(0.5);
  });
});
