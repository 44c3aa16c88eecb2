"""The style network's starting point on an avatar, which reproduces it by construction.

There is no fitting stage any more: :meth:`backend.style.context.AvatarContext.decode`
subtracts the network's output at its starting mappers, so a freshly initialized
(seeded) network gives exactly the avatar's own texture and zero offsets, at the cost
of one forward pass. Stylization adapts only the bias mappers from this point (or from
the meta-learned one). :func:`fit` keeps its name and signature for callers.
"""

from __future__ import annotations

import logging
import time

import torch

from shared.errors import Cancelled

from .config import NetConfig
from .context import AvatarContext
from .net import StyleNet

log = logging.getLogger(__name__)


def fit_loss(net: StyleNet, ctx: AvatarContext) -> torch.Tensor:
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


def fit(ctx: AvatarContext, cfg: NetConfig | None = None, steps: int | None = None, lr: float | None = None,
        seed: int = 0, progress=None, is_cancelled=None) -> tuple[StyleNet, list[float]]:
    """The network at its starting point and ``[fit_loss]`` there (exactly 0): nothing is
    trained, so ``steps`` and ``lr`` are unused (kept for callers). ``progress(stage,
    step, total, losses)`` is called once; a True ``is_cancelled()`` raises :class:`Cancelled`."""
    if is_cancelled and is_cancelled():
        raise Cancelled("Preparing the avatar was cancelled.")
    net = start_network(ctx, cfg, seed)
    with torch.no_grad():
        hist = [float(fit_loss(net, ctx))]
    if progress:
        progress("fit", 1, 1, {"fit": hist[-1]})
    return net, hist
