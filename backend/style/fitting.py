"""Avatar fitting: train the whole style network to reproduce the avatar (its
own texture, zero offsets) before any style. Stylization then adapts only the
bias mappers from this point (or from the meta-learned one)."""

from __future__ import annotations

import logging
import time

import torch

from shared.errors import Cancelled

from .context import AvatarContext
from .net import NetConfig, StyleNet

log = logging.getLogger(__name__)


def fit_loss(net: StyleNet, ctx: AvatarContext) -> torch.Tensor:
    """Mean squared albedo logit change (covered texels weighted 10x) plus mean
    squared raw offset map: 0 exactly when the output is the original avatar."""
    delta, off = net(ctx.identity)
    w = 0.1 + ctx.mask.permute(0, 3, 1, 2)
    return (delta.pow(2) * w).mean() + off.pow(2).mean()


def fit(ctx: AvatarContext, cfg: NetConfig | None = None, steps: int = 300, lr: float = 2e-3, seed: int = 0,
        progress=None, is_cancelled=None) -> tuple[StyleNet, list[float]]:
    """Returns the fitted network (on ``ctx.device``) and the loss per step.

    ``progress(stage, step, total, losses)`` is called every 10 steps; a True
    ``is_cancelled()`` raises :class:`Cancelled` within one step.
    """
    cfg = cfg or ctx.net_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = StyleNet(cfg).to(ctx.device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1), eta_min=lr * 0.05)
    hist = []
    t0 = time.time()
    for i in range(steps):
        if is_cancelled and is_cancelled():
            raise Cancelled("Fitting was cancelled.")
        loss = fit_loss(net, ctx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        hist.append(float(loss.detach()))
        if progress and (i % 10 == 0 or i == steps - 1):
            progress("fit", i + 1, steps, {"fit": hist[-1]})
    log.info("fitted style network in %d steps, %.1f s, loss %.2e", steps, time.time() - t0,
             hist[-1] if hist else float("nan"))
    return net, hist
