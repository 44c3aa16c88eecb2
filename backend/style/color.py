"""The one linear <-> sRGB conversion in torch (IEC 61966-2-1, the curve Blender's
"sRGB" colour space and CLIP's training images use). The numpy twins for the wire
side are :func:`shared.avatar.srgb_to_linear` / :func:`shared.avatar.linear_to_srgb`.
"""

from __future__ import annotations

import numpy as np
import torch


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """Linear colour in [0,1] (any shape) -> sRGB in [0,1]; clamps first, differentiable
    (the power's input is kept off 0 so its gradient stays finite)."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp_min(1e-6) ** (1 / 2.4) - 0.055)


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """sRGB in [0,1] (any shape) -> linear colour in [0,1]."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def to_srgb_uint8(x: torch.Tensor) -> np.ndarray:
    """Linear ``[...,3]`` tensor in [0,1] -> sRGB uint8 numpy array (rounded)."""
    return (linear_to_srgb(x.detach()) * 255 + 0.5).to(torch.uint8).cpu().numpy()
