// A restricted unpickler (pickle protocols 0 to 5). It builds plain data only: None, bools,
// ints, floats, str, bytes, lists, tuples, dicts, sets, and whatever the `resolveGlobal`
// hook hands out for a module.name pair (allow-listed callables that build plain values, such
// as torch's tensor rebuild functions). Nothing from the file is ever executed: a GLOBAL is
// looked up in the hook's table, and an unknown name is an error naming it.
//
// Python values map to JavaScript as: None -> null, bool -> boolean, int -> number (bigint
// beyond 2^53), float -> number, str -> string, bytes/bytearray -> Uint8Array, list -> array,
// tuple -> frozen array, dict -> Map (keys by value for str/number/bigint/bool/null, by
// identity otherwise), set/frozenset -> Set. Attributes set by BUILD on a dict (such as the
// `_metadata` of a torch state_dict) are kept aside: see `pyAttributes`.

import { RandomAccessFile } from './file.js';

/** A source of pickle bytes: memory, or a file read by position. */
export interface ByteSource {
  /** Absolute position of the next byte. */
  readonly position: number;
  /** Bytes left before the end of the source. */
  readonly remaining: number;
  byte(): number;
  /** The next `n` bytes (may be a view that stays valid only until the next call). */
  bytes(n: number): Uint8Array;
}

export class MemorySource implements ByteSource {
  position: number;
  constructor(private readonly buf: Uint8Array, start = 0) {
    this.position = start;
  }
  get remaining(): number {
    return this.buf.byteLength - this.position;
  }
  byte(): number {
    if (this.position >= this.buf.byteLength) throw new PickleEOF(this.position);
    return this.buf[this.position++]!;
  }
  bytes(n: number): Uint8Array {
    if (n > this.remaining) throw new PickleEOF(this.position, n);
    const out = this.buf.subarray(this.position, this.position + n);
    this.position += n;
    return out;
  }
}

/** Buffered synchronous reads from a file at increasing positions. */
export class FileSource implements ByteSource {
  private buf = new Uint8Array(0);
  private bufStart = 0;
  position: number;
  constructor(private readonly file: RandomAccessFile, start = 0) {
    this.position = start;
  }
  get remaining(): number {
    return this.file.size - this.position;
  }
  private fill(n: number): void {
    const off = this.position - this.bufStart;
    if (off >= 0 && off + n <= this.buf.byteLength) return;
    if (n > this.remaining) throw new PickleEOF(this.position, n);
    const len = Math.min(Math.max(n, 1 << 16), this.remaining);
    this.buf = new Uint8Array(len);
    this.file.readIntoSync(this.buf, this.position, 'pickle');
    this.bufStart = this.position;
  }
  byte(): number {
    this.fill(1);
    return this.buf[this.position++ - this.bufStart]!;
  }
  bytes(n: number): Uint8Array {
    this.fill(n);
    const off = this.position - this.bufStart;
    this.position += n;
    return this.buf.subarray(off, off + n);
  }
}

/** The source ended inside a pickle. */
export class PickleEOF extends Error {
  constructor(position: number, wanted = 1) {
    super(`pickle data truncated: needed ${wanted} more byte(s) at offset ${position}`);
  }
}

/** Marks the error raised for a disallowed global (its message names module.name). */
export class DisallowedGlobalError extends Error {
  constructor(readonly module: string, readonly qualname: string) {
    super(
      `pickle global '${module}.${qualname}' is not allowed: this weights-only reader builds only tensors and plain data, and never calls anything named by the file`,
    );
  }
}

/**
 * An allow-listed Python callable or class. `call` implements REDUCE (`f(*args)`), `construct`
 * NEWOBJ (`cls.__new__(cls, *args)`; defaults to `call`), `build` BUILD (`obj.__setstate__`).
 */
export class PyCallable {
  constructor(
    readonly qualname: string,
    readonly call: (args: readonly unknown[]) => unknown,
    readonly construct?: (args: readonly unknown[], kwargs?: Map<unknown, unknown>) => unknown,
  ) {}
}

/** A non-callable global value (e.g. a torch dtype or storage type) is any other object. */

/**
 * A global that is not on the allow-list, kept as inert data when the caller asked for
 * `unknownGlobals: 'opaque'`. Calling it (REDUCE/NEWOBJ) yields a PyOpaqueObject; nothing runs.
 */
export class PyOpaqueGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get qualname(): string {
    return `${this.module}.${this.name}`;
  }
}

/** The record of a call to an opaque global: its name, arguments and later state/items. */
export class PyOpaqueObject {
  state: unknown = undefined;
  readonly listItems: unknown[] = [];
  readonly dictItems = new Map<unknown, unknown>();
  constructor(
    readonly callee: string,
    readonly args: readonly unknown[],
    readonly kwargs?: Map<unknown, unknown>,
  ) {}
}

const attributes = new WeakMap<object, unknown>();
/** The state BUILD gave to a dict or list (e.g. `{_metadata: ...}` of a torch state_dict). */
export function pyAttributes(obj: object): unknown {
  return attributes.get(obj);
}

export interface UnpicklerOptions {
  /** Look up module.name; throw (e.g. DisallowedGlobalError) to reject it. */
  resolveGlobal: (module: string, name: string) => unknown;
  /** PERSID / BINPERSID. Without it, persistent ids are an error. */
  persistentLoad?: (pid: unknown) => unknown;
}

export const isTuple = (x: unknown): x is readonly unknown[] => Array.isArray(x) && Object.isFrozen(x);
const tuple = (items: unknown[]): readonly unknown[] => Object.freeze(items);

const MARK = Symbol('mark');

function fromLong(bytes: Uint8Array): number | bigint {
  if (bytes.byteLength === 0) return 0;
  let v = 0n;
  for (let i = bytes.byteLength - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]!);
  if (bytes[bytes.byteLength - 1]! & 0x80) v -= 1n << BigInt(8 * bytes.byteLength);
  return normInt(v);
}

function normInt(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

const latin1 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });
function utf8(b: Uint8Array): string {
  try {
    return utf8Decoder.decode(b);
  } catch {
    // Python's "surrogatepass" strings cannot be decoded strictly; keep them readable.
    return new TextDecoder('utf-8').decode(b);
  }
}

/** Python's str repr / raw-unicode-escape texts of protocol 0 (STRING, UNICODE). */
function unescapePy(s: string, raw: boolean): string {
  if (raw) return s.replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_, a, b) => String.fromCodePoint(parseInt(a ?? b, 16)));
  return s.replace(/\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|.)/gs, (_, e: string) => {
    if (e[0] === 'x') return String.fromCharCode(parseInt(e.slice(1), 16));
    if (/^[0-7]/.test(e)) return String.fromCharCode(parseInt(e, 8));
    return ({ n: '\n', r: '\r', t: '\t', '\\': '\\', "'": "'", '"': '"', a: '\x07', b: '\b', f: '\f', v: '\v', '\n': '' } as Record<string, string>)[e] ?? `\\${e}`;
  });
}

/**
 * Read one pickle (up to and including its STOP opcode) from `src` and return its value.
 * Throws PickleEOF when the data ends early, DisallowedGlobalError for a global the
 * resolver rejects, and Error with an opcode/offset message for anything malformed.
 */
export function unpickle(src: ByteSource, options: UnpicklerOptions): unknown {
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();
  const start = src.position;

  let opPos = start;
  const fail = (msg: string): never => {
    throw new Error(`pickle: ${msg} (opcode at offset ${opPos})`);
  };
  const pop = (): unknown => {
    if (stack.length === 0 || (marks.length && stack.length <= marks[marks.length - 1]!)) fail('stack underflow');
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) fail('stack underflow');
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const m = marks.pop();
    if (m === undefined) fail('MARK expected but not found');
    return stack.splice(m!);
  };
  const u16 = (): number => { const b = src.bytes(2); return b[0]! | (b[1]! << 8); };
  const u32 = (): number => { const b = src.bytes(4); return new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true); };
  const i32 = (): number => { const b = src.bytes(4); return new DataView(b.buffer, b.byteOffset, 4).getInt32(0, true); };
  const u64 = (): number => {
    const b = src.bytes(8);
    const v = new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
    if (v > BigInt(src.remaining)) fail(`length ${v} exceeds the ${src.remaining} bytes left`);
    return Number(v);
  };
  const len = (n: number): number => {
    if (n > src.remaining) fail(`length ${n} exceeds the ${src.remaining} bytes left (truncated or corrupt)`);
    return n;
  };
  const line = (): string => {
    const chars: number[] = [];
    for (;;) {
      const c = src.byte();
      if (c === 0x0a) break;
      chars.push(c);
      if (chars.length > 1 << 20) fail('text line longer than 1 MiB');
    }
    return latin1(Uint8Array.from(chars));
  };
  const memoGet = (i: number): unknown => {
    if (!memo.has(i)) fail(`memo key ${i} not found`);
    return memo.get(i);
  };
  const callGlobal = (fn: unknown, args: unknown, newobj: boolean, kwargs?: Map<unknown, unknown>): unknown => {
    if (!Array.isArray(args)) fail(`call arguments must be a tuple, got ${describe(args)}`);
    const a = args as unknown[];
    if (fn instanceof PyCallable) {
      if (kwargs && kwargs.size && !fn.construct) fail(`${fn.qualname} does not take keyword arguments`);
      return newobj && fn.construct ? fn.construct(a, kwargs) : fn.call(a);
    }
    if (fn instanceof PyOpaqueGlobal) return new PyOpaqueObject(fn.qualname, a, kwargs);
    return fail(`cannot call ${describe(fn)}`);
  };
  const setItems = (target: unknown, items: unknown[]): void => {
    if (items.length % 2) fail('odd number of items for a dict');
    if (target instanceof Map) {
      for (let i = 0; i < items.length; i += 2) target.set(items[i], items[i + 1]);
    } else if (target instanceof PyOpaqueObject) {
      for (let i = 0; i < items.length; i += 2) target.dictItems.set(items[i], items[i + 1]);
    } else {
      fail(`SETITEM(S) on ${describe(target)}`);
    }
  };
  const appendItems = (target: unknown, items: unknown[]): void => {
    if (Array.isArray(target) && !Object.isFrozen(target)) target.push(...items);
    else if (target instanceof PyOpaqueObject) target.listItems.push(...items);
    else fail(`APPEND(S) on ${describe(target)}`);
  };
  const global = (module: string, name: string): unknown => options.resolveGlobal(module, name);

  for (;;) {
    opPos = src.position;
    const op = src.byte();
    switch (op) {
      case 0x80: { // PROTO
        const v = src.byte();
        if (v > 5) fail(`unsupported pickle protocol ${v}`);
        break;
      }
      case 0x95: // FRAME (protocol 4): a length prefix only
        src.bytes(8);
        break;
      case 0x2e: // STOP
        if (marks.length) fail('STOP inside an open MARK');
        return pop();
      case 0x28: // MARK
        marks.push(stack.length);
        break;
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: stack.push(top()); break; // DUP

      // ---- constants and numbers
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4b: stack.push(src.byte()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x4a: stack.push(i32()); break; // BININT
      case 0x8a: stack.push(fromLong(src.bytes(len(src.byte())))); break; // LONG1
      case 0x8b: { // LONG4
        const n = i32();
        if (n < 0) fail('negative LONG4 length');
        stack.push(fromLong(src.bytes(len(n))));
        break;
      }
      case 0x47: { // BINFLOAT (big-endian double)
        const b = src.bytes(8);
        stack.push(new DataView(b.buffer, b.byteOffset, 8).getFloat64(0, false));
        break;
      }
      case 0x49: { // INT (text)
        const s = line().trim();
        if (s === '00') stack.push(false);
        else if (s === '01') stack.push(true);
        else if (/^[-+]?\d+$/.test(s)) stack.push(normInt(BigInt(s)));
        else fail(`bad INT ${JSON.stringify(s)}`);
        break;
      }
      case 0x4c: { // LONG (text)
        const s = line().trim().replace(/L$/, '');
        if (!/^[-+]?\d+$/.test(s)) fail(`bad LONG ${JSON.stringify(s)}`);
        stack.push(normInt(BigInt(s)));
        break;
      }
      case 0x46: { // FLOAT (text)
        const s = line().trim();
        const v = s === 'nan' ? NaN : s === 'inf' ? Infinity : s === '-inf' ? -Infinity : Number(s);
        if (Number.isNaN(v) && s !== 'nan') fail(`bad FLOAT ${JSON.stringify(s)}`);
        stack.push(v);
        break;
      }

      // ---- strings and bytes
      case 0x58: stack.push(utf8(src.bytes(len(u32())))); break; // BINUNICODE
      case 0x8c: stack.push(utf8(src.bytes(src.byte()))); break; // SHORT_BINUNICODE
      case 0x8d: stack.push(utf8(src.bytes(u64()))); break; // BINUNICODE8
      case 0x42: stack.push(src.bytes(len(u32())).slice()); break; // BINBYTES
      case 0x43: stack.push(src.bytes(src.byte()).slice()); break; // SHORT_BINBYTES
      case 0x8e: stack.push(src.bytes(u64()).slice()); break; // BINBYTES8
      case 0x96: stack.push(src.bytes(u64()).slice()); break; // BYTEARRAY8
      case 0x54: { // BINSTRING (Python 2 str)
        const n = i32();
        if (n < 0) fail('negative BINSTRING length');
        stack.push(utf8(src.bytes(len(n))));
        break;
      }
      case 0x55: stack.push(utf8(src.bytes(src.byte()))); break; // SHORT_BINSTRING
      case 0x53: { // STRING (text repr)
        const s = line().trim();
        const q = s[0];
        if (s.length < 2 || (q !== "'" && q !== '"') || s[s.length - 1] !== q) fail('bad STRING');
        stack.push(unescapePy(s.slice(1, -1), false));
        break;
      }
      case 0x56: stack.push(unescapePy(line(), true)); break; // UNICODE (raw-unicode-escape)
      case 0x97: fail('out-of-band buffers (NEXT_BUFFER) are not supported'); break;
      case 0x98: break; // READONLY_BUFFER: no-op on our values

      // ---- containers
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x29: stack.push(tuple([])); break; // EMPTY_TUPLE
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x8f: stack.push(new Set()); break; // EMPTY_SET
      case 0x6c: stack.push(popMark()); break; // LIST
      case 0x74: stack.push(tuple(popMark())); break; // TUPLE
      case 0x85: stack.push(tuple([pop()])); break; // TUPLE1
      case 0x86: { const b = pop(); const a = pop(); stack.push(tuple([a, b])); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); const a = pop(); stack.push(tuple([a, b, c])); break; } // TUPLE3
      case 0x64: { const m = new Map(); setItems(m, popMark()); stack.push(m); break; } // DICT
      case 0x91: stack.push(Object.freeze(new Set(popMark()))); break; // FROZENSET
      case 0x61: { const v = pop(); appendItems(top(), [v]); break; } // APPEND
      case 0x65: { const items = popMark(); appendItems(top(), items); break; } // APPENDS
      case 0x73: { const v = pop(); const k = pop(); setItems(top(), [k, v]); break; } // SETITEM
      case 0x75: { const items = popMark(); setItems(top(), items); break; } // SETITEMS
      case 0x90: { // ADDITEMS
        const items = popMark();
        const s = top();
        if (!(s instanceof Set) || Object.isFrozen(s)) fail(`ADDITEMS on ${describe(s)}`);
        for (const x of items) (s as Set<unknown>).add(x);
        break;
      }

      // ---- memo
      case 0x70: memo.set(Number(line()), top()); break; // PUT
      case 0x71: memo.set(src.byte(), top()); break; // BINPUT
      case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x67: stack.push(memoGet(Number(line()))); break; // GET
      case 0x68: stack.push(memoGet(src.byte())); break; // BINGET
      case 0x6a: stack.push(memoGet(u32())); break; // LONG_BINGET

      // ---- globals and object construction
      case 0x63: { // GLOBAL "module\nname\n"
        const module = line();
        const name = line();
        stack.push(global(module, name));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        stack.push(global(module as string, name as string));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop();
        const fn = pop();
        stack.push(callGlobal(fn, args, false));
        break;
      }
      case 0x81: { // NEWOBJ
        const args = pop();
        const cls = pop();
        stack.push(callGlobal(cls, args, true));
        break;
      }
      case 0x92: { // NEWOBJ_EX
        const kwargs = pop();
        const args = pop();
        const cls = pop();
        if (!(kwargs instanceof Map)) fail('NEWOBJ_EX keyword arguments must be a dict');
        stack.push(callGlobal(cls, args, true, kwargs as Map<unknown, unknown>));
        break;
      }
      case 0x69: { // INST "module\nname\n" with MARKed args
        const module = line();
        const name = line();
        const args = popMark();
        stack.push(callGlobal(global(module, name), tuple(args), true));
        break;
      }
      case 0x6f: { // OBJ: MARK cls args...
        const items = popMark();
        if (items.length === 0) fail('OBJ without a class');
        stack.push(callGlobal(items[0], tuple(items.slice(1)), true));
        break;
      }
      case 0x62: { // BUILD
        const state = pop();
        const obj = top();
        if (obj instanceof PyOpaqueObject) obj.state = state;
        else if (state === null) { /* nothing to set */ }
        else if (obj instanceof Map || (Array.isArray(obj) && !Object.isFrozen(obj))) attributes.set(obj as object, state);
        else if (typeof obj === 'object' && obj !== null && 'setState' in obj && typeof (obj as { setState: unknown }).setState === 'function') {
          (obj as { setState(s: unknown): void }).setState(state);
        } else fail(`BUILD (__setstate__) on ${describe(obj)} is not supported`);
        break;
      }
      case 0x50: { // PERSID (text)
        const pid = line();
        if (!options.persistentLoad) fail('persistent id found but no persistent loader is set');
        stack.push(options.persistentLoad!(pid));
        break;
      }
      case 0x51: { // BINPERSID
        const pid = pop();
        if (!options.persistentLoad) fail('persistent id found but no persistent loader is set');
        stack.push(options.persistentLoad!(pid));
        break;
      }
      case 0x82: case 0x83: case 0x84: // EXT1, EXT2, EXT4
        fail('copyreg extension codes are not supported');
        break;
      default:
        fail(`unknown opcode 0x${op.toString(16).padStart(2, '0')}`);
    }
  }
}

/** A short description of a value for error messages. */
export function describe(x: unknown): string {
  if (x === null) return 'None';
  if (Array.isArray(x)) return Object.isFrozen(x) ? `a tuple of ${x.length}` : `a list of ${x.length}`;
  if (x instanceof Map) return 'a dict';
  if (x instanceof Set) return 'a set';
  if (x instanceof Uint8Array) return 'bytes';
  if (x instanceof PyCallable) return x.qualname;
  if (x instanceof PyOpaqueGlobal) return x.qualname;
  if (typeof x === 'object') return (x as object).constructor?.name ?? 'an object';
  return `${typeof x} ${String(x).slice(0, 40)}`;
}
