# The numpy twin of src/synthetic-weights.ts: deterministic synthetic InceptionV3 weights and
# images, bit-identical to the TypeScript ones (32-bit integer hashing, one float64 expression
# rounded to float32). Imported by make_inception_golden.py and the benchmark's PyTorch peer.
import numpy as np

M32 = np.uint64(0xFFFFFFFF)


def fnv1a32(key):
    h = 0x811C9DC5
    for ch in key.encode("ascii"):
        h ^= ch
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def lowbias32(x):
    x = x.astype(np.uint64) & M32
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x7FEB352D)) & M32
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x846CA68B)) & M32
    x ^= x >> np.uint64(16)
    return x


def synthetic_values(key, n, scale, offset=0.0):
    i = np.arange(n, dtype=np.uint64)
    h = lowbias32((lowbias32(i) + np.uint64(fnv1a32(key))) & M32)
    u = (h >> np.uint64(8)).astype(np.float64) / 16777216.0
    return ((2.0 * u - 1.0) * scale + offset).astype(np.float32)


def synthetic_image(key, shape):
    return synthetic_values(key, int(np.prod(shape)), 0.5, 0.5).reshape(shape)


def synthetic_state(reference_state):
    """Synthetic values for every float tensor of `reference_state` (a torch state dict of the FID
    Inception); running statistics 0 / 1 (calibrate them), num_batches_tracked kept."""
    import torch

    out = {}
    for key, t in reference_state.items():
        shape = tuple(t.shape)
        n = int(np.prod(shape)) if shape else 1
        if key.endswith(".conv.weight"):
            fan_in = int(np.prod(shape[1:]))
            v = synthetic_values(key, n, np.sqrt(3.0 / fan_in))
        elif key.endswith(".bn.weight"):
            v = synthetic_values(key, n, 0.2, 1.0)
        elif key.endswith(".bn.bias"):
            v = synthetic_values(key, n, 0.1)
        elif key == "fc.weight":
            v = synthetic_values(key, n, np.sqrt(3.0 / 2048))
        elif key == "fc.bias":
            v = synthetic_values(key, n, 0.1)
        elif key.endswith("running_mean"):
            v = np.zeros(n, np.float32)
        elif key.endswith("running_var"):
            v = np.ones(n, np.float32)
        else:
            out[key] = t.clone()
            continue
        out[key] = torch.from_numpy(v.reshape(shape))
    return out
