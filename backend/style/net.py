"""The style network: UV-space identity encoder, bias mappers, decoder.

Per texture set (the batch dimension ``S``), at UV working resolution ``R``::

    identity maps [S,10,R,R] = base albedo (3, linear) + rest position (3, centred,
                               / head size) + normal (3) + coverage mask (1)
    encoder      -> features f_l at R/2^l, l = 0..L-1
    bias mapper_l(f_l) -> spatial bias map b_l [S,W,R/2^l,R/2^l]
    decoder: x = learned constant at the coarsest level; per level, from coarse
             to fine: x = act(conv(up(x)) + b_l)
    heads: albedo logit change [S,3,R,R]; offset maps [S,3(K+1),R,R] (neutral + K
           blendshapes)

The identity reaches the decoder only through the bias maps, so adapting the
bias mappers alone (as the method does) can restyle everything the decoder
outputs. ``StyleNet.mapper_parameters()`` is that subset.

Bounds: neutral offsets are ``tanh * max_offset_frac * head size``; the offset of
blendshape ``k`` at a vertex is at most ``bs_offset_frac * |delta_k|`` there, so
a stylized expression can never shrink below (1 - bs_offset_frac) of the original
(expression dampening bounded by construction).
"""

from __future__ import annotations

from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F

IN_CHANNELS = 10


@dataclass
class NetConfig:
    resolution: int = 128      # UV working resolution R (pixels)
    width: int = 32            # channels W of every layer
    levels: int = 3            # encoder/decoder levels L (R must divide by 2^(L-1))
    num_blendshapes: int = 0   # K
    max_offset_frac: float = 0.03  # neutral offset bound, fraction of head size (bbox diagonal)
    bs_offset_frac: float = 0.5    # blendshape offset bound, fraction of the blendshape's own delta
    padding: str = "replicate"     # conv padding; zeros would make UV-square borders (often seams) special

    def to_dict(self) -> dict:
        return asdict(self)


class StyleNet(nn.Module):
    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        W, L = cfg.width, cfg.levels
        pm = cfg.padding

        def conv(cin, cout, stride=1):
            return nn.Conv2d(cin, cout, 3, stride, 1, padding_mode=pm)

        if cfg.resolution % (2 ** (L - 1)):
            raise ValueError(f"UV resolution {cfg.resolution} must divide by {2 ** (L - 1)}")
        self.enc = nn.ModuleList()
        for l in range(L):
            cin = IN_CHANNELS if l == 0 else W
            stride = 1 if l == 0 else 2
            self.enc.append(nn.Sequential(conv(cin, W, stride), nn.SiLU(), conv(W, W), nn.SiLU()))
        self.mappers = nn.ModuleList([conv(W, W) for _ in range(L)])
        low = cfg.resolution // 2 ** (L - 1)
        self.const = nn.Parameter(torch.randn(1, W, low, low) * 0.1)
        self.dec = nn.ModuleList([conv(W, W) for _ in range(L)])
        self.head_albedo = conv(W, 3)
        self.head_offset = conv(W, 3 * (cfg.num_blendshapes + 1))

    def mapper_parameters(self):
        """The adapted subset: the bias mappers' weights and biases."""
        return list(self.mappers.parameters())

    def encode(self, identity: torch.Tensor) -> list[torch.Tensor]:
        """``identity`` ``[S,10,R,R]`` -> features per level (fine to coarse)."""
        feats, x = [], identity
        for blk in self.enc:
            x = blk(x)
            feats.append(x)
        return feats

    def forward(self, identity: torch.Tensor, feats: list[torch.Tensor] | None = None):
        """-> (albedo logit change ``[S,3,R,R]``, raw offset maps ``[S,3(K+1),R,R]``).
        Pass precomputed ``feats`` (the encoder is frozen during adaptation)."""
        feats = self.encode(identity) if feats is None else feats
        S = identity.shape[0]
        L = self.cfg.levels
        x = self.const.expand(S, -1, -1, -1)
        for i in range(L):
            l = L - 1 - i  # coarse -> fine
            if i > 0:
                x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = F.silu(self.dec[i](x) + self.mappers[l](feats[l]))
        return self.head_albedo(x), self.head_offset(x)


def identity_input(maps: dict) -> torch.Tensor:
    """Stack :func:`backend.style.uvmaps.avatar_uv_maps` output into ``[S,10,R,R]``."""
    x = torch.cat([maps["albedo"], maps["position"], maps["normal"], maps["mask"]], -1)
    return x.permute(0, 3, 1, 2).contiguous()


def logit(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    x = x.clamp(eps, 1 - eps)
    return torch.log(x) - torch.log1p(-x)


def apply_albedo(base_linear: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Stylized albedo = sigmoid(logit(base) + delta), any resolution.
    ``base_linear`` ``[S,H,W,3]``; ``delta`` ``[S,3,R,R]`` (resized to H,W)."""
    H, W = base_linear.shape[1:3]
    if delta.shape[-2:] != (H, W):
        delta = F.interpolate(delta, size=(H, W), mode="bilinear", align_corners=False)
    return torch.sigmoid(logit(base_linear) + delta.permute(0, 2, 3, 1))
