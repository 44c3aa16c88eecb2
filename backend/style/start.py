"""The style network's starting point on an avatar, which reproduces it by construction.

Nothing is fitted: :meth:`backend.style.context.AvatarContext.decode` subtracts the
network's output at its starting mappers, so a freshly initialized (seeded) network
gives exactly the avatar's own texture and zero offsets, at the cost of one forward
pass. Stylization adapts only the bias mappers from this point (or from the
meta-learned one).
"""

from __future__ import annotations

import logging
import time

import torch

from .config import NetConfig
from .context import AvatarContext
from .net import StyleNet

log = logging.getLogger(__name__)


def reproduction_error(net: StyleNet, ctx: AvatarContext) -> torch.Tensor:
    """Mean squared albedo logit change (covered texels weighted 10x) plus mean squared
    offsets in units of their bounds: 0 exactly when the output is the original avatar."""
    dec = ctx.decode(net)
    w = 0.1 + ctx.mask.permute(0, 3, 1, 2)
    loss = (dec.delta.pow(2) * w).mean() + (dec.neutral / (net.cfg.max_offset_frac * ctx.head_size)).pow(2).mean()
    if ctx.K:
        loss = loss + (dec.bs_offsets / (net.cfg.bs_offset_frac * ctx.bs_norm).clamp_min(1e-12)).pow(2).mean()
    return loss


def start_network(ctx: AvatarContext, cfg: NetConfig | None = None, seed: int = 0) -> StyleNet:
    """A seeded network for ``ctx`` at its starting point (on ``ctx.device``), with its
    reference computed (the one forward pass a new avatar costs)."""
    t0 = time.time()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = StyleNet(cfg or ctx.net_config()).to(ctx.device)
    ctx.reference(net)
    log.info("style network starting point in %.2f s", time.time() - t0)
    return net
