#!/usr/bin/env python3
"""Generate the checkpoint fixtures of packages/formats/test/fixtures.

Run with a Python that has torch (Debian: `apt install python3-torch`, then
`/usr/bin/python3 packages/formats/scripts/make_fixtures.py`). Writes small files (KBs):

  zip_v2.pt            torch.save zip format, pickle protocol 2 (torch's default)
  zip_v5.pt            zip format, pickle protocol 5
  zip_archive.pt       zip format saved through BytesIO (archive folder "archive")
  legacy_v2.pt         _use_new_zipfile_serialization=False, protocol 2
  legacy_v5.pt         legacy format, protocol 5
  lightning.ckpt       a Lightning-style checkpoint (nested dict, optimizer states, plain data)
  reference.safetensors  a safetensors file written here by hand from the format spec
  hostile_*.pt         files that must be rejected (code-running pickles, absurd sizes...)
  expected.json        what the readers must return for each good file

The state dicts hold f32/f16/bf16/i64 tensors, a tensor with a storage offset, a
non-contiguous (transposed / strided) view, and tensors sharing one storage. The hostile
files are built with the standard zipfile and pickle modules; building them runs nothing
(pickle.dumps only records the __reduce__ result).
"""

import collections
import io
import json
import os
import pickle
import struct
import sys
import zipfile

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures")


def values_of(t):
    flat = t.detach().contiguous().reshape(-1)
    if t.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool):
        return [str(int(v)) for v in flat.tolist()]
    return [float(v) for v in flat.double().tolist()]


DTYPE_NAMES = {
    torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16", torch.int64: "i64",
    torch.int32: "i32", torch.uint8: "u8", torch.float64: "f64", torch.bool: "bool",
}


def describe(t):
    return {
        "dtype": DTYPE_NAMES[t.dtype],
        "shape": list(t.shape),
        "stride": list(t.stride()),
        "storage_offset": t.storage_offset(),
        "contiguous": t.is_contiguous(),
        "values": values_of(t),
    }


def make_state_dict():
    g = torch.Generator().manual_seed(1234)
    base = torch.randn(4, 6, generator=g)
    shared = torch.arange(24, dtype=torch.float32) * 0.25 - 3.0
    sd = collections.OrderedDict()
    sd["conv.weight"] = torch.randn(3, 2, 1, 1, generator=g)
    sd["conv.bias"] = torch.randn(3, generator=g)
    sd["f16"] = (torch.randn(2, 5, generator=g) * 10).half()
    sd["bf16"] = (torch.randn(7, generator=g) * 100).bfloat16()
    sd["i64"] = torch.tensor([[0, -1, 2**40], [-(2**62), 5, 7]], dtype=torch.int64)
    sd["i64_small"] = torch.tensor([3, -4, 1000000], dtype=torch.int64)
    sd["scalar"] = torch.tensor(0.999)
    sd["count"] = torch.tensor(-1, dtype=torch.int32)
    sd["empty"] = torch.zeros(0, 3)
    # A transposed (non-contiguous) view and a strided slice of the same storage as "base".
    sd["base"] = base
    sd["base_t"] = base.t()
    sd["base_strided"] = base[1:, ::2]
    # Two views into one storage with offsets, plus a tensor tied to the same storage.
    sd["shared.whole"] = shared
    sd["shared.tail"] = shared[10:]
    sd["shared.grid"] = shared.view(4, 6)[:, 1:4]
    sd["tied.a"] = sd["conv.bias"]
    # An expanded tensor (stride 0).
    sd["expanded"] = torch.tensor([1.5, -2.5]).unsqueeze(0).expand(3, 2)
    return sd


def module_state_dict():
    # A real nn.Module state_dict carries a `_metadata` attribute (pickled with BUILD).
    torch.manual_seed(7)
    m = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.GroupNorm(1, 3))
    return m.state_dict()


def expected_for(sd):
    return {k: describe(v) for k, v in sd.items()}


def save(obj, name, **kw):
    path = os.path.join(OUT, name)
    torch.save(obj, path, **kw)
    return path


def zip_folder(path):
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if n.endswith("data.pkl")]
        return names[0][: -len("data.pkl")].rstrip("/")


def lightning_ckpt(sd):
    # Optimizer state as torch.optim.Adam stores it (int keys, tensors, tuples of floats).
    params = [sd["conv.weight"], sd["conv.bias"]]
    opt_state = {
        "state": {
            0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(3, 2, 1, 1) * 0.5, "exp_avg_sq": torch.ones(3, 2, 1, 1) * 0.25},
            1: {"step": torch.tensor(3.0), "exp_avg": torch.full((3,), -0.5), "exp_avg_sq": torch.full((3,), 2.0)},
        },
        "param_groups": [
            {"lr": 4.5e-06, "betas": (0.5, 0.9), "eps": 1e-08, "weight_decay": 0.0, "amsgrad": False,
             "maximize": False, "foreach": None, "capturable": False, "params": [0, 1]},
        ],
    }
    del params
    return {
        "epoch": 12,
        "global_step": 345678,
        "pytorch-lightning_version": "2.1.3",
        "state_dict": collections.OrderedDict((k, sd[k]) for k in ["conv.weight", "conv.bias", "f16", "bf16", "base_t"]),
        "loops": {
            "fit_loop": {
                "state_dict": {},
                "epoch_progress": {"total": {"ready": 13, "completed": 12}, "current": {"ready": 13, "completed": 12}},
            }
        },
        "callbacks": {
            "ModelCheckpoint{'monitor': None, 'mode': 'min', 'every_n_train_steps': 0, 'every_n_epochs': 1}": {
                "monitor": None,
                "best_model_score": torch.tensor(0.125),
                "best_model_path": "/ckpt/epoch=11.ckpt",
                "kth_best_model_path": "",
                "dirpath": "/ckpt",
                "best_k_models": {},
                "last_model_path": "",
            }
        },
        "optimizer_states": [opt_state, opt_state],
        "lr_schedulers": [],
        "plain": {
            "none": None,
            "true": True,
            "false": False,
            "int": -7,
            "big": 2**70,
            "neg_big": -(2**65) + 3,
            "float": 3.25,
            "nan_inf": [float("inf"), float("-inf")],
            "str": "héllo wörld ✓",
            "bytes": b"\x00\x01\xfe\xff",
            "bytearray": bytearray(b"abc"),
            "tuple": (1, "two", (3.0,)),
            "list": [1, [2, [3]]],
            "set": {1, 2, 3},
            "frozenset": frozenset(["a"]),
            "int_keys": {1: "one", 2: "two"},
            "size": torch.Size([2, 3]),
            "long_str": "x" * 300,
        },
    }


# ---- hand-written safetensors (from the format spec, independent of the TS writer) ----

ST_DTYPE = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
            torch.int32: "I32", torch.uint8: "U8", torch.float64: "F64", torch.bool: "BOOL"}


def tensor_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_safetensors(path, tensors, metadata):
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    blobs = []
    for k, t in tensors.items():
        b = tensor_bytes(t)
        header[k] = {"dtype": ST_DTYPE[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---- hostile files -------------------------------------------------------------------------

class RunCommand:
    """Pickles as posix.system('...') + REDUCE; dumps() does not run anything."""

    def __init__(self, fn, cmd):
        self.fn, self.cmd = fn, cmd

    def __reduce__(self):
        return (self.fn, (self.cmd,))


class FakeStorage:
    def __init__(self, key, storage_type, numel):
        self.key, self.storage_type, self.numel = key, storage_type, numel


class FakeTensor:
    """Pickles like torch's tensor (_rebuild_tensor_v2) with arbitrary, possibly absurd, fields."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class CraftPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, FakeStorage):
            return ("storage", obj.storage_type, obj.key, "cpu", obj.numel)
        return None


def craft_pickle(obj, protocol=2):
    buf = io.BytesIO()
    CraftPickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


def write_zip(path, entries, folder="archive", compress=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compress) as z:
        for name, data in entries.items():
            z.writestr(f"{folder}/{name}", data)


def hostile_files():
    out = {}
    marker = "/tmp/ibq-fixture-pwned"
    # posix.system through a REDUCE (what a malicious torch.save file does), protocol 2, zip.
    p = os.path.join(OUT, "hostile_posix_system.pt")
    write_zip(p, {"data.pkl": pickle.dumps({"w": RunCommand(os.system, f"touch {marker}")}, protocol=2), "version": b"3\n"})
    out["hostile_posix_system.pt"] = {"global": f"{os.system.__module__}.system"}
    # builtins.eval inside a state dict, protocol 4 (STACK_GLOBAL), zip.
    p = os.path.join(OUT, "hostile_eval.pt")
    write_zip(p, {"data.pkl": pickle.dumps({"state_dict": {"x": RunCommand(eval, "__import__('os').system('true')")}}, protocol=4)})
    out["hostile_eval.pt"] = {"global": "builtins.eval"}
    # subprocess.Popen in a legacy-format file (after valid magic / version / sys_info pickles).
    import subprocess
    buf = io.BytesIO()
    for x in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        pickle.dump(x, buf, protocol=2)
    pickle.dump({"a": RunCommand(subprocess.Popen, ["true"])}, buf, protocol=2)
    pickle.dump([], buf, protocol=2)
    with open(os.path.join(OUT, "hostile_popen_legacy.pt"), "wb") as f:
        f.write(buf.getvalue())
    # Protocol 2 stores Python 2 names (fix_imports): subprocess.Popen is written as commands.Popen.
    out["hostile_popen_legacy.pt"] = {"global": "commands.Popen"}
    # A storage that claims more elements than its archive entry holds.
    st = FakeStorage("0", torch.FloatStorage, 10**12)
    write_zip(os.path.join(OUT, "hostile_numel.pt"), {"data.pkl": craft_pickle({"w": FakeTensor(st, 0, [10**6, 10**6], [10**6, 1])}), "data/0": b"\0" * 16})
    # A tensor whose offset / size run past its (honest) storage.
    st = FakeStorage("0", torch.FloatStorage, 4)
    write_zip(os.path.join(OUT, "hostile_offset.pt"), {"data.pkl": craft_pickle({"w": FakeTensor(st, 2**40, [2], [1])}), "data/0": b"\0" * 16})
    write_zip(os.path.join(OUT, "hostile_negative_offset.pt"), {"data.pkl": craft_pickle({"w": FakeTensor(st, -8, [2], [1])}), "data/0": b"\0" * 16})
    write_zip(os.path.join(OUT, "hostile_shape.pt"), {"data.pkl": craft_pickle({"w": FakeTensor(st, 0, [3, 2], [2, 1])}), "data/0": b"\0" * 16})
    # A storage key whose entry is missing.
    write_zip(os.path.join(OUT, "hostile_missing_storage.pt"), {"data.pkl": craft_pickle({"w": FakeTensor(FakeStorage("9", torch.FloatStorage, 4), 0, [4], [1])})})
    # A deflated data.pkl whose size claim is absurd (zip bomb-ish): patch the size fields.
    p = os.path.join(OUT, "hostile_zip_bomb.pt")
    write_zip(p, {"data.pkl": pickle.dumps({"a": 1}, protocol=2), "data/0": b""}, compress=zipfile.ZIP_DEFLATED)
    raw = bytearray(open(p, "rb").read())
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        i = raw.find(sig)
        struct.pack_into("<I", raw, i + off, 0xFFFFFFF0)
    open(p, "wb").write(bytes(raw))
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    expected = {"torch_version": torch.__version__, "files": {}}
    sd = make_state_dict()
    msd = module_state_dict()
    full = collections.OrderedDict(list(sd.items()) + [("module." + k, v) for k, v in msd.items()])
    full._metadata = collections.OrderedDict(("module." + k if k else "module", v) for k, v in msd._metadata.items())
    exp_sd = expected_for(full)

    for name, kw in [
        ("zip_v2.pt", {}),
        ("zip_v5.pt", {"pickle_protocol": 5}),
        ("legacy_v2.pt", {"_use_new_zipfile_serialization": False}),
        ("legacy_v5.pt", {"_use_new_zipfile_serialization": False, "pickle_protocol": 5}),
    ]:
        path = save(full, name, **kw)
        entry = {"format": "legacy" if "legacy" in name else "zip", "tensors": exp_sd,
                 "metadata_keys": list(full._metadata.keys())}
        if entry["format"] == "zip":
            entry["folder"] = zip_folder(path)
        expected["files"][name] = entry

    # Saved through a BytesIO: the archive folder is "archive"; also holds an nn.Parameter.
    buf = io.BytesIO()
    obj = {"weight": torch.nn.Parameter(torch.arange(6, dtype=torch.float32).view(2, 3)), "plain": torch.arange(3)}
    torch.save(obj, buf)
    with open(os.path.join(OUT, "zip_archive.pt"), "wb") as f:
        f.write(buf.getvalue())
    expected["files"]["zip_archive.pt"] = {"format": "zip", "folder": zip_folder(os.path.join(OUT, "zip_archive.pt")),
                                          "tensors": expected_for(obj), "parameters": ["weight"]}

    ck = lightning_ckpt(sd)
    save(ck, "lightning.ckpt")
    expected["files"]["lightning.ckpt"] = {
        "format": "zip",
        "state_dict": expected_for(ck["state_dict"]),
        "optimizer_exp_avg_0": describe(ck["optimizer_states"][0]["state"][0]["exp_avg"]),
        "best_model_score": describe(ck["callbacks"][next(iter(ck["callbacks"]))]["best_model_score"]),
    }

    st = collections.OrderedDict([
        ("f32", torch.tensor([[1.0, -2.5, 3.25], [1e-8, 65504.0, -0.0]])),
        ("f16", torch.tensor([1.0, -2.0, 0.099975586, 65504.0, 6e-8], dtype=torch.float16)),
        ("bf16", torch.tensor([1.0, -3.140625, 1e30, -1e-30], dtype=torch.bfloat16)),
        ("i64", torch.tensor([0, -1, 2**53 + 1, -(2**63)], dtype=torch.int64)),
        ("i32", torch.tensor([[7, -8]], dtype=torch.int32)),
        ("u8", torch.tensor([0, 1, 255], dtype=torch.uint8)),
        ("scalar", torch.tensor(2.0)),
        ("empty", torch.zeros(2, 0)),
    ])
    meta = {"format": "pt", "note": "written by make_fixtures.py"}
    write_safetensors(os.path.join(OUT, "reference.safetensors"), st, meta)
    expected["files"]["reference.safetensors"] = {"tensors": expected_for(st), "metadata": meta, "order": list(st.keys())}

    expected["hostile"] = hostile_files()

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, separators=(",", ":"))
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes, to {os.path.normpath(OUT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
