// PyTorch checkpoint reader against files written by real torch.save (scripts/make_fixtures.py).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  TorchCheckpoint,
  TorchTensorRef,
  loadTorchStateDict,
  pyAttributes,
  isTuple,
  toFloat32,
  int64ToInt32,
  type HostTensor,
} from '../src/index.js';

const FIX = join(import.meta.dirname, 'fixtures');
interface ExpectedTensor {
  dtype: string;
  shape: number[];
  stride: number[];
  storage_offset: number;
  contiguous: boolean;
  values: (number | string)[];
}
const expected = JSON.parse(readFileSync(join(FIX, 'expected.json'), 'utf8')) as {
  files: Record<string, { format: string; folder?: string; tensors: Record<string, ExpectedTensor>; [k: string]: unknown }>;
};

function checkValues(t: HostTensor, e: ExpectedTensor, key: string): void {
  expect(t.dtype, key).toBe(e.dtype);
  expect([...t.shape], key).toEqual(e.shape);
  if (t.dtype === 'i64' || t.dtype === 'i32' || t.dtype === 'u8' || t.dtype === 'bool') {
    expect(Array.from(t.data as ArrayLike<number | bigint>, (v) => String(v)), key).toEqual(e.values);
  } else {
    // f16 / bf16 / f32 values are exact in float64, so the comparison is exact.
    expect(Array.from(toFloat32(t)), key).toEqual(e.values);
  }
}

const stateDictFiles = ['zip_v2.pt', 'zip_v5.pt', 'legacy_v2.pt', 'legacy_v5.pt'];

describe('torch.save state dicts (zip and legacy, pickle protocols 2 and 5)', () => {
  for (const name of stateDictFiles) {
    it(name, async () => {
      const exp = expected.files[name]!;
      const ck = await TorchCheckpoint.open(join(FIX, name));
      try {
        expect(ck.format).toBe(exp.format);
        const sd = ck.stateDict();
        expect([...sd.keys()]).toEqual(Object.keys(exp.tensors));
        for (const [key, e] of Object.entries(exp.tensors)) {
          const ref = sd.get(key)!;
          // A tensor pickled twice is one object, named after its first place.
          expect(ref.path).toBe(key === 'tied.a' ? 'conv.bias' : key);
          expect([...ref.stride], key).toEqual(e.stride);
          expect(ref.storageOffset, key).toBe(e.storage_offset);
          expect(ref.isContiguous, key).toBe(e.contiguous);
          checkValues(await ck.read(ref), e, key);
        }
        // Views of one storage share the TorchStorage object (one storage in the file).
        expect(sd.get('shared.tail')!.storage).toBe(sd.get('shared.whole')!.storage);
        expect(sd.get('shared.grid')!.storage).toBe(sd.get('shared.whole')!.storage);
        expect(sd.get('base_t')!.storage).toBe(sd.get('base')!.storage);
        expect(sd.get('tied.a')).toBe(sd.get('conv.bias')); // the very same tensor object (memo)
        expect(sd.get('f16')!.storage).not.toBe(sd.get('bf16')!.storage);
        // The nn.Module state_dict `_metadata` attribute (pickled with BUILD) is kept aside.
        const attrs = pyAttributes(ck.root as object) as Map<string, unknown>;
        expect(attrs).toBeInstanceOf(Map);
        const meta = attrs.get('_metadata') as Map<string, Map<string, unknown>>;
        expect([...meta.keys()]).toEqual(exp.metadata_keys);
        expect(meta.get('module.0')!.get('version')).toBe(1);
      } finally {
        await ck.close();
      }
    });
  }

  it('zip archive folder names vary and are found', async () => {
    expect(expected.files['zip_v2.pt']!.folder).toBe('zip_v2');
    expect(expected.files['zip_archive.pt']!.folder).toBe('archive');
    const ck = await TorchCheckpoint.open(join(FIX, 'zip_archive.pt'));
    try {
      const root = ck.root as Map<string, unknown>;
      const w = root.get('weight') as TorchTensorRef;
      expect(w.isParameter).toBe(true);
      expect(w.requiresGrad).toBe(true);
      expect((root.get('plain') as TorchTensorRef).isParameter).toBe(false);
      for (const [k, e] of Object.entries(expected.files['zip_archive.pt']!.tensors)) checkValues(await ck.read(root.get(k) as TorchTensorRef), e, k);
    } finally {
      await ck.close();
    }
  });

  it('loadTorchStateDict reads everything and agrees across the four formats', async () => {
    const all = await Promise.all(stateDictFiles.map((n) => loadTorchStateDict(join(FIX, n))));
    for (const sd of all.slice(1)) {
      expect([...sd.keys()]).toEqual([...all[0]!.keys()]);
      for (const [k, t] of sd) expect(t).toEqual(all[0]!.get(k));
    }
    const i64 = all[0]!.get('i64')!;
    expect(i64.data).toBeInstanceOf(BigInt64Array);
    expect(() => int64ToInt32(i64.data as BigInt64Array, 'i64')).toThrow(/i64: int64 value 1099511627776 at flat index 2 does not fit in int32/);
    expect(Array.from(int64ToInt32(all[0]!.get('i64_small')!.data as BigInt64Array))).toEqual([3, -4, 1000000]);
    expect(all[0]!.get('expanded')!.data).toEqual(new Float32Array([1.5, -2.5, 1.5, -2.5, 1.5, -2.5]));
  });
});

describe('Lightning checkpoint', () => {
  it('gets through the plain data around the state dict', async () => {
    const exp = expected.files['lightning.ckpt'] as unknown as {
      state_dict: Record<string, ExpectedTensor>;
      optimizer_exp_avg_0: ExpectedTensor;
      best_model_score: ExpectedTensor;
    };
    const ck = await TorchCheckpoint.open(join(FIX, 'lightning.ckpt'));
    try {
      const root = ck.root as Map<string, any>;
      expect(root.get('epoch')).toBe(12);
      expect(root.get('global_step')).toBe(345678);
      expect(root.get('pytorch-lightning_version')).toBe('2.1.3');
      expect(root.get('lr_schedulers')).toEqual([]);
      const sd = ck.stateDict();
      expect([...sd.keys()]).toEqual(Object.keys(exp.state_dict));
      for (const [k, e] of Object.entries(exp.state_dict)) {
        expect(sd.get(k)!.path).toBe(`state_dict/${k}`);
        checkValues(await ck.read(sd.get(k)!), e, k);
      }
      // Optimizer states: int-keyed dicts of tensors, param groups with tuples.
      const opt = root.get('optimizer_states') as Map<string, any>[];
      expect(opt).toHaveLength(2);
      expect(opt[1]).toBe(opt[0]); // the same object twice (pickle memo)
      const state0 = opt[0]!.get('state').get(0) as Map<string, TorchTensorRef>;
      checkValues(await ck.read(state0.get('exp_avg')!), exp.optimizer_exp_avg_0, 'exp_avg');
      const group = opt[0]!.get('param_groups')[0] as Map<string, unknown>;
      expect(group.get('lr')).toBe(4.5e-6);
      expect(group.get('betas')).toEqual([0.5, 0.9]);
      expect(isTuple(group.get('betas'))).toBe(true);
      expect(group.get('foreach')).toBeNull();
      expect(group.get('params')).toEqual([0, 1]);
      const cb = [...(root.get('callbacks') as Map<string, Map<string, unknown>>).values()][0]!;
      checkValues(await ck.read(cb.get('best_model_score') as TorchTensorRef), exp.best_model_score, 'best_model_score');
      expect(cb.get('best_model_path')).toBe('/ckpt/epoch=11.ckpt');
      expect(cb.get('monitor')).toBeNull();
      const loops = root.get('loops') as Map<string, any>;
      expect(loops.get('fit_loop').get('epoch_progress').get('total').get('completed')).toBe(12);
      // Arbitrary plain Python data.
      const plain = root.get('plain') as Map<string, unknown>;
      expect(plain.get('none')).toBeNull();
      expect(plain.get('true')).toBe(true);
      expect(plain.get('false')).toBe(false);
      expect(plain.get('int')).toBe(-7);
      expect(plain.get('big')).toBe(2n ** 70n);
      expect(plain.get('neg_big')).toBe(-(2n ** 65n) + 3n);
      expect(plain.get('float')).toBe(3.25);
      expect(plain.get('nan_inf')).toEqual([Infinity, -Infinity]);
      expect(plain.get('str')).toBe('héllo wörld ✓');
      expect(plain.get('bytes')).toEqual(new Uint8Array([0, 1, 0xfe, 0xff]));
      expect(plain.get('bytearray')).toEqual(new TextEncoder().encode('abc'));
      expect(plain.get('tuple')).toEqual([1, 'two', [3]]);
      expect(plain.get('list')).toEqual([1, [2, [3]]]);
      expect(plain.get('set')).toEqual(new Set([1, 2, 3]));
      expect(plain.get('frozenset')).toEqual(new Set(['a']));
      expect(plain.get('int_keys')).toEqual(new Map([[1, 'one'], [2, 'two']]));
      expect(plain.get('size')).toEqual([2, 3]);
      expect(plain.get('long_str')).toBe('x'.repeat(300));
      // Tensors outside the state dict are named by their place in the tree.
      expect(state0.get('exp_avg')!.path).toBe('optimizer_states/0/state/0/exp_avg');
    } finally {
      await ck.close();
    }
  });
});
