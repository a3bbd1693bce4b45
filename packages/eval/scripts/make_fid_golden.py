#!/usr/bin/env python3
# Golden statistics of pytorch-fid's own pipeline (fid_score.calculate_activation_statistics:
# PIL -> ToTensor -> InceptionV3 with resize and 2x-1 -> adaptive average pool -> np.mean /
# np.cov) on a small committed image folder, with the synthetic weights and the calibrated
# BatchNorm statistics of inception_golden.npz; plus the ADM mode on the same images as a
# uint8 NHWC .npz. For test/fid-cli.test.ts (the built `ibq fid` in a child process).
#
#   /usr/bin/python3 packages/eval/scripts/make_fid_golden.py /tmp/pfid packages/eval/test/fixtures
#
# (/tmp/pfid: pytorch-fid's src/pytorch_fid/{__init__,inception,fid_score}.py from its snapshot,
# as in make_inception_golden.py.) Writes fid_images/*.png, fid_images.npz (arr_0) and fid_golden.npz.
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from inception_synthetic import synthetic_image, synthetic_state  # noqa: E402
from make_inception_golden import tf1_resize  # noqa: E402


def main(pfid_dir, fixtures):
    sys.path.insert(0, pfid_dir)
    import pytorch_fid.fid_score as fs
    import pytorch_fid.inception as pi

    golden = np.load(os.path.join(fixtures, "inception_golden.npz"))
    base = pi.fid_inception_v3.__globals__["_inception_v3"](num_classes=1008, aux_logits=False, weights=None)
    for name, cls, arg in [("Mixed_5b", pi.FIDInceptionA, (192, 32)), ("Mixed_5c", pi.FIDInceptionA, (256, 64)),
                           ("Mixed_5d", pi.FIDInceptionA, (288, 64)), ("Mixed_6b", pi.FIDInceptionC, (768, 128)),
                           ("Mixed_6c", pi.FIDInceptionC, (768, 160)), ("Mixed_6d", pi.FIDInceptionC, (768, 160)),
                           ("Mixed_6e", pi.FIDInceptionC, (768, 192)), ("Mixed_7b", pi.FIDInceptionE_1, (1280,)),
                           ("Mixed_7c", pi.FIDInceptionE_2, (2048,))]:
        setattr(base, name, cls(*arg))
    state = synthetic_state(base.state_dict())
    for k in list(state):
        if f"bn.{k}" in golden:
            state[k] = torch.from_numpy(golden[f"bn.{k}"])
    pi.load_state_dict_from_url = lambda *a, **k: state

    # The image folder: 6 synthetic 40x32 RGB PNGs (smooth: a 5x4 grid of values upsampled).
    folder = os.path.join(fixtures, "fid_images")
    os.makedirs(folder, exist_ok=True)
    imgs = []
    for i in range(6):
        coarse = synthetic_image(f"fid.{i}", (1, 3, 5, 4))
        up = torch.nn.functional.interpolate(torch.from_numpy(coarse), size=(40, 32), mode="bilinear", align_corners=False)
        u8 = np.floor(up[0].permute(1, 2, 0).numpy() * 255.999).astype(np.uint8)
        Image.fromarray(u8).save(os.path.join(folder, f"img{i}.png"))
        imgs.append(u8)
    np.savez(os.path.join(fixtures, "fid_images.npz"), np.stack(imgs))
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder))

    out = {}
    for dims in (64, 2048):
        model = pi.InceptionV3([pi.InceptionV3.BLOCK_INDEX_BY_DIM[dims]]).eval()
        mu, sigma = fs.calculate_activation_statistics(files, model, batch_size=4, dims=dims, device="cpu", num_workers=0)
        out[f"pytorch.mu{dims}"] = mu
        out[f"pytorch.sigma{dims}"] = sigma if dims == 64 else sigma[:16, :16]
    # ADM mode: uint8 -> TF1 resize -> (x-128)/128 -> the same network without its own resize / scaling.
    model = pi.InceptionV3([0, 3], resize_input=False, normalize_input=False).eval()
    x = (tf1_resize(np.stack(imgs).astype(np.float32), 299, 299) - 128) / 128
    with torch.no_grad():
        b0, b3 = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    f64 = b0.mean(dim=(2, 3)).numpy().astype(np.float64)
    out["adm.mu64"] = f64.mean(0)
    out["adm.sigma64"] = np.cov(f64, rowvar=False)
    out["adm.mu2048"] = b3[:, :, 0, 0].numpy().astype(np.float64).mean(0)
    np.savez(os.path.join(fixtures, "fid_golden.npz"), **out)
    print({k: v.shape for k, v in out.items()})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
