#!/usr/bin/env python3
"""Golden files for packages/ibq: a small IBQ tokenizer in the official layout, in PyTorch.

Written from shared/spec/tokenizer.md (the taming VQGAN Encoder/Decoder and
IndexPropagationQuantize, quirks included), not copied from the reference. Run with Debian's
python3-torch:  /usr/bin/python3 packages/ibq/scripts/make_golden.py
Writes test/fixtures/golden_small.safetensors: the weights under their official names and the
expected tensors under `expected.*`, plus golden_small.yaml (the config, official schema).
"""
import json, os, struct
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
torch.set_default_dtype(torch.float32)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, '..', 'test', 'fixtures')

CFG = dict(double_z=False, z_channels=8, resolution=16, in_channels=3, out_ch=3, ch=32,
           ch_mult=[2, 1], num_res_blocks=1, attn_resolutions=[8], dropout=0.0)
N_EMBED, EMBED_DIM, BETA, TEMP = 37, 8, 0.25, 0.01


def Normalize(c):
    return nn.GroupNorm(32, c, eps=1e-6, affine=True)


def swish(x):
    return x * torch.sigmoid(x)


class ResnetBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1 = Normalize(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2 = Normalize(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1, 1, 0)
        self.cin, self.cout = cin, cout

    def forward(self, x):
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(swish(self.norm2(h)))
        if self.cin != self.cout:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = Normalize(c)
        self.q = nn.Conv2d(c, c, 1)
        self.k = nn.Conv2d(c, c, 1)
        self.v = nn.Conv2d(c, c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x):
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        b, c, hh, ww = q.shape
        q = q.reshape(b, c, hh * ww).permute(0, 2, 1)
        k = k.reshape(b, c, hh * ww)
        w = torch.bmm(q, k) * (int(c) ** (-0.5))
        w = F.softmax(w, dim=2)
        v = v.reshape(b, c, hh * ww)
        h = torch.bmm(v, w.permute(0, 2, 1)).reshape(b, c, hh, ww)
        return x + self.proj_out(h)


class Downsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 2, 0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1), mode='constant', value=0))


class Upsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode='nearest'))


class Encoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, attn_resolutions, in_channels, resolution, z_channels, double_z, **_):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, 1, 1)
        in_mult = (1,) + tuple(ch_mult)
        res = resolution
        self.down = nn.ModuleList()
        self.n = len(ch_mult)
        for i in range(self.n):
            block, attn = nn.ModuleList(), nn.ModuleList()
            bin_, bout = ch * in_mult[i], ch * ch_mult[i]
            for _ in range(num_res_blocks):
                block.append(ResnetBlock(bin_, bout))
                bin_ = bout
                if res in attn_resolutions:
                    attn.append(AttnBlock(bin_))
            d = nn.Module()
            d.block, d.attn = block, attn
            if i != self.n - 1:
                d.downsample = Downsample(bin_)
                res //= 2
            self.down.append(d)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(bin_, bin_)
        self.mid.attn_1 = AttnBlock(bin_)
        self.mid.block_2 = ResnetBlock(bin_, bin_)
        self.norm_out = Normalize(bin_)
        self.conv_out = nn.Conv2d(bin_, 2 * z_channels if double_z else z_channels, 3, 1, 1)

    def forward(self, x):
        h = self.conv_in(x)
        for i, d in enumerate(self.down):
            for j, blk in enumerate(d.block):
                h = blk(h)
                if len(d.attn) > 0:
                    h = d.attn[j](h)
            if i != self.n - 1:
                h = d.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels, out_ch, **_):
        super().__init__()
        self.n = len(ch_mult)
        bin_ = ch * ch_mult[-1]
        res = resolution // 2 ** (self.n - 1)
        self.conv_in = nn.Conv2d(z_channels, bin_, 3, 1, 1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(bin_, bin_)
        self.mid.attn_1 = AttnBlock(bin_)
        self.mid.block_2 = ResnetBlock(bin_, bin_)
        self.up = nn.ModuleList()
        for i in reversed(range(self.n)):
            block, attn = nn.ModuleList(), nn.ModuleList()
            bout = ch * ch_mult[i]
            for _ in range(num_res_blocks + 1):
                block.append(ResnetBlock(bin_, bout))
                bin_ = bout
                if res in attn_resolutions:
                    attn.append(AttnBlock(bin_))
            u = nn.Module()
            u.block, u.attn = block, attn
            if i != 0:
                u.upsample = Upsample(bin_)
                res *= 2
            self.up.insert(0, u)
        self.norm_out = Normalize(bin_)
        self.conv_out = nn.Conv2d(bin_, out_ch, 3, 1, 1)

    def forward(self, z):
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for i in reversed(range(self.n)):
            u = self.up[i]
            for j, blk in enumerate(u.block):
                h = blk(h)
                if len(u.attn) > 0:
                    h = u.attn[j](h)
            if i != 0:
                h = u.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))


class Quantize(nn.Module):
    def __init__(self, n, d):
        super().__init__()
        self.embedding = nn.Embedding(n, d)

    def forward(self, z):
        E = self.embedding.weight
        logits = torch.einsum('bdhw,nd->bnhw', z, E)
        soft = F.softmax(logits, dim=1)
        ind = soft.max(1, keepdim=True)[1]
        hard = torch.zeros_like(logits).scatter_(1, ind, 1.0)
        one_hot = hard - soft.detach() + soft
        zq = torch.einsum('bnhw,nd->bdhw', one_hot, E)
        zq2 = torch.einsum('bnhw,nd->bdhw', hard, E)
        qloss = torch.mean((zq - z) ** 2) + torch.mean((zq2.detach() - z) ** 2) + BETA * torch.mean((zq2 - z.detach()) ** 2)
        flat = logits.permute(0, 2, 3, 1).reshape(-1, E.shape[0])
        p = F.softmax(flat / TEMP, -1)
        logp = F.log_softmax(flat / TEMP + 1e-5, -1)
        avg_p = p.mean(0)
        avg_entropy = -torch.sum(avg_p * torch.log(avg_p + 1e-5))
        sample_entropy = torch.mean(torch.sum(-p * logp, -1))
        entropy_loss = sample_entropy - avg_entropy
        return zq, (qloss, sample_entropy, avg_entropy, entropy_loss), ind.flatten(), logits


class Tokenizer(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Encoder(**CFG)
        self.decoder = Decoder(**CFG)
        self.quantize = Quantize(N_EMBED, EMBED_DIM)
        self.quant_conv = nn.Conv2d(CFG['z_channels'], EMBED_DIM, 1)
        self.post_quant_conv = nn.Conv2d(EMBED_DIM, CFG['z_channels'], 1)


def randomise(model):
    """Random weights of a realistic scale; GroupNorm affine params away from 1/0 to test them."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'norm' in name and name.endswith('weight'):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif 'norm' in name and name.endswith('bias'):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif name == 'quantize.embedding.weight':
                # codes of the latents' scale so that T=0.01 entropy terms are not all saturated
                p.copy_(0.05 * torch.randn(p.shape, generator=g))


def write_safetensors(path, tensors, meta):
    header, blobs, off = {}, [], 0
    for k, t in tensors.items():
        t = t.detach().contiguous()
        if t.dtype == torch.int64:
            t = t.to(torch.int32)
        dt = {torch.float32: 'F32', torch.int32: 'I32'}[t.dtype]
        b = t.numpy().tobytes()
        header[k] = {'dtype': dt, 'shape': list(t.shape), 'data_offsets': [off, off + len(b)]}
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


def main():
    model = Tokenizer()
    randomise(model)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    h = model.encoder(x)
    z = model.quant_conv(h)
    z.retain_grad()
    zq, (ql, se, ae, el), ind, logits = model.quantize(z)
    xrec = model.decoder(model.post_quant_conv(zq))
    # The generator's terms without LPIPS/GAN: L1 + quant + 0.05 * entropy.
    loss = torch.mean(torch.abs(x - xrec)) + ql + 0.05 * el
    loss.backward()
    out = {k: v for k, v in model.state_dict().items()}
    exp = {
        'x': x, 'encoder_out': h, 'z': z, 'indices': ind.to(torch.int32), 'zq': zq,
        'losses': torch.stack([ql, se, ae, el]), 'xrec': xrec, 'loss': loss.reshape(1),
        'grad.z': z.grad,
    }
    # Gradients of a representative subset (every kind of layer) keep the fixture small.
    checked = ['quantize.embedding.weight', 'quant_conv.weight', 'post_quant_conv.bias', 'encoder.conv_in.weight',
               'encoder.down.0.block.0.norm1.weight', 'encoder.down.0.block.0.nin_shortcut.weight', 'encoder.down.1.block.0.nin_shortcut.weight',
               'encoder.down.1.attn.0.q.weight', 'encoder.mid.attn_1.proj_out.weight', 'decoder.up.1.attn.1.k.weight',
               'decoder.up.0.block.0.nin_shortcut.weight', 'decoder.up.1.upsample.conv.weight', 'decoder.conv_out.weight',
               'decoder.norm_out.bias', 'encoder.down.0.downsample.conv.weight']
    named = dict(model.named_parameters())
    for name in checked:
        exp['grad.' + name] = named[name].grad
    for k, v in exp.items():
        out['expected.' + k] = v
    meta = {'generator': 'packages/ibq/scripts/make_golden.py', 'torch': torch.__version__,
            'n_embed': str(N_EMBED), 'embed_dim': str(EMBED_DIM)}
    os.makedirs(OUT, exist_ok=True)
    write_safetensors(os.path.join(OUT, 'golden_small.safetensors'), out, meta)
    write_lightning_checkpoints()
    rows_zero = int((model.quantize.embedding.weight.grad.abs().sum(1) == 0).sum())
    print('wrote', len(out), 'tensors; loss', float(loss), 'codebook rows with zero gradient:', rows_zero,
          'unique codes', len(set(ind.tolist())))


MICRO = dict(CFG, z_channels=4, resolution=8, ch_mult=[1], attn_resolutions=[])  # configs/micro_test.yaml


def micro_generator():
    """The micro test config's generator modules (seeded values), keyed by their official names."""
    torch.manual_seed(3)
    out = {}
    for prefix, m in [('encoder.', Encoder(**MICRO)), ('decoder.', Decoder(**MICRO)), ('quantize.', Quantize(16, 4)),
                      ('quant_conv.', nn.Conv2d(4, 4, 1)), ('post_quant_conv.', nn.Conv2d(4, 4, 1))]:
        for k, v in m.state_dict().items():
            out[prefix + k] = v
    return out


def write_lightning_checkpoints():
    """Real-format checkpoints for `ibq convert` and `--ckpt` (torch.save of Lightning-style dicts).

    micro.ckpt: a tokenizer checkpoint: the raw generator in float16 (as a mixed-precision run may
    hold it, halved so a test can tell raw from EMA), the EMA copies under
    model_ema.<name without dots> in float32, LPIPS and discriminator entries that conversion
    leaves out, and the usual Lightning top-level keys with plain Python data.
    ar_micro.ckpt: an AR-style checkpoint: `transformer.*` and the tokenizer under `first_stage_model.*`.
    """
    from collections import OrderedDict
    gen = micro_generator()
    sd = OrderedDict()
    for k, v in gen.items():
        sd[k] = (v * 0.5).half()
    sd['loss.perceptual_loss.scaling_layer.shift'] = torch.tensor([-.030, -.088, -.188]).reshape(1, 3, 1, 1)
    sd['loss.perceptual_loss.lin0.model.1.weight'] = torch.zeros(1, 64, 1, 1)
    sd['loss.discriminator.main.0.weight'] = torch.zeros(4, 3, 4, 4)
    sd['loss.discriminator.main.3.num_batches_tracked'] = torch.tensor(7, dtype=torch.int64)
    sd['model_ema.decay'] = torch.tensor(0.999)
    sd['model_ema.num_updates'] = torch.tensor(-1, dtype=torch.int32)
    for k, v in gen.items():
        sd['model_ema.' + k.replace('.', '')] = v.clone()
    sd['model_ema.lossdiscriminatormain0weight'] = torch.zeros(4, 3, 4, 4)
    ckpt = {'epoch': 3, 'global_step': 1234, 'pytorch-lightning_version': '2.2.0', 'state_dict': sd,
            'loops': {'fit_loop': {'state_dict': {}, 'epoch_progress': {'total': {'ready': 4}}}},
            'callbacks': {"ModelCheckpoint{'monitor': 'train/perceptual_loss'}": {'best_model_score': None, 'dirpath': '/x'}},
            'optimizer_states': [{'state': {0: {'step': torch.tensor(3.0), 'exp_avg': torch.zeros(2)}},
                                  'param_groups': [{'lr': 1e-4, 'betas': (0.5, 0.9), 'params': [0]}]}],
            'lr_schedulers': []}
    torch.save(ckpt, os.path.join(OUT, 'micro.ckpt'))
    # the EMA values as plain float32 safetensors, to compare conversions against
    write_safetensors(os.path.join(OUT, 'micro_ema.safetensors'), gen, {'generator': 'packages/ibq/scripts/make_golden.py'})

    ar = OrderedDict()
    ar['transformer.tok_embeddings.weight'] = torch.randn(17, 8)
    ar['transformer.blocks.0.attention.wqkv.weight'] = torch.randn(24, 8)
    for k, v in gen.items():
        ar['first_stage_model.' + k] = v
    torch.save({'state_dict': ar, 'epoch': 0, 'global_step': 0}, os.path.join(OUT, 'ar_micro.ckpt'))


if __name__ == '__main__':
    main()
