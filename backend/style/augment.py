"""Augmentations that keep CLIP from being fooled by adversarial pixels: random
backgrounds behind the alpha, random resized crops with a perspective warp.

Images are ``[B,H,W,C]`` float tensors, row 0 top. Randomness comes only from the
``torch.Generator`` passed in, so a run is deterministic for a seed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_backgrounds(n: int, h: int, w: int, gen: torch.Generator, device="cpu") -> torch.Tensor:
    """``[n,h,w,3]`` linear backgrounds, each one of: uniform noise, a checkerboard
    of two random colours with a random cell size, a flat random colour."""
    out = torch.empty(n, h, w, 3, device=device)
    kinds = torch.randint(0, 3, (n,), generator=gen)
    for b in range(n):
        k = int(kinds[b])
        if k == 0:
            out[b] = torch.rand(h, w, 3, generator=gen).to(device)
        elif k == 1:
            c = torch.rand(2, 3, generator=gen).to(device)
            cell = int(torch.randint(max(2, h // 16), max(3, h // 4), (1,), generator=gen))
            yy = torch.arange(h, device=device)[:, None] // cell
            xx = torch.arange(w, device=device)[None, :] // cell
            sel = ((yy + xx) % 2).unsqueeze(-1).float()
            out[b] = c[0] * sel + c[1] * (1 - sel)
        else:
            out[b] = torch.rand(3, generator=gen).to(device).expand(h, w, 3)
    return out


def composite(color: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """``color`` rendered over black (premultiplied by its ``alpha``) over ``background``:
    ``color + background*(1-alpha)``, all ``[B,H,W,*]``. For antialiased renders (fractional
    alpha at outlines) this is the exact over; for hard ones (alpha 0 or 1, black where 0)
    it equals the straight ``color*alpha + background*(1-alpha)``."""
    return color + background * (1.0 - alpha)


def crop_params(n: int, gen: torch.Generator, scale=(0.6, 1.0), max_shift=0.15,
                perspective=0.15) -> torch.Tensor:
    """``[n,3,3]`` homographies mapping output normalized coords ([-1,1]) to input
    coords: a random zoom (crop side = ``scale`` of the image), shift and a
    perspective tilt. Reused for the stylized and the original render so both see
    the same crop."""
    s = scale[0] + (scale[1] - scale[0]) * torch.rand(n, generator=gen)
    t = (torch.rand(n, 2, generator=gen) * 2 - 1) * max_shift
    p = (torch.rand(n, 2, generator=gen) * 2 - 1) * perspective
    H = torch.zeros(n, 3, 3)
    H[:, 0, 0] = s
    H[:, 1, 1] = s
    H[:, 0, 2] = t[:, 0]
    H[:, 1, 2] = t[:, 1]
    H[:, 2, 0] = p[:, 0]
    H[:, 2, 1] = p[:, 1]
    H[:, 2, 2] = 1.0
    return H


def warp(images: torch.Tensor, H: torch.Tensor, out_size: int) -> torch.Tensor:
    """Resample ``images`` ``[n,h,w,C]`` through homographies ``H`` ``[n,3,3]`` into
    ``[n,out,out,C]`` (bilinear, border padding). Differentiable in ``images``."""
    n = images.shape[0]
    dev = images.device
    lin = torch.linspace(-1, 1, out_size, device=dev)
    gy, gx = torch.meshgrid(lin, lin, indexing="ij")
    pts = torch.stack([gx, gy, torch.ones_like(gx)], -1).reshape(1, -1, 3)  # [1,P,3]
    src = pts @ H.to(dev).transpose(1, 2)  # [n,P,3]
    src = src[..., :2] / src[..., 2:].clamp_min(1e-3)
    grid = src.reshape(n, out_size, out_size, 2)
    x = images.permute(0, 3, 1, 2)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return y.permute(0, 2, 3, 1)
