// Plain-text layout for reports printed to people: aligned key/value blocks, wrapped lists.

const WIDTH = 100;

function formatScalar(v: unknown): string {
  if (v === null || v === undefined) return '-';
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (typeof v === 'number') return Number.isInteger(v) && Math.abs(v) >= 10_000 ? v.toLocaleString('en-US') : String(v);
  if (typeof v === 'bigint') return v.toLocaleString('en-US');
  return String(v);
}

function isPlainRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Set) && !(v instanceof Map) && !ArrayBuffer.isView(v);
}

function normalise(v: unknown): unknown {
  if (v instanceof Set) return [...v];
  if (v instanceof Map) return Object.fromEntries(v);
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return Array.from(v as unknown as ArrayLike<number>);
  return v;
}

/** Joins items with ", ", wrapping lines at the page width; continuation lines get `indent`. */
export function wrapList(items: readonly string[], firstWidth: number, indent: string): string {
  if (items.length === 0) return '(none)';
  const lines: string[] = [];
  let line = '';
  let room = Math.max(20, WIDTH - firstWidth);
  for (const [i, item] of items.entries()) {
    const piece = item + (i < items.length - 1 ? ',' : '');
    if (line && line.length + 1 + piece.length > room) {
      lines.push(line);
      line = piece;
      room = Math.max(20, WIDTH - indent.length);
    } else {
      line = line ? `${line} ${piece}` : piece;
    }
  }
  lines.push(line);
  return lines.join(`\n${indent}`);
}

/**
 * A record (such as Backend.describe()'s) as aligned lines: nested records indent under
 * their key, lists of scalars wrap, functions are left out.
 */
export function formatRecord(record: Record<string, unknown>, indent = ''): string[] {
  const entries = Object.entries(record)
    .map(([k, v]) => [k, normalise(v)] as const)
    .filter(([, v]) => typeof v !== 'function');
  const keyWidth = Math.min(40, Math.max(0, ...entries.filter(([, v]) => !isPlainRecord(v)).map(([k]) => k.length)));
  const lines: string[] = [];
  for (const [key, value] of entries) {
    if (isPlainRecord(value)) {
      lines.push(`${indent}${key}`);
      lines.push(...formatRecord(value, `${indent}  `));
      continue;
    }
    const head = `${indent}${key.padEnd(keyWidth)}  `;
    if (Array.isArray(value)) {
      if (value.some(isPlainRecord)) {
        lines.push(`${indent}${key}`);
        value.forEach((item, i) => {
          if (isPlainRecord(item)) {
            lines.push(`${indent}  [${i}]`);
            lines.push(...formatRecord(item, `${indent}    `));
          } else {
            lines.push(`${indent}  [${i}] ${formatScalar(item)}`);
          }
        });
      } else {
        lines.push(head + wrapList(value.map(formatScalar), head.length, ' '.repeat(head.length)));
      }
      continue;
    }
    lines.push(head + formatScalar(value).split('\n').join(`\n${' '.repeat(head.length)}`));
  }
  return lines;
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return `${u === 0 ? n : n.toFixed(1)} ${units[u]}`;
}

export function formatSeconds(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}
