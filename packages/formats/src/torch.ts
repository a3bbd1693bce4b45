// Weights-only reader for PyTorch checkpoints (torch.save files: `.pt`, `.pth`, `.ckpt`).
//
// Two container formats:
// - zip (torch.save's default since 1.6): `<folder>/data.pkl` is the pickled object, and
//   each storage is the stored entry `<folder>/data/<key>`; persistent ids are
//   ('storage', storage_type, key, location, numel).
// - legacy (`_use_new_zipfile_serialization=False`): five things back to back in one file:
//   the pickled magic number, the protocol version (1001), a sys_info dict, the pickled
//   object (persistent ids ('storage', storage_type, key, location, numel, view_metadata)),
//   the pickled sorted list of storage keys, then for each key an int64 element count and
//   the raw little-endian bytes.
//
// The pickles are read by the restricted unpickler in pickle.ts with the allow-list below.
// Tensors come back as TorchTensorRef (dtype, shape, strides, storage offset): no tensor data
// is read until `read(ref)`, which reads just the bytes it needs by file position and makes a
// contiguous copy.

import {
  allocHost,
  assertLittleEndianHost,
  bytesOf,
  hostDTypeSize,
  type HostDType,
  type HostTensor,
} from './dtype.js';
import { CheckpointError } from './errors.js';
import { RandomAccessFile } from './file.js';
import {
  DisallowedGlobalError,
  FileSource,
  MemorySource,
  PickleEOF,
  PyCallable,
  PyOpaqueGlobal,
  describe,
  isTuple,
  unpickle,
  type ByteSource,
} from './pickle.js';
import { ZipReader } from './zip.js';

/** A storage type global such as torch.FloatStorage. */
export class TorchStorageType {
  constructor(readonly name: string, readonly dtype: HostDType) {}
}

/** A dtype global such as torch.float32 (used by _rebuild_tensor_v3). */
export class TorchDType {
  constructor(readonly name: string, readonly dtype: HostDType) {}
}

/** Where a storage's bytes are: a byte range of an archive entry or of the file. */
interface StorageSource {
  /** Bytes available to this storage. */
  readonly byteLength: number;
  read(byteStart: number, target: Uint8Array): Promise<void>;
}

/** One serialized storage (the flat buffer under one or more tensors). */
export class TorchStorage {
  /** Set when the storage's bytes have been located (immediately for zip, after the key list for legacy). */
  source: StorageSource | undefined;
  constructor(
    readonly key: string,
    readonly dtype: HostDType,
    readonly numel: number,
    readonly location: string,
  ) {}
  get byteLength(): number {
    return this.numel * hostDTypeSize(this.dtype);
  }
}

/** A tensor in a checkpoint, not yet read. */
export class TorchTensorRef {
  /** Where the tensor sits in the loaded object, e.g. "state_dict/encoder.conv_in.weight". */
  path = '';
  isParameter = false;
  constructor(
    readonly dtype: HostDType,
    readonly shape: readonly number[],
    readonly stride: readonly number[],
    readonly storageOffset: number,
    readonly storage: TorchStorage,
    public requiresGrad: boolean,
  ) {}
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  /** Row-major contiguous (ignoring dimensions of size 1)? */
  get isContiguous(): boolean {
    let expected = 1;
    for (let i = this.shape.length - 1; i >= 0; i--) {
      if (this.shape[i] !== 1 && this.stride[i] !== expected) return false;
      expected *= this.shape[i]!;
    }
    return true;
  }
  /** Torch's Tensor has a __setstate__; BUILD on a tensor is accepted and ignored. */
  setState(_state: unknown): void {}
}

export interface TorchLoadOptions {
  /**
   * What to do with a pickle global outside the allow-list. 'reject' (default): fail with an
   * error naming module.name. 'opaque': keep it as an inert PyOpaqueGlobal / PyOpaqueObject
   * record (nothing is called either way), for checkpoints whose extra content (e.g. a
   * Lightning `hyper_parameters` object) uses other classes.
   */
  unknownGlobals?: 'reject' | 'opaque';
  /** Largest data.pkl read into memory (default 1 GiB). */
  maxPickleBytes?: number;
}

const STORAGE_TYPES: Record<string, HostDType> = {
  FloatStorage: 'f32', DoubleStorage: 'f64', HalfStorage: 'f16', BFloat16Storage: 'bf16',
  LongStorage: 'i64', IntStorage: 'i32', ShortStorage: 'i16', CharStorage: 'i8',
  ByteStorage: 'u8', BoolStorage: 'bool', UntypedStorage: 'u8',
};

const DTYPES: Record<string, HostDType> = {
  float32: 'f32', float: 'f32', float64: 'f64', double: 'f64', float16: 'f16', half: 'f16', bfloat16: 'bf16',
  int64: 'i64', long: 'i64', int32: 'i32', int: 'i32', int16: 'i16', short: 'i16', int8: 'i8', uint8: 'u8', bool: 'bool',
};

const isInt = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x);

/** The allow-list: module.name -> value. */
function makeGlobals(tensors: TorchTensorRef[]): Map<string, unknown> {
  const g = new Map<string, unknown>();
  const bad = (fn: string, msg: string): never => {
    throw new Error(`${fn}: ${msg}`);
  };

  const intList = (fn: string, what: string, x: unknown): number[] => {
    if (!Array.isArray(x) || !x.every((d) => isInt(d) && d >= 0)) bad(fn, `${what} must be a tuple of non-negative integers, got ${describe(x)}`);
    return (x as number[]).slice();
  };
  const rebuild = (fn: string, storage: unknown, offset: unknown, size: unknown, stride: unknown, requiresGrad: unknown, dtype?: HostDType): TorchTensorRef => {
    if (!(storage instanceof TorchStorage)) bad(fn, `expected a storage, got ${describe(storage)}`);
    if (!isInt(offset) || offset < 0) bad(fn, `storage offset must be a non-negative integer, got ${describe(offset)}`);
    const shape = intList(fn, 'size', size);
    const strides = intList(fn, 'stride', stride);
    if (shape.length !== strides.length) bad(fn, `size has ${shape.length} dimensions but stride has ${strides.length}`);
    const t = new TorchTensorRef(dtype ?? (storage as TorchStorage).dtype, shape, strides, offset as number, storage as TorchStorage, requiresGrad === true);
    tensors.push(t);
    return t;
  };

  const rebuildV2 = new PyCallable('torch._utils._rebuild_tensor_v2', (a) => {
    if (a.length < 6 || a.length > 7) bad('_rebuild_tensor_v2', `expected 6 or 7 arguments, got ${a.length}`);
    return rebuild('_rebuild_tensor_v2', a[0], a[1], a[2], a[3], a[4]);
  });
  const rebuildV1 = new PyCallable('torch._utils._rebuild_tensor', (a) => {
    if (a.length !== 4) bad('_rebuild_tensor', `expected 4 arguments, got ${a.length}`);
    return rebuild('_rebuild_tensor', a[0], a[1], a[2], a[3], false);
  });
  const rebuildV3 = new PyCallable('torch._utils._rebuild_tensor_v3', (a) => {
    if (a.length < 7 || a.length > 8) bad('_rebuild_tensor_v3', `expected 7 or 8 arguments, got ${a.length}`);
    if (!(a[6] instanceof TorchDType)) bad('_rebuild_tensor_v3', `expected a dtype, got ${describe(a[6])}`);
    return rebuild('_rebuild_tensor_v3', a[0], a[1], a[2], a[3], a[4], (a[6] as TorchDType).dtype);
  });
  const asParameter = (fn: string, data: unknown, requiresGrad: unknown): TorchTensorRef => {
    if (!(data instanceof TorchTensorRef)) bad(fn, `expected a tensor, got ${describe(data)}`);
    const t = data as TorchTensorRef;
    t.isParameter = true;
    t.requiresGrad = requiresGrad === true;
    return t;
  };
  const rebuildParameter = new PyCallable('torch._utils._rebuild_parameter', (a) => {
    if (a.length !== 3) bad('_rebuild_parameter', `expected 3 arguments, got ${a.length}`);
    return asParameter('_rebuild_parameter', a[0], a[1]);
  });
  const rebuildParameterWithState = new PyCallable('torch._utils._rebuild_parameter_with_state', (a) => {
    if (a.length !== 4) bad('_rebuild_parameter_with_state', `expected 4 arguments, got ${a.length}`);
    return asParameter('_rebuild_parameter_with_state', a[0], a[1]);
  });
  const rebuilders = new Set<unknown>([rebuildV1, rebuildV2, rebuildV3, rebuildParameter, rebuildParameterWithState]);
  const tensorClass = new PyCallable('torch.Tensor', () => bad('torch.Tensor', 'cannot be called directly'));
  const parameterClass = new PyCallable('torch.nn.parameter.Parameter', () => bad('torch.nn.parameter.Parameter', 'cannot be called directly'));
  const fromTypeV2 = new PyCallable('torch._tensor._rebuild_from_type_v2', (a) => {
    if (a.length !== 4) bad('_rebuild_from_type_v2', `expected 4 arguments, got ${a.length}`);
    const [func, newType, args] = a;
    if (!rebuilders.has(func)) bad('_rebuild_from_type_v2', `rebuild function must be one of torch's tensor rebuild functions, got ${describe(func)}`);
    if (newType !== tensorClass && newType !== parameterClass) bad('_rebuild_from_type_v2', `tensor subclass ${describe(newType)} is not supported`);
    if (!Array.isArray(args)) bad('_rebuild_from_type_v2', 'arguments must be a tuple');
    const t = (func as PyCallable).call(args as unknown[]);
    if (newType === parameterClass && t instanceof TorchTensorRef) t.isParameter = true;
    return t;
  });

  g.set('torch._utils._rebuild_tensor', rebuildV1);
  g.set('torch._utils._rebuild_tensor_v2', rebuildV2);
  g.set('torch._utils._rebuild_tensor_v3', rebuildV3);
  g.set('torch._utils._rebuild_parameter', rebuildParameter);
  g.set('torch._utils._rebuild_parameter_with_state', rebuildParameterWithState);
  g.set('torch._tensor._rebuild_from_type_v2', fromTypeV2);
  g.set('torch.Tensor', tensorClass);
  g.set('torch.nn.parameter.Parameter', parameterClass);
  for (const [name, dtype] of Object.entries(STORAGE_TYPES)) {
    g.set(`torch.${name}`, new TorchStorageType(name, dtype));
    if (name !== 'UntypedStorage') g.set(`torch.cuda.${name}`, new TorchStorageType(name, dtype));
  }
  for (const [name, dtype] of Object.entries(DTYPES)) g.set(`torch.${name}`, new TorchDType(name, dtype));

  const orderedDict = (a: readonly unknown[]): Map<unknown, unknown> => {
    const m = new Map<unknown, unknown>();
    if (a.length > 1) bad('collections.OrderedDict', `expected at most 1 argument, got ${a.length}`);
    if (a.length === 1 && a[0] !== null) {
      const items = a[0];
      if (items instanceof Map) for (const [k, v] of items) m.set(k, v);
      else if (Array.isArray(items)) {
        for (const kv of items) {
          if (!Array.isArray(kv) || kv.length !== 2) bad('collections.OrderedDict', 'items must be (key, value) pairs');
          m.set((kv as unknown[])[0], (kv as unknown[])[1]);
        }
      } else bad('collections.OrderedDict', `cannot build from ${describe(items)}`);
    }
    return m;
  };
  g.set('collections.OrderedDict', new PyCallable('collections.OrderedDict', orderedDict, (a) => orderedDict(a)));
  g.set('torch.Size', new PyCallable('torch.Size', (a) => {
    if (a.length > 1) bad('torch.Size', `expected at most 1 argument, got ${a.length}`);
    return Object.freeze(intList('torch.Size', 'sizes', a[0] ?? []));
  }));
  g.set('torch.device', new PyCallable('torch.device', (a) => {
    if (typeof a[0] !== 'string' || a.length > 2 || (a.length === 2 && !isInt(a[1]))) bad('torch.device', 'expected (type, index?)');
    return a.length === 2 ? `${a[0]}:${a[1]}` : a[0];
  }));
  // Python 3 writes bytes as _codecs.encode(str, 'latin1') under pickle protocol 2.
  g.set('_codecs.encode', new PyCallable('_codecs.encode', (a) => {
    const [s, enc] = a;
    if (typeof s !== 'string' || (a.length === 2 && typeof enc !== 'string') || a.length > 2) return bad('_codecs.encode', 'expected (str, encoding)');
    const e = (a.length === 2 ? (enc as string) : 'utf-8').toLowerCase().replace('_', '-');
    if (e === 'latin1' || e === 'latin-1' || e === 'iso-8859-1') {
      const out = new Uint8Array(s.length);
      for (let i = 0; i < s.length; i++) {
        const c = s.charCodeAt(i);
        if (c > 255) bad('_codecs.encode', 'character outside latin-1');
        out[i] = c;
      }
      return out;
    }
    if (e === 'utf-8' || e === 'utf8' || e === 'ascii') return new TextEncoder().encode(s);
    return bad('_codecs.encode', `encoding ${String(enc)} is not supported`);
  }));
  const makeSet = (name: string, frozen: boolean) =>
    new PyCallable(name, (a) => {
      if (a.length > 1) bad(name, `expected at most 1 argument, got ${a.length}`);
      const items = a[0] ?? [];
      if (!Array.isArray(items) && !(items instanceof Set)) bad(name, `cannot build from ${describe(items)}`);
      const s = new Set(items as Iterable<unknown>);
      return frozen ? Object.freeze(s) : s;
    });
  const makeBytearray = (name: string) =>
    new PyCallable(name, (a) => {
      if (a.length === 0) return new Uint8Array(0);
      if (a[0] instanceof Uint8Array) return a[0].slice();
      if (Array.isArray(a[0]) && a[0].every((x) => isInt(x) && x >= 0 && x < 256)) return Uint8Array.from(a[0] as number[]);
      if (typeof a[0] === 'string') return Uint8Array.from(a[0], (c) => c.charCodeAt(0) & 0xff);
      return bad(name, `cannot build from ${describe(a[0])}`);
    });
  for (const mod of ['builtins', '__builtin__']) {
    g.set(`${mod}.set`, makeSet(`${mod}.set`, false));
    g.set(`${mod}.frozenset`, makeSet(`${mod}.frozenset`, true));
    g.set(`${mod}.bytearray`, makeBytearray(`${mod}.bytearray`));
  }
  return g;
}

/** A loaded checkpoint: the Python object tree with TorchTensorRef leaves, and their data on demand. */
export class TorchCheckpoint {
  private constructor(
    readonly path: string,
    readonly format: 'zip' | 'legacy',
    /** The unpickled object (dicts are Maps; see pickle.ts for the mapping). */
    readonly root: unknown,
    /** Every tensor, in the order they were unpickled. */
    readonly tensors: readonly TorchTensorRef[],
    private readonly file: RandomAccessFile,
  ) {}

  static async open(path: string, options: TorchLoadOptions = {}): Promise<TorchCheckpoint> {
    assertLittleEndianHost();
    const file = await RandomAccessFile.open(path);
    try {
      const head = await file.read(0, Math.min(file.size, 512), 'file header');
      if (file.size === 0) throw new CheckpointError(path, 'empty file');
      let format: 'zip' | 'legacy';
      let root: unknown;
      let tensors: TorchTensorRef[];
      if (ZipReader.looksLikeZip(head)) {
        format = 'zip';
        ({ root, tensors } = await loadZip(file, options));
      } else if (head[0] === 0x80) {
        format = 'legacy';
        ({ root, tensors } = loadLegacy(file, options));
      } else if (head.byteLength >= 262 && new TextDecoder().decode(head.subarray(257, 262)) === 'ustar') {
        throw new CheckpointError(path, 'tar-format checkpoint (PyTorch < 0.4) is not supported');
      } else {
        throw new CheckpointError(path, 'not a PyTorch checkpoint: neither a zip archive nor a pickle');
      }
      assignPaths(root);
      for (const t of tensors) validateTensor(path, t);
      return new TorchCheckpoint(path, format, root, tensors, file);
    } catch (e) {
      await file.close();
      throw e;
    }
  }

  /**
   * The model's state dict: `root.state_dict` for a Lightning checkpoint (or any dict with a
   * 'state_dict' or 'model' dict of tensors), else the root itself. Non-tensor entries are
   * skipped.
   */
  stateDict(): Map<string, TorchTensorRef> {
    const pick = (x: unknown): Map<unknown, unknown> | undefined => (x instanceof Map ? x : undefined);
    const root = pick(this.root);
    if (!root) throw new CheckpointError(this.path, `the checkpoint holds ${describe(this.root)}, not a dict of tensors`);
    const inner = pick(root.get('state_dict')) ?? (hasNoTensors(root) ? pick(root.get('model')) : undefined) ?? root;
    const out = new Map<string, TorchTensorRef>();
    for (const [k, v] of inner) if (typeof k === 'string' && v instanceof TorchTensorRef) out.set(k, v);
    return out;
  }

  /** A tensor's values as a new contiguous array of its dtype (strided views are gathered). */
  async read(ref: TorchTensorRef): Promise<HostTensor> {
    return readTensor(this.path, ref);
  }

  /** Every tensor of `stateDict()`, read. */
  async readStateDict(): Promise<Map<string, HostTensor>> {
    const out = new Map<string, HostTensor>();
    for (const [k, ref] of this.stateDict()) out.set(k, await this.read(ref));
    return out;
  }

  async close(): Promise<void> {
    await this.file.close();
  }
}

function hasNoTensors(m: Map<unknown, unknown>): boolean {
  for (const v of m.values()) if (v instanceof TorchTensorRef) return false;
  return true;
}

/** Open a checkpoint, read its state dict (see `TorchCheckpoint.stateDict`), close. */
export async function loadTorchStateDict(path: string, options?: TorchLoadOptions): Promise<Map<string, HostTensor>> {
  const ck = await TorchCheckpoint.open(path, options);
  try {
    return await ck.readStateDict();
  } finally {
    await ck.close();
  }
}

function resolver(file: string, options: TorchLoadOptions, globals: Map<string, unknown>) {
  return (module: string, name: string): unknown => {
    const v = globals.get(`${module}.${name}`);
    if (v !== undefined) return v;
    if (options.unknownGlobals === 'opaque') return new PyOpaqueGlobal(module, name);
    throw new DisallowedGlobalError(module, name);
  };
}

/** Run the unpickler and turn its errors into CheckpointErrors naming the file and part. */
function runUnpickle(file: string, part: string, src: ByteSource, options: Parameters<typeof unpickle>[1]): unknown {
  try {
    return unpickle(src, options);
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    if (e instanceof PickleEOF) throw new CheckpointError(file, `${e.message} (truncated file?)`, part);
    throw new CheckpointError(file, (e as Error).message, part);
  }
}

function storageType(fn: string, x: unknown): TorchStorageType {
  if (!(x instanceof TorchStorageType)) throw new Error(`${fn}: expected a torch storage type, got ${describe(x)}`);
  return x;
}

async function loadZip(file: RandomAccessFile, options: TorchLoadOptions): Promise<{ root: unknown; tensors: TorchTensorRef[] }> {
  const path = file.path;
  const zip = await ZipReader.open(file);
  const pkls = [...zip.entries.keys()].filter((n) => n === 'data.pkl' || n.endsWith('/data.pkl')).sort((a, b) => a.length - b.length);
  if (pkls.length === 0) throw new CheckpointError(path, 'zip archive has no data.pkl: not a torch.save checkpoint');
  const pklName = pkls[0]!;
  const prefix = pklName.slice(0, pklName.length - 'data.pkl'.length);
  const byteorder = zip.entries.get(`${prefix}byteorder`);
  if (byteorder) {
    const bo = new TextDecoder().decode(await zip.readEntry(byteorder.name, 64)).trim();
    if (bo !== 'little') throw new CheckpointError(path, `byte order "${bo}" is not supported (only little-endian)`, byteorder.name);
  }
  const pkl = await zip.readEntry(pklName, options.maxPickleBytes ?? 2 ** 30);
  const tensors: TorchTensorRef[] = [];
  const globals = makeGlobals(tensors);
  const storages = new Map<string, TorchStorage>();
  const persistentLoad = (pid: unknown): unknown => {
    if (!isTuple(pid) || pid[0] !== 'storage') throw new Error(`unsupported persistent id ${describe(pid)} (only 'storage' ids)`);
    if (pid.length !== 5) throw new Error(`storage persistent id has ${pid.length} fields, expected 5`);
    const [, type, key, location, numel] = pid;
    const st = storageType('persistent_load', type);
    if (typeof key !== 'string') throw new Error(`storage key must be a string, got ${describe(key)}`);
    if (!isInt(numel) || numel < 0) throw new Error(`storage ${key}: element count must be a non-negative integer, got ${describe(numel)}`);
    const existing = storages.get(key);
    if (existing) return existing;
    const s = new TorchStorage(key, st.dtype, numel, String(location));
    const entryName = `${prefix}data/${key}`;
    const entry = zip.entries.get(entryName);
    if (!entry) throw new CheckpointError(path, `storage "${key}" has no archive entry`, entryName);
    if (s.byteLength > entry.uncompressedSize) {
      throw new CheckpointError(path, `storage "${key}" claims ${numel} ${st.name} elements (${s.byteLength} bytes) but its archive entry has ${entry.uncompressedSize} bytes`, entryName);
    }
    s.source = { byteLength: s.byteLength, read: (start, target) => zip.readRange(entryName, start, target) };
    storages.set(key, s);
    return s;
  };
  const root = runUnpickle(path, pklName, new MemorySource(pkl), { resolveGlobal: resolver(path, options, globals), persistentLoad });
  return { root, tensors };
}

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;

function loadLegacy(file: RandomAccessFile, options: TorchLoadOptions): { root: unknown; tensors: TorchTensorRef[] } {
  const path = file.path;
  const src = new FileSource(file, 0);
  const plain = { resolveGlobal: resolver(path, { unknownGlobals: 'reject' }, new Map()) };
  let magic: unknown;
  try {
    magic = unpickle(src, plain);
  } catch (e) {
    throw new CheckpointError(path, `not a PyTorch checkpoint: the file starts with a pickle that cannot be read (${(e as Error).message})`);
  }
  if (magic !== LEGACY_MAGIC) throw new CheckpointError(path, `not a PyTorch checkpoint: a pickle of ${describe(magic)} instead of torch's magic number`);
  const version = runUnpickle(path, 'protocol version', src, plain);
  if (version !== 1001) throw new CheckpointError(path, `legacy serialization protocol ${describe(version)} is not supported (expected 1001)`);
  const sysInfo = runUnpickle(path, 'sys_info', src, plain);
  if (!(sysInfo instanceof Map)) throw new CheckpointError(path, 'sys_info is not a dict', 'sys_info');
  if (sysInfo.get('little_endian') !== true) throw new CheckpointError(path, 'big-endian checkpoints are not supported', 'sys_info');

  const tensors: TorchTensorRef[] = [];
  const globals = makeGlobals(tensors);
  const storages = new Map<string, TorchStorage>();
  const views: { view: TorchStorage; base: TorchStorage; byteOffset: number }[] = [];
  const persistentLoad = (pid: unknown): unknown => {
    if (!isTuple(pid) || pid[0] !== 'storage') throw new Error(`unsupported persistent id ${describe(pid)} (only 'storage' ids)`);
    if (pid.length !== 6) throw new Error(`legacy storage persistent id has ${pid.length} fields, expected 6`);
    const [, type, key, location, numel, viewMeta] = pid;
    const st = storageType('persistent_load', type);
    if (typeof key !== 'string') throw new Error(`storage key must be a string, got ${describe(key)}`);
    if (!isInt(numel) || numel < 0) throw new Error(`storage ${key}: element count must be a non-negative integer, got ${describe(numel)}`);
    let base = storages.get(key);
    if (!base) {
      base = new TorchStorage(key, st.dtype, numel, String(location));
      storages.set(key, base);
    }
    if (viewMeta === null || viewMeta === undefined) return base;
    // Old files could save views of storages: (view_key, offset, view_size) in elements.
    if (!Array.isArray(viewMeta) || viewMeta.length !== 3) throw new Error(`storage ${key}: malformed view metadata`);
    const [viewKey, offset, size] = viewMeta as unknown[];
    if (typeof viewKey !== 'string' || !isInt(offset) || offset < 0 || !isInt(size) || size < 0) throw new Error(`storage ${key}: malformed view metadata`);
    const existing = storages.get(`view:${viewKey}`);
    if (existing) return existing;
    const view = new TorchStorage(viewKey, st.dtype, size, String(location));
    storages.set(`view:${viewKey}`, view);
    views.push({ view, base, byteOffset: offset * hostDTypeSize(st.dtype) });
    return view;
  };
  const root = runUnpickle(path, 'object pickle', src, { resolveGlobal: resolver(path, options, globals), persistentLoad });
  const keys = runUnpickle(path, 'storage key list', src, plain);
  if (!Array.isArray(keys) || !keys.every((k) => typeof k === 'string')) throw new CheckpointError(path, 'the storage key list is not a list of strings', 'storage key list');

  let pos = src.position;
  const header = new Uint8Array(8);
  for (const key of keys as string[]) {
    const s = storages.get(key);
    if (!s) throw new CheckpointError(path, 'storage listed in the file but not used by any tensor', `storage ${key}`);
    file.checkRange(pos, 8, 'legacy storage header', `storage ${key}`);
    file.readIntoSync(header, pos, 'legacy storage header', `storage ${key}`);
    const n = new DataView(header.buffer).getBigInt64(0, true);
    if (n !== BigInt(s.numel)) {
      throw new CheckpointError(path, `storage header says ${n} elements but the pickle said ${s.numel} (corrupt file)`, `storage ${key}`);
    }
    const dataPos = pos + 8;
    if (dataPos + s.byteLength > file.size) {
      throw new CheckpointError(path, `storage of ${s.numel} elements (${s.byteLength} bytes at offset ${dataPos}) runs past the end of the file (${file.size} bytes): truncated file`, `storage ${key}`);
    }
    s.source = { byteLength: s.byteLength, read: (start, target) => file.readInto(target, dataPos + start, 'storage data', `storage ${key}`) };
    pos = dataPos + s.byteLength;
  }
  for (const [k, s] of storages) {
    if (!k.startsWith('view:') && !s.source) throw new CheckpointError(path, 'storage used by a tensor is missing from the storage list', `storage ${k}`);
  }
  for (const { view, base, byteOffset } of views) {
    if (byteOffset + view.byteLength > base.byteLength) throw new CheckpointError(path, `storage view exceeds its base storage ${base.key}`, `storage ${view.key}`);
    const baseSrc = base.source!;
    view.source = { byteLength: view.byteLength, read: (start, target) => baseSrc.read(byteOffset + start, target) };
  }
  return { root, tensors };
}

/**
 * Name every tensor by where it sits in the object tree ("state_dict/conv.weight"), in
 * depth-first order. Iterative, and paths are built only for tensors (at most 32 levels
 * shown): a hostile file may nest containers very deeply.
 */
function assignPaths(root: unknown): void {
  interface Node { parent: Node | undefined; key: string }
  const pathOf = (n: Node | undefined): string => {
    const parts: string[] = [];
    for (; n && parts.length < 32; n = n.parent) parts.push(n.key);
    if (n) parts.push('…');
    return parts.reverse().join('/');
  };
  const seen = new Set<unknown>();
  const todo: [unknown, Node | undefined][] = [[root, undefined]];
  while (todo.length) {
    const [x, node] = todo.pop()!;
    if (x instanceof TorchTensorRef) {
      if (!x.path) x.path = pathOf(node) || '<root>';
      continue;
    }
    if (typeof x !== 'object' || x === null || seen.has(x)) continue;
    seen.add(x);
    const children: [unknown, Node][] = [];
    if (x instanceof Map) for (const [k, v] of x) children.push([v, { parent: node, key: String(k) }]);
    else if (Array.isArray(x)) x.forEach((v, i) => children.push([v, { parent: node, key: String(i) }]));
    else if (x instanceof Set) [...x].forEach((v, i) => children.push([v, { parent: node, key: String(i) }]));
    for (let i = children.length - 1; i >= 0; i--) todo.push(children[i]!);
  }
}

/** The tensor's elements must lie inside its storage. */
function validateTensor(file: string, t: TorchTensorRef): void {
  const key = t.path || undefined;
  const es = hostDTypeSize(t.dtype);
  let numel = 1;
  let maxIndex = t.storageOffset;
  for (let i = 0; i < t.shape.length; i++) {
    numel *= t.shape[i]!;
    if (t.shape[i]! > 0) maxIndex += (t.shape[i]! - 1) * t.stride[i]!;
  }
  if (!Number.isSafeInteger(numel) || !Number.isSafeInteger(maxIndex)) {
    throw new CheckpointError(file, `tensor shape [${t.shape.join(', ')}] / strides are absurdly large`, key);
  }
  if (numel === 0) return;
  const needBytes = (maxIndex + 1) * es;
  if (!Number.isSafeInteger(needBytes) || needBytes > t.storage.byteLength) {
    throw new CheckpointError(
      file,
      `tensor [${t.shape.join(', ')}] with strides [${t.stride.join(', ')}] and storage offset ${t.storageOffset} needs ${needBytes} bytes but its storage "${t.storage.key}" has ${t.storage.byteLength}`,
      key,
    );
  }
}

async function readTensor(file: string, t: TorchTensorRef): Promise<HostTensor> {
  const src = t.storage.source;
  if (!src) throw new CheckpointError(file, 'tensor storage was never located', t.path);
  const numel = t.numel;
  const out = allocHost(t.dtype, numel);
  const es = hostDTypeSize(t.dtype);
  if (numel === 0) return { dtype: t.dtype, shape: t.shape.slice(), data: out };
  if (t.isContiguous) {
    await src.read(t.storageOffset * es, bytesOf(out));
    return { dtype: t.dtype, shape: t.shape.slice(), data: out };
  }
  // Strided view: read the span it touches, then gather into row-major order.
  let span = 1;
  for (let i = 0; i < t.shape.length; i++) span += (t.shape[i]! - 1) * t.stride[i]!;
  const tmp = allocHost(t.dtype, span);
  await src.read(t.storageOffset * es, bytesOf(tmp));
  gather(tmp as unknown as ArrayLike<unknown> & { [i: number]: unknown }, out as unknown as { [i: number]: unknown }, t.shape, t.stride);
  return { dtype: t.dtype, shape: t.shape.slice(), data: out };
}

function gather(src: { [i: number]: unknown }, dst: { [i: number]: unknown }, shape: readonly number[], stride: readonly number[]): void {
  const nd = shape.length;
  const last = nd - 1;
  const idx = new Array<number>(nd).fill(0);
  const n = shape[last]!;
  const s = stride[last]!;
  let base = 0;
  let o = 0;
  for (;;) {
    for (let j = 0, p = base; j < n; j++, p += s) dst[o++] = src[p];
    let d = last - 1;
    for (; d >= 0; d--) {
      idx[d]!++;
      base += stride[d]!;
      if (idx[d]! < shape[d]!) break;
      base -= idx[d]! * stride[d]!;
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}
