import { describe, expect, it } from 'vitest';
import { formatBytes, formatRecord, wrapList } from '../src/format.js';
import { wasmSimdSupported } from '../src/host.js';

describe('formatRecord', () => {
  it('aligns keys, nests records, wraps lists, formats scalars', () => {
    const lines = formatRecord({
      vendor: 'mesa',
      f16: false,
      limits: { maxBufferSize: 4294967295, maxBindGroups: 4 },
      features: Array.from({ length: 30 }, (_, i) => `feature-number-${i}`),
      empty: [],
      skipped: () => 1,
    }, '  ');
    expect(lines[0]).toBe('  vendor    mesa');
    expect(lines[1]).toBe('  f16       no');
    expect(lines[2]).toBe('  limits');
    expect(lines[3]).toBe('    maxBufferSize  4,294,967,295');
    expect(lines[4]).toBe('    maxBindGroups  4');
    const features = lines.slice(5).join('\n').split('\n  empty')[0];
    const rows = features.split('\n');
    expect(rows.length).toBeGreaterThan(1);
    for (const row of rows) expect(row.length).toBeLessThanOrEqual(100);
    for (const row of rows.slice(1)) expect(row.startsWith(' '.repeat(12))).toBe(true);
    expect(features.replace(/\s+/g, ' ')).toContain('feature-number-0, feature-number-1,');
    expect(lines.at(-1)).toBe('  empty     (none)');
    expect(lines.join('\n')).not.toContain('skipped');
  });

  it('wrapList and formatBytes', () => {
    expect(wrapList([], 0, '')).toBe('(none)');
    expect(wrapList(['a', 'b'], 0, '')).toBe('a, b');
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(3 * 1024 ** 3)).toBe('3.0 GiB');
  });
});

describe('wasm SIMD probe', () => {
  it('is true on Node 20 (V8 has had fixed-width SIMD since Node 16.4)', () => {
    expect(wasmSimdSupported()).toBe(true);
  });
});
