#!/usr/bin/env python3
# Golden LPIPS, AlexNet variant (spec eval.md §3: scaling layer, torchvision alexnet `features`
# tapped after relu1..relu5 = features[1], [4], [7], [9], [11] (64, 192, 384, 256, 256
# channels), channel unit-normalisation, squared difference, 1x1 heads, spatial mean, sum over
# taps), written from the spec with torchvision's alexnet (not the lpips package's code), on
# the synthetic weights of inception_synthetic.py (identical in src/synthetic-weights.ts), so
# only the outputs are committed:
#
#   /usr/bin/python3 packages/eval/scripts/make_lpips_alex_golden.py packages/eval/test/fixtures/lpips_alex_golden.npz
import os
import sys

import numpy as np
import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from inception_synthetic import synthetic_image, synthetic_values  # noqa: E402

SHIFT = torch.tensor([-.030, -.088, -.188]).view(1, 3, 1, 1)
SCALE = torch.tensor([.458, .448, .450]).view(1, 3, 1, 1)
TAPS = [1, 4, 7, 9, 11]
CHANNELS = [64, 192, 384, 256, 256]


def main(out):
    net = torchvision.models.alexnet(weights=None).eval()
    sd = net.state_dict()
    for k, t in sd.items():
        n = t.numel()
        if k.startswith('features.') and k.endswith('.weight'):
            v = synthetic_values(k, n, np.sqrt(3.0 / int(np.prod(t.shape[1:]))))
        else:
            v = synthetic_values(k, n, 0.05)
        sd[k] = torch.from_numpy(v.reshape(tuple(t.shape)))
    net.load_state_dict(sd)
    heads = [torch.from_numpy(np.abs(synthetic_values(f'lin{i}.model.1.weight', c, 0.2)).reshape(1, c, 1, 1)) for i, c in enumerate(CHANNELS)]
    x0 = torch.from_numpy(synthetic_image('alex.x0', (2, 3, 64, 56)) * 2 - 1)
    x1 = torch.from_numpy(synthetic_image('alex.x1', (2, 3, 64, 56)) * 2 - 1)

    def taps(x):
        h, out = (x - SHIFT) / SCALE, []
        for i, m in enumerate(net.features[:12]):
            h = m(h)
            if i in TAPS:
                out.append(h)
        return out

    def unit(f):
        return f / (torch.sqrt(torch.sum(f ** 2, dim=1, keepdim=True)) + 1e-10)

    with torch.no_grad():
        f0, f1 = taps(x0), taps(x1)
        layers = [torch.nn.functional.conv2d((unit(a) - unit(b)) ** 2, w).mean(dim=(2, 3)) for a, b, w in zip(f0, f1, heads)]
        total = sum(layers)
    np.savez(out, total=total.numpy()[:, 0], layers=torch.cat(layers, 1).numpy())
    print(total.numpy()[:, 0])


if __name__ == '__main__':
    main(sys.argv[1])
