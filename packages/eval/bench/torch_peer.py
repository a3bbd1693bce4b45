#!/usr/bin/env python3
"""The PyTorch side of packages/eval's benchmark: torchvision's inception_v3 (1008 classes, no
aux head) with the same synthetic weights (scripts/inception_synthetic.py), eval mode, no grad,
pool features of a [B, 3, 299, 299] batch. One JSON line.

usage: /usr/bin/python3 packages/eval/bench/torch_peer.py --batch B --runs N
"""
import json, os, sys, time

import torch
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'scripts'))
from inception_synthetic import synthetic_image, synthetic_state  # noqa: E402

torch.set_num_threads(int(os.environ.get('IBQ_THREADS') or os.cpu_count() or 1))
args = sys.argv[1:]
batch = int(args[args.index('--batch') + 1]) if '--batch' in args else 8
runs = int(args[args.index('--runs') + 1]) if '--runs' in args else 3

net = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, init_weights=False, weights=None)
net.load_state_dict(synthetic_state(net.state_dict()))
net.eval()
x = torch.from_numpy(synthetic_image('bench', (batch, 3, 299, 299))) * 2 - 1


def pool(x):
    n = net
    for m in [n.Conv2d_1a_3x3, n.Conv2d_2a_3x3, n.Conv2d_2b_3x3, n.maxpool1, n.Conv2d_3b_1x1, n.Conv2d_4a_3x3, n.maxpool2,
              n.Mixed_5b, n.Mixed_5c, n.Mixed_5d, n.Mixed_6a, n.Mixed_6b, n.Mixed_6c, n.Mixed_6d, n.Mixed_6e,
              n.Mixed_7a, n.Mixed_7b, n.Mixed_7c, n.avgpool]:
        x = m(x)
    return x


with torch.no_grad():
    pool(x)
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        pool(x)
        ts.append((time.perf_counter() - t) * 1000)
ts.sort()
ms = ts[len(ts) // 2]
print(json.dumps({'bench': 'inception_pool3', 'peer': 'pytorch', 'torch': torch.__version__, 'threads': torch.get_num_threads(),
                  'batch': batch, 'ms': round(ms, 1), 'images_per_s': round(batch * 1000 / ms, 2)}))
