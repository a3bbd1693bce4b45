#!/usr/bin/env python3
"""PyTorch peer of packages/ar's sampling benchmark: the reference's sample_IBQ procedure
(spec/ar.md section 5: KV caches of round_up(1 + L, 8) slots, a boolean causal mask row per step,
CFG on the logits with both halves in one batch, temperature, softmax, torch.multinomial) on the
IBQ GPT, written from the spec (adaLN blocks, RMSNorm, SwiGLU, fused wqkv, 2-D RoPE), float32.

  python3 torch_peer.py '{"n_layer":6,"n_head":8,"n_embd":512,"vocab_size":1024,"block_size":64,
                          "class_num":10,"classes":10,"batch":8,"cfg":2.0,"threads":2}'

Prints one JSON line: seconds, tokens/s.
"""
import json, math, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F


def ffn_hidden(c, multiple_of=256):
    h = int(2 * 4 * c / 3)
    return h if h % multiple_of == 0 else h + multiple_of - h % multiple_of


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(d))

    def forward(self, x):
        return (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rope(x, fc):  # x [B, L, H, D], fc [L, D/2, 2]
    xs = x.float().reshape(*x.shape[:-1], -1, 2)
    fc = fc.view(1, xs.size(1), 1, xs.size(3), 2)
    return torch.stack([xs[..., 0] * fc[..., 0] - xs[..., 1] * fc[..., 1],
                        xs[..., 1] * fc[..., 0] + xs[..., 0] * fc[..., 1]], -1).flatten(3)


class Block(nn.Module):
    def __init__(self, C, H, Hf):
        super().__init__()
        self.C, self.H = C, H
        self.wqkv, self.wo = nn.Linear(C, 3 * C, bias=False), nn.Linear(C, C, bias=False)
        self.w1, self.w3, self.w2 = nn.Linear(C, Hf, bias=False), nn.Linear(C, Hf, bias=False), nn.Linear(Hf, C, bias=False)
        self.n1, self.n2 = RMSNorm(C), RMSNorm(C)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(C, 6 * C))
        self.k_cache = self.v_cache = None

    def forward(self, x, cond, fc, pos, mask):
        B, L, C = x.shape
        g1, g2, s1, s2, b1, b2 = self.ada(cond).view(-1, 1, 6, C).unbind(2)
        h = self.n1(x).mul(s1 + 1).add(b1)
        q, k, v = self.wqkv(h).split([C, C, C], -1)
        D = C // self.H
        q, k = rope(q.view(B, L, self.H, D), fc), rope(k.view(B, L, self.H, D), fc)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.view(B, L, self.H, D).transpose(1, 2)
        self.k_cache[:, :, pos] = k
        self.v_cache[:, :, pos] = v
        att = (q @ self.k_cache.transpose(-2, -1)) / math.sqrt(D)
        att = att.masked_fill(~mask, float('-inf')).softmax(-1)
        o = (att @ self.v_cache).transpose(1, 2).reshape(B, L, C)
        x = x + self.wo(o) * g1
        h = self.n2(x).mul(s2 + 1).add(b2)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h)) * g2


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C, H = cfg['n_embd'], cfg['n_head']
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg['vocab_size'], C)
        self.class_emb = nn.Embedding(cfg['class_num'] + 1, C)
        self.blocks = nn.ModuleList([Block(C, H, ffn_hidden(C)) for _ in range(cfg['n_layer'])])
        self.head_norm = RMSNorm(C)
        self.head_ada = nn.Sequential(nn.SiLU(), nn.Linear(C, 2 * C))
        self.head = nn.Linear(C, cfg['vocab_size'], bias=False)
        D, g = C // H, int(math.sqrt(cfg['block_size']))
        f = 1.0 / (10000 ** (torch.arange(0, D // 2, 2)[: D // 4].float() / (D // 2)))
        f = torch.outer(torch.arange(g).float(), f)
        grid = torch.cat([f[:, None, :].expand(-1, g, -1), f[None, :, :].expand(g, -1, -1)], -1)
        self.fc = torch.cat([torch.zeros(1, D // 2, 2), torch.stack([grid.cos(), grid.sin()], -1).flatten(0, 1)])

    def setup(self, rows, length):
        C, H = self.cfg['n_embd'], self.cfg['n_head']
        for b in self.blocks:
            b.k_cache = torch.zeros(rows, H, length, C // H)
            b.v_cache = torch.zeros(rows, H, length, C // H)
        self.mask = torch.tril(torch.ones(length, length, dtype=torch.bool))

    def step(self, x, cond, pos):
        h = x
        for b in self.blocks:
            h = b(h, cond, self.fc[pos], pos, self.mask[None, None, pos])
        scale, shift = self.head_ada(cond).view(-1, 1, 2, self.cfg['n_embd']).unbind(2)
        return self.head(self.head_norm(h).mul(scale + 1).add(shift))


@torch.no_grad()
def sample(model, cls, n, cfg_scale, temperature=1.0):
    L = model.cfg['block_size']
    labels = torch.tensor([cls] * n + [model.cfg['class_num']] * n)
    cond = model.class_emb(labels).unsqueeze(1)
    model.setup(2 * n, (1 + L + 7) // 8 * 8)
    x, out = cond, []
    for i in range(L):
        logits = model.step(x if i > 0 else cond, cond, torch.tensor([i]))
        c, u = logits.split(n, 0)
        logits = (u + (c - u) * cfg_scale)[:, -1, :] / temperature
        tok = torch.multinomial(F.softmax(logits, -1), 1)
        out.append(tok)
        x = model.tok_emb(torch.cat([tok, tok]))
    return torch.cat(out, 1)


def main():
    cfg = json.loads(sys.argv[1])
    torch.set_num_threads(cfg.get('threads', 2))
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    sample(model, 0, cfg['batch'], cfg['cfg'])  # warm-up
    t = time.perf_counter()
    for c in range(cfg['classes']):
        sample(model, c, cfg['batch'], cfg['cfg'])
    s = time.perf_counter() - t
    tokens = cfg['classes'] * cfg['batch'] * cfg['block_size']
    print(json.dumps({'seconds': s, 'tokens_per_s': tokens / s, 'torch': torch.__version__, 'threads': torch.get_num_threads()}))


if __name__ == '__main__':
    main()
