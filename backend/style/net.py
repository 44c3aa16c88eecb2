"""The style network: UV-space identity encoder, bias mappers, decoder.

Per texture set (the batch dimension ``S``), at UV working resolution ``R``::

    identity maps [S,10,R,R] = base albedo (3, linear) + rest position (3, centred,
                               / head size) + normal (3) + coverage mask (1)
    encoder      -> features f_l at R/2^l, l = 0..L-1
    bias mapper_l(f_l) -> spatial bias map b_l [S,W,R/2^l,R/2^l]
    decoder: x = learned constant at the coarsest level; per level, from coarse
             to fine: x = act(conv(up(x)) + b_l)
    heads (3x3 convs): albedo logit change [S,3,R,R] and neutral offset map [S,3,R,R]
           on every texture set; blendshape offsets [Vm,3K] evaluated only at the
           vertices some blendshape moves (``head_bs`` applied to the decoder features
           sampled there, see :class:`backend.style.uvmaps.BlendshapeSampler`), so their
           cost follows the moving geometry, not texture sets x blendshapes

The identity reaches the decoder only through the bias maps, so adapting the
bias mappers alone (as the method does) can restyle everything the decoder
outputs. ``StyleNet.mapper_parameters()`` is that subset.

Starting point by construction (no fitting): the mappers' initial weights are kept
as frozen buffers, and :meth:`backend.style.context.AvatarContext.decode` subtracts
the network's output at those weights (computed once per avatar, detached) from
every output. At the start every change is exactly 0 (the avatar itself), while the
gradients reaching the mappers are those of a randomly initialized network.

Bounds: neutral offsets are ``tanh * max_offset_frac * head size``; the offset of
blendshape ``k`` at a vertex is at most ``bs_offset_frac * |delta_k|`` there, so
a stylized expression can never shrink below (1 - bs_offset_frac) of the original
(expression dampening bounded by construction).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import NetConfig

IN_CHANNELS = 10
# Checkpoints store this; others (fitted networks of earlier versions) are not loaded.
NET_VERSION = 3


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
        for lvl in range(L):
            cin = IN_CHANNELS if lvl == 0 else W
            stride = 1 if lvl == 0 else 2
            self.enc.append(nn.Sequential(conv(cin, W, stride), nn.SiLU(), conv(W, W), nn.SiLU()))
        self.mappers = nn.ModuleList([conv(W, W) for _ in range(L)])
        low = cfg.resolution // 2 ** (L - 1)
        self.const = nn.Parameter(torch.randn(1, W, low, low) * 0.1)
        self.dec = nn.ModuleList([conv(W, W) for _ in range(L)])
        self.head_albedo = conv(W, 3)
        self.head_neutral = conv(W, 3)
        self.head_bs = conv(W, 3 * cfg.num_blendshapes) if cfg.num_blendshapes else None
        for lvl, m in enumerate(self.mappers):  # the starting point's mappers (frozen, saved)
            self.register_buffer(f"mapper0_weight_{lvl}", m.weight.detach().clone())
            self.register_buffer(f"mapper0_bias_{lvl}", m.bias.detach().clone())

    def mapper_parameters(self):
        """The adapted subset: the bias mappers' weights and biases."""
        return list(self.mappers.parameters())

    def frozen_key(self) -> tuple:
        """Identifies the current values of everything but the mappers (storage and
        in-place version of each tensor): what the starting-point reference depends on."""
        mapper_ids = {id(p) for p in self.mapper_parameters()}
        ts = [p for p in self.parameters() if id(p) not in mapper_ids] + list(self.buffers())
        return tuple((t.data_ptr(), t._version, t.device.type) for t in ts)

    def encode(self, identity: torch.Tensor) -> list[torch.Tensor]:
        """``identity`` ``[S,10,R,R]`` -> features per level (fine to coarse)."""
        feats, x = [], identity
        for blk in self.enc:
            x = blk(x)
            feats.append(x)
        return feats

    def _bias(self, lvl: int, f: torch.Tensor, start: bool) -> torch.Tensor:
        m = self.mappers[lvl]
        if not start:
            return m(f)
        return m._conv_forward(f, getattr(self, f"mapper0_weight_{lvl}"), getattr(self, f"mapper0_bias_{lvl}"))

    def forward(self, identity: torch.Tensor, feats: list[torch.Tensor] | None = None, start: bool = False):
        """-> (albedo logit change ``[S,3,R,R]``, raw neutral offset map ``[S,3,R,R]``,
        decoder features ``[S,W,R,R]`` (for :attr:`head_bs`)), raw: before the reference
        is subtracted. ``start``: with the mappers' starting weights (the reference).
        Pass precomputed ``feats`` (the encoder is frozen during adaptation)."""
        feats = self.encode(identity) if feats is None else feats
        S = identity.shape[0]
        L = self.cfg.levels
        x = self.const.expand(S, -1, -1, -1)
        for i in range(L):
            lvl = L - 1 - i  # coarse -> fine
            if i > 0:
                x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = F.silu(self.dec[i](x) + self._bias(lvl, feats[lvl], start))
        return self.head_albedo(x), self.head_neutral(x), x


def identity_input(maps: dict) -> torch.Tensor:
    """Stack :func:`backend.style.uvmaps.avatar_uv_maps` output into ``[S,10,R,R]``."""
    x = torch.cat([maps["albedo"], maps["position"], maps["normal"], maps["mask"]], -1)
    return x.permute(0, 3, 1, 2).contiguous()


def logit(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    x = x.clamp(eps, 1 - eps)
    return torch.log(x) - torch.log1p(-x)


def apply_albedo(base_linear: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Stylized albedo = base + sigmoid(logit(base) + delta) - sigmoid(logit(base)), clamped
    to [0,1], any resolution: sigmoid(logit(base) + delta) up to the logit's clamp, and
    exactly ``base`` where ``delta`` is 0 (pure black/white texels included).
    ``base_linear`` ``[S,H,W,3]``; ``delta`` ``[S,3,R,R]`` (resized to H,W)."""
    H, W = base_linear.shape[1:3]
    if delta.shape[-2:] != (H, W):
        delta = F.interpolate(delta, size=(H, W), mode="bilinear", align_corners=False)
    lg = logit(base_linear)
    return (base_linear + (torch.sigmoid(lg + delta.permute(0, 2, 3, 1)) - torch.sigmoid(lg))).clamp(0.0, 1.0)
