#!/usr/bin/env python3
# Golden Inception Score and precision / recall (k = 3) by the ADM suite's formulas
# (guided-diffusion evaluations/evaluator.py: compute_inception_score, ManifoldEstimator),
# written here in numpy with float32 distances, for test/adm-metrics.test.ts.
#
#   /usr/bin/python3 packages/eval/scripts/make_adm_metrics_golden.py packages/eval/test/fixtures/adm_metrics_golden.npz
import sys

import numpy as np


def inception_score(logits, split):
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    scores = []
    for i in range(0, len(p), split):
        part = p[i:i + split]
        kl = part * (np.log(part) - np.log(part.mean(0, keepdims=True)))
        scores.append(np.exp(kl.sum(1).mean()))
    return np.array(scores)


def sqdist(u, v):
    u, v = u.astype(np.float32), v.astype(np.float32)
    return np.maximum((u * u).sum(1)[:, None] - 2 * u @ v.T + (v * v).sum(1)[None, :], 0)


def radii(x, k=3):
    return np.partition(sqdist(x, x), k, axis=1)[:, k]


def main(out):
    rng = np.random.default_rng(7)
    logits = (rng.standard_normal((23, 1008)) * 3).astype(np.float32)
    ref = np.maximum(rng.standard_normal((60, 32)), 0).astype(np.float32)
    sample = np.maximum(rng.standard_normal((45, 32)) * 0.8 + 0.3, 0).astype(np.float32)
    r_ref, r_sample = radii(ref), radii(sample)
    d = sqdist(ref, sample)
    precision = (d <= r_ref[:, None]).any(0).mean()
    recall = (d <= r_sample[None, :]).any(1).mean()
    np.savez(out, logits=logits, is_splits_10=inception_score(logits, 10), is_splits_all=inception_score(logits, 5000),
             ref=ref, sample=sample, radii_ref=r_ref, precision=np.float64(precision), recall=np.float64(recall))
    print("precision", precision, "recall", recall, "IS", inception_score(logits, 5000))


if __name__ == "__main__":
    main(sys.argv[1])
