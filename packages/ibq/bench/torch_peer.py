#!/usr/bin/env python3
"""The PyTorch side of packages/ibq's benchmarks: the same work, one JSON line per figure.

Uses the spec-derived modules of scripts/make_golden.py (not the reference's code).
usage: /usr/bin/python3 packages/ibq/bench/torch_peer.py {encode_decode|quantizer|train_s} [--runs N]
"""
import json, os, resource, sys, time
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'scripts'))
import make_golden as G  # noqa: E402

torch.set_num_threads(int(os.environ.get('IBQ_THREADS') or os.cpu_count() or 1))
OFFICIAL = dict(double_z=False, z_channels=256, resolution=256, in_channels=3, out_ch=3, ch=128,
                ch_mult=[1, 1, 2, 2, 4], num_res_blocks=4, attn_resolutions=[16], dropout=0.0)
CONFIG_S = dict(double_z=False, z_channels=64, resolution=32, in_channels=3, out_ch=3, ch=64,
                ch_mult=[1, 2, 2], num_res_blocks=2, attn_resolutions=[8], dropout=0.0)


def median_ms(fn, runs):
    fn()  # warm-up
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1000)
    ts.sort()
    return ts[len(ts) // 2]


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main():
    what = sys.argv[1]
    runs = int(sys.argv[sys.argv.index('--runs') + 1]) if '--runs' in sys.argv else 5
    threads = torch.get_num_threads()
    if what == 'encode_decode':
        enc, dec = G.Encoder(**OFFICIAL), G.Decoder(**OFFICIAL)
        qc, pqc = torch.nn.Conv2d(256, 256, 1), torch.nn.Conv2d(256, 256, 1)
        E = torch.randn(16384, 256) * 0.05
        x = torch.rand(1, 3, 256, 256) * 2 - 1

        def work():
            with torch.no_grad():
                z = qc(enc(x))
                ind = torch.einsum('bdhw,nd->bnhw', z, E).argmax(1)
                dec(pqc(E[ind].permute(0, 3, 1, 2)))
        print(json.dumps({'bench': 'encode+decode', 'config': 'official 16384, 1x3x256x256', 'peer': 'pytorch',
                          'threads': threads, 'ms': round(median_ms(work, runs), 1)}))
    elif what == 'quantizer':
        T, N, D = 1024, 262144, 256
        z = (torch.randn(4, D, 16, 16) * 0.1).requires_grad_()
        q = G.Quantize(N, D)
        with torch.no_grad():
            q.embedding.weight.mul_(0.05)

        def work():
            zq, (ql, _, _, ent), _, _ = q(z)
            (zq.sum() + ql + 0.05 * ent).backward()
            z.grad = None
            q.embedding.weight.grad = None
        ms = median_ms(work, max(1, runs))
        print(json.dumps({'bench': 'quantizer fwd+bwd', 'shape': f'{T} tokens x {N} codes x {D}', 'peer': 'pytorch',
                          'threads': threads, 'ms': round(ms, 1), 'peak_rss_bytes': peak_rss_bytes()}))
    elif what == 'train_s':
        enc, dec = G.Encoder(**CONFIG_S), G.Decoder(**CONFIG_S)
        q = G.Quantize(1024, 64)
        qc, pqc = torch.nn.Conv2d(64, 64, 1), torch.nn.Conv2d(64, 64, 1)
        params = [p for m in (enc, dec, q, qc, pqc) for p in m.parameters()]
        opt = torch.optim.Adam(params, lr=1e-4, betas=(0.5, 0.9))
        x = torch.rand(16, 3, 32, 32) * 2 - 1

        def step():
            zq, (ql, se, ae, el), _, _ = q(qc(enc(x)))
            xrec = dec(pqc(zq))
            loss = torch.mean(torch.abs(x - xrec)) + ql + 0.05 * el
            opt.zero_grad()
            loss.backward()
            opt.step()
        ms = median_ms(step, runs)
        print(json.dumps({'bench': 'train step', 'config': 'S (ch 64, [1,2,2], 2 blocks, attn 8, 32px, 1024 codes), batch 16',
                          'peer': 'pytorch', 'threads': threads, 'ms': round(ms, 1), 'images_per_s': round(16000 / ms, 2)}))
    else:
        raise SystemExit(f'unknown benchmark {what}')


if __name__ == '__main__':
    main()
