#!/usr/bin/env python3
"""Golden files for packages/eval's LPIPS (VGG variant, v0.1 heads), made with PyTorch.

Written from shared/spec/training.md §4 and eval.md §3 (the taming / richzhang LPIPS: scaling
layer, torchvision VGG16 `features` cut into five slices, channel unit-normalisation, squared
difference, Dropout + 1x1 conv heads in eval mode, spatial mean, sum over the taps), not copied
from the reference. Run with Debian's python3-torch (torchvision is not needed: VGG16's
`features` is built here exactly as torchvision's make_layers(cfg 'D') builds it, so the
layer indices are torchvision's):

    /usr/bin/python3 packages/eval/scripts/make_lpips_golden.py

The network is width-reduced (channels WIDTHS instead of 64,128,256,512,512) with the same
layer structure and indices, random weights of realistic scale, so the fixtures stay small.
The input is 36x28 (odd sizes after the 3rd and 4th pools, so MaxPool2d's floor mode matters),
and the second image of the batch is piecewise constant: inside flat regions the pooled
activations tie at positive values, which checks that the max-pool gradient goes to the first
maximal element of each window as in PyTorch.

Writes to packages/eval/test/fixtures/:
  lpips_golden.safetensors   weights under the LPIPS module's own names (the tokenizer
                             checkpoint's `loss.perceptual_loss.*` with the prefix stripped),
                             `input.x0`, `input.x1` and `expected.*` (per-layer and total
                             LPIPS, the five taps of x1, the gradient of sum(LPIPS) w.r.t. x1,
                             LPIPS of the full-size flat images for the tie check).
  lpips_vgg16_small.pth      torchvision-style vgg16 state dict (features.<idx>.*, plus
                             classifier.* entries to ignore), zip format.
  lpips_heads_small.pth      LPIPS v0.1-style heads (lin0..lin4.model.1.weight), legacy
                             (non-zip) pickle format, as the official vgg.pth.
  lpips_tokenizer_small.ckpt a Lightning-style checkpoint whose state_dict holds the same
                             weights under `loss.perceptual_loss.*` next to unrelated entries.
"""
import collections
import json
import os
import struct

import torch
import torch.nn as nn

torch.manual_seed(0)
torch.set_default_dtype(torch.float32)
torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, '..', 'test', 'fixtures')

WIDTHS = [8, 12, 16, 24, 32]
N, H, W = 2, 36, 28
SHIFT = [-.030, -.088, -.188]
SCALE = [.458, .448, .450]
# Slice boundaries in VGG16 `features` (taming / richzhang vgg16 wrapper).
SLICES = [(0, 4), (4, 9), (9, 16), (16, 23), (23, 30)]


def make_features(w):
    """torchvision.models.vgg.make_layers(cfgs['D'], batch_norm=False) with other widths."""
    cfg = [w[0], w[0], 'M', w[1], w[1], 'M', w[2], w[2], w[2], 'M', w[3], w[3], w[3], 'M', w[4], w[4], w[4], 'M']
    layers, c = [], 3
    for v in cfg:
        if v == 'M':
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(c, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            c = v
    return nn.Sequential(*layers)


class VGG16Slices(nn.Module):
    def __init__(self, features):
        super().__init__()
        for k, (a, b) in enumerate(SLICES):
            s = nn.Sequential()
            for i in range(a, b):
                s.add_module(str(i), features[i])
            setattr(self, f'slice{k + 1}', s)

    def forward(self, x):
        outs = []
        for k in range(5):
            x = getattr(self, f'slice{k + 1}')(x)
            outs.append(x)
        return outs


class ScalingLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer('shift', torch.tensor(SHIFT)[None, :, None, None])
        self.register_buffer('scale', torch.tensor(SCALE)[None, :, None, None])

    def forward(self, x):
        return (x - self.shift) / self.scale


class NetLinLayer(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(cin, 1, 1, stride=1, padding=0, bias=False))


def normalize_tensor(x, eps=1e-10):
    norm_factor = torch.sqrt(torch.sum(x ** 2, dim=1, keepdim=True))
    return x / (norm_factor + eps)


class LPIPS(nn.Module):
    def __init__(self, widths):
        super().__init__()
        self.scaling_layer = ScalingLayer()
        self.net = VGG16Slices(make_features(widths))
        for k, c in enumerate(widths):
            setattr(self, f'lin{k}', NetLinLayer(c))
        for p in self.parameters():
            p.requires_grad = False

    def forward(self, x0, x1):
        f0 = self.net(self.scaling_layer(x0))
        f1 = self.net(self.scaling_layer(x1))
        res = []
        for k in range(5):
            d = (normalize_tensor(f0[k]) - normalize_tensor(f1[k])) ** 2
            res.append(getattr(self, f'lin{k}').model(d).mean([2, 3], keepdim=True))
        return sum(res), res, f1


def randomise(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith('net.') and name.endswith('.weight'):
                # torchvision's VGG init: kaiming normal, fan_out, relu.
                nn.init.kaiming_normal_(p, mode='fan_out', nonlinearity='relu')
            elif name.startswith('net.') and name.endswith('.bias'):
                p.normal_(0, 0.05)
            elif name.startswith('lin'):
                # v0.1 heads are non-negative (clamped during their training), of this order.
                p.uniform_(0, 0.2)
            else:
                raise RuntimeError(name)


def inputs():
    x0 = torch.rand(N, 3, H, W) * 2 - 1
    x1 = (x0 + 0.3 * torch.randn(N, 3, H, W)).clamp(-1, 1)
    # Second image of x1: four flat rectangles (ties inside the flat regions).
    flat = torch.empty(3, H, W)
    colours = torch.rand(4, 3) * 1.6 - 0.8
    flat[:, :H // 2, :W // 2] = colours[0][:, None, None]
    flat[:, :H // 2, W // 2:] = colours[1][:, None, None]
    flat[:, H // 2:, :W // 2] = colours[2][:, None, None]
    flat[:, H // 2:, W // 2:] = colours[3][:, None, None]
    x1[1] = flat
    return x0, x1


def write_safetensors(path, tensors, meta):
    header, blobs, off = {}, [], 0
    for k, t in tensors.items():
        t = t.detach().contiguous().to(torch.float32)
        b = t.numpy().tobytes()
        header[k] = {'dtype': 'F32', 'shape': list(t.shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header['__metadata__'] = meta
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def count_positive_ties(model, x):
    """How many 2x2 pool windows have their maximum (> 0) more than once: the tie check is live."""
    ties = 0
    h = model.scaling_layer(x)
    for k in range(5):
        s = getattr(model.net, f'slice{k + 1}')
        for m in s.children():
            if isinstance(m, nn.MaxPool2d):
                n, c, hh, ww = h.shape
                win = h[:, :, :hh // 2 * 2, :ww // 2 * 2].reshape(n, c, hh // 2, 2, ww // 2, 2)
                win = win.permute(0, 1, 2, 4, 3, 5).reshape(n, c, hh // 2, ww // 2, 4)
                mx = win.max(-1, keepdim=True).values
                ties += int((((win == mx).sum(-1) > 1) & (mx[..., 0] > 0)).sum())
            h = m(h)
    return ties


def main():
    os.makedirs(OUT, exist_ok=True)
    model = LPIPS(WIDTHS)
    randomise(model)
    model.eval()
    x0, x1 = inputs()

    x1g = x1.clone().requires_grad_(True)
    total, res, f1 = model(x0, x1g)
    total.sum().backward()
    with torch.no_grad():
        same, _, _ = model(x1, x1)
    assert float(same.abs().max()) == 0.0
    ties = count_positive_ties(model, x1)
    assert ties > 0, 'the flat image should give tied positive maxima'

    sd = model.state_dict()
    tensors = collections.OrderedDict((k, v) for k, v in sd.items())
    tensors['input.x0'] = x0
    tensors['input.x1'] = x1
    tensors['expected.lpips'] = total.detach()
    for k in range(5):
        tensors[f'expected.layer{k}'] = res[k].detach()
        tensors[f'expected.tap{k}'] = f1[k].detach()
    tensors['expected.grad_x1'] = x1g.grad
    write_safetensors(os.path.join(OUT, 'lpips_golden.safetensors'), tensors, {
        'widths': json.dumps(WIDTHS), 'generator': 'packages/eval/scripts/make_lpips_golden.py',
        'torch': torch.__version__, 'positive_pool_ties': str(ties),
    })

    # torchvision-style vgg16 file: features.<idx>.* plus classifier entries a loader must ignore.
    vgg = collections.OrderedDict()
    for k, v in sd.items():
        if k.startswith('net.slice'):
            vgg['features.' + k.split('.', 2)[2]] = v.clone()
    vgg['classifier.0.weight'] = torch.randn(5, 7)
    vgg['classifier.0.bias'] = torch.randn(5)
    vgg['classifier.6.weight'] = torch.randn(3, 5)
    vgg['classifier.6.bias'] = torch.randn(3)
    torch.save(vgg, os.path.join(OUT, 'lpips_vgg16_small.pth'))

    heads = collections.OrderedDict((k, v.clone()) for k, v in sd.items() if k.startswith('lin'))
    torch.save(heads, os.path.join(OUT, 'lpips_heads_small.pth'), _use_new_zipfile_serialization=False)

    state = collections.OrderedDict()
    state['encoder.conv_in.weight'] = torch.randn(4, 3, 3, 3)
    for k, v in sd.items():
        state['loss.perceptual_loss.' + k] = v.clone()
    state['loss.discriminator.main.0.weight'] = torch.randn(4, 3, 4, 4)
    ckpt = {'epoch': 0, 'global_step': 0, 'pytorch-lightning_version': '2.2.0', 'state_dict': state}
    torch.save(ckpt, os.path.join(OUT, 'lpips_tokenizer_small.ckpt'))

    print('lpips', total.flatten().tolist(), 'layers', [r.flatten().tolist() for r in res], 'positive ties', ties)


if __name__ == '__main__':
    main()
