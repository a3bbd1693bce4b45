#!/usr/bin/env python3
# Makes test/fixtures/frechet_golden.npz: feature rows, their numpy statistics and the Frechet
# distance computed the way pytorch-fid and the ADM suite do it (scipy.linalg.sqrtm of the
# product, then its trace). Needs numpy and scipy only (Debian: python3-numpy, python3-scipy).
#
#   /usr/bin/python3 packages/eval/scripts/make_frechet_golden.py packages/eval/test/fixtures/frechet_golden.npz
import sys

import numpy as np
from scipy import linalg


def frechet_scipy(mu1, s1, mu2, s2):
    """The FID formula with scipy's sqrtm route and its fall-backs (eps 1e-6, imaginary tolerance 1e-3)."""
    diff = mu1 - mu2
    root, _ = linalg.sqrtm(s1.dot(s2), disp=False)
    if not np.isfinite(root).all():
        off = np.eye(s1.shape[0]) * 1e-6
        root = linalg.sqrtm((s1 + off).dot(s2 + off))
    if np.iscomplexobj(root):
        if not np.allclose(np.diagonal(root).imag, 0, atol=1e-3):
            raise ValueError("imaginary component")
        root = root.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(root))


def features(rng, n, d, shift):
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    z = rng.standard_normal((n, d))
    # ReLU-like non-negative features with correlations, as Inception's pool features.
    return np.maximum(z @ mix + shift, 0).astype(np.float32)


def main(out):
    rng = np.random.default_rng(20261206)
    arrays = {}
    for name, (n1, n2, d) in {"small": (200, 150, 12), "mid": (300, 260, 48)}.items():
        x1 = features(rng, n1, d, 0.5)
        x2 = features(rng, n2, d, 0.6)
        mu1, s1 = x1.astype(np.float64).mean(0), np.cov(x1.astype(np.float64), rowvar=False)
        mu2, s2 = x2.astype(np.float64).mean(0), np.cov(x2.astype(np.float64), rowvar=False)
        arrays.update({
            f"{name}_x1": x1, f"{name}_x2": x2,
            f"{name}_mu1": mu1, f"{name}_sigma1": s1, f"{name}_mu2": mu2, f"{name}_sigma2": s2,
            f"{name}_fid": np.float64(frechet_scipy(mu1, s1, mu2, s2)),
            # eigenvalues of sigma1 (numpy's eigvalsh) for the solver's own test
            f"{name}_eig1": np.linalg.eigvalsh(s1),
        })
    np.savez(out, **arrays)
    print("wrote", out, {k: (v.shape, v.dtype.str) for k, v in arrays.items()})


if __name__ == "__main__":
    main(sys.argv[1])
