#!/usr/bin/env python3
"""PyTorch peer of packages/ar's training benchmark (bench/train.bench.ts): one optimizer step of
the IBQ GPT as the reference trains it (spec/ar.md section 4): logits of z[:, :-1] with the class
token, cross-entropy over all positions, backward, global-norm clipping at 1.0, AdamW (0.9, 0.95,
weight decay 0.05), with the config's dropouts, float32. The layers come from torch_peer.py (the
sampling peer); this file adds the whole-sequence training forward.

  python3 torch_train_peer.py '{"n_layer":6,"n_head":8,"n_embd":512,"vocab_size":1024,"block_size":64,
                                "class_num":10,"batch":16,"steps":10,"threads":2,"token_drop":0.1,
                                "resid_dropout_p":0.0,"ffn_dropout_p":0.1}'

Prints one JSON line: seconds, tokens/s.
"""
import json, math, os, sys, time
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_peer import GPT, rope  # noqa: E402


def block_forward(b, x, cond, fc, mask, cfg):
    B, L, C = x.shape
    g1, g2, s1, s2, b1, b2 = b.ada(cond).view(-1, 1, 6, C).unbind(2)
    h = b.n1(x).mul(s1 + 1).add(b1)
    q, k, v = b.wqkv(h).split([C, C, C], -1)
    D = C // b.H
    q, k = rope(q.view(B, L, b.H, D), fc), rope(k.view(B, L, b.H, D), fc)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.view(B, L, b.H, D).transpose(1, 2)
    att = ((q @ k.transpose(-2, -1)) / math.sqrt(D)).masked_fill(~mask, float('-inf')).softmax(-1)
    o = (att @ v).transpose(1, 2).reshape(B, L, C)
    x = x + F.dropout(b.wo(o), cfg['resid_dropout_p'], True) * g1
    h = b.n2(x).mul(s2 + 1).add(b2)
    return x + F.dropout(b.w2(F.silu(b.w1(h)) * b.w3(h)), cfg['ffn_dropout_p'], True) * g2


def logits_of(model, tokens, labels, cfg):
    drop = torch.rand(labels.shape) < 0.1
    labels = torch.where(drop, torch.full_like(labels, cfg['class_num']), labels)
    cond = model.class_emb(labels).unsqueeze(1)
    x = torch.cat([cond, model.tok_emb(tokens)], 1)
    x = F.dropout(x, cfg['token_drop'], True)
    L = x.size(1)
    mask = torch.tril(torch.ones(L, L, dtype=torch.bool))[None, None]
    for b in model.blocks:
        x = block_forward(b, x, cond, model.fc[:L], mask, cfg)
    scale, shift = model.head_ada(cond).view(-1, 1, 2, cfg['n_embd']).unbind(2)
    return model.head(model.head_norm(x).mul(scale + 1).add(shift))


def main():
    cfg = json.loads(sys.argv[1])
    torch.set_num_threads(cfg.get('threads', 2))
    torch.manual_seed(0)
    model = GPT(cfg).train()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.05)
    B, L, V = cfg['batch'], cfg['block_size'], cfg['vocab_size']
    z = torch.randint(0, V, (B, L))
    labels = torch.randint(0, cfg['class_num'], (B,))

    def step():
        logits = logits_of(model, z[:, :-1], labels, cfg)
        loss = F.cross_entropy(logits.reshape(-1, V), z.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    step()  # warm-up
    t = time.perf_counter()
    for _ in range(cfg['steps']):
        step()
    s = time.perf_counter() - t
    print(json.dumps({'seconds': s, 'tokens_per_s': cfg['steps'] * B * L / s, 'torch': torch.__version__, 'threads': torch.get_num_threads()}))


if __name__ == '__main__':
    main()
