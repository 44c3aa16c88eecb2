"""Per-avatar preparation: Reptile meta-training of the bias-mapper initialization
over a set of styles, from the network's starting point (which reproduces the avatar
by construction, see :mod:`backend.style.start`; nothing is fitted).

Checkpoints (``torch.save`` dicts, weights only) live in the style cache folder
(:func:`backend.cache.cache_dir` ``("style", root)``), named by the config's own key
(:meth:`backend.style.config.StyleConfig.meta_key`):
    meta-<avatar hash 16>-<guidance slug>-<meta key>.pt starting network + meta mappers +
                                                       Reptile iteration (resumable)
(``fit-*.pt`` files of earlier versions are no longer written or read; checkpoints
whose ``net_version`` is not :data:`backend.style.net.NET_VERSION` are ignored.)
Reptile (Nichol et al. 2018): theta <- theta + eps * (theta'_style - theta), where
theta'_style is theta after a few adaptation steps on one sampled style.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from backend import checkpoints
from backend.cache import cache_dir as cache_folder
from shared.errors import Cancelled, InvalidParams

from .adapt import Target, adapt, load_mapper_state, make_target, mapper_state
from .config import StyleConfig
from .context import AvatarContext
from .start import start_network
from .net import NET_VERSION, StyleNet

log = logging.getLogger(__name__)

DATA = Path(__file__).with_name("data")


def style_cache(root: str | os.PathLike | None = None) -> Path:
    """The style cache folder (``backend.cache.cache_dir("style", root)``)."""
    return cache_folder("style", root)


def load_styles(path: str | os.PathLike | None = None, heldout: bool = False) -> list[str]:
    """Style prompts, one per line (``#`` comments). Default: the shipped
    meta-training list, or with ``heldout`` the benchmark's held-out list."""
    p = Path(path) if path else DATA / ("styles_heldout.txt" if heldout else "styles.txt")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise InvalidParams(f"Cannot read the style list '{p}': {e.strerror}.") from e
    styles = [s.strip() for s in lines if s.strip() and not s.strip().startswith("#")]
    if not styles:
        raise InvalidParams(f"The style list '{p}' has no prompts.")
    return styles


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in s)[:60]


def bind(config: StyleConfig, ctx: AvatarContext) -> StyleConfig:
    """``config`` with its network at ``ctx``'s UV resolution and blendshape count (what
    the checkpoints of this avatar are keyed by)."""
    return replace(config, network=ctx.net_config(config.network))


def meta_path(cache_dir, avatar_hash: str, guidance_name: str, config: StyleConfig) -> Path:
    """The meta-training checkpoint of an avatar, guidance model and ``config``."""
    return Path(cache_dir) / f"meta-{avatar_hash[:16]}-{_slug(guidance_name)}-{config.meta_key()}.pt"


def save_checkpoint(obj: dict, path: Path) -> None:
    """Save atomically with a checksum beside it (:func:`backend.checkpoints.save_atomic`):
    never half-written; raises CacheUnavailable when the folder cannot be written."""
    checkpoints.save_atomic(path, obj)


def load_checkpoint(path: Path, device) -> dict | None:
    """A checkpoint :func:`save_checkpoint` wrote, or None when missing or damaged (a
    damaged one is moved aside and logged, so it is rebuilt)."""
    return checkpoints.load_verified(path, map_location=device)


def starting_network(ctx: AvatarContext, config: StyleConfig, seed: int = 0) -> StyleNet:
    """The network at its starting point for this avatar and ``config``'s network: it
    reproduces the avatar by construction (one forward pass, nothing trained or cached)."""
    return start_network(ctx, bind(config, ctx).network, seed)


def load_meta_init(cache_dir, ctx: AvatarContext, guidance_name: str, config: StyleConfig):
    """(starting network's state_dict, meta mapper tensors, info) of a prepared avatar, or None."""
    if not cache_dir:
        return None
    p = meta_path(cache_dir, ctx.hash, guidance_name, bind(config, ctx))
    ck = load_checkpoint(p, ctx.device)
    if ck is None:
        return None
    if ck.get("avatar_hash") != ctx.hash or ck.get("guidance") != guidance_name or ck.get("iteration", 0) <= 0:
        return None
    if ck.get("net_version") != NET_VERSION:
        return None  # a network of an earlier version (fitted, other heads): prepare again
    return ck["start"], ck["meta_mappers"], {"iteration": ck["iteration"], "iterations": ck.get("iterations"),
                                              "path": str(p)}


def prepare(ctx: AvatarContext, guidance, config: StyleConfig, cameras, frame_w: torch.Tensor,
            styles: list[str] | None = None, style_images: list | None = None,
            cache_dir=None, progress=None, is_cancelled=None) -> dict:
    """Reptile over ``styles`` (text prompts) and ``style_images`` ([H,W,3] uint8) from
    the network's starting point, as ``config`` says (its network, adaptation and meta
    sections). Resumes from the checkpoint if one exists
    for this avatar, guidance and config. Returns a summary dict.
    ``progress(stage, step, total, losses, preview)``; cancel raises :class:`Cancelled`
    after saving the progress made so far."""
    cache_dir = Path(cache_dir) if cache_dir else style_cache()
    config = bind(config, ctx)
    net_cfg, adapt_cfg, meta_cfg = config.network, config.adaptation, config.meta
    styles = list(styles) if styles is not None else load_styles()
    targets: list[Target] = [make_target(guidance, [{"kind": "text", "text": s}]) for s in styles]
    for i, img in enumerate(style_images or []):
        targets.append(make_target(guidance, [{"kind": "image", "image_index": i}], {i: img}))
    if not targets:
        raise InvalidParams("Meta-training needs at least one style prompt or image.")
    t0 = time.time()
    path = meta_path(cache_dir, ctx.hash, guidance.name, config)
    start, theta, fitted_state, hist = 0, None, None, []
    ck = load_checkpoint(path, ctx.device)
    if ck is not None:
        if (ck.get("avatar_hash") == ctx.hash and ck.get("guidance") == guidance.name
                and ck.get("net_version") == NET_VERSION):
            start, theta, fitted_state = int(ck["iteration"]), ck["meta_mappers"], ck["start"]
            hist = list(ck.get("history", []))
            log.info("resuming meta-training at iteration %d of %d", start, meta_cfg.iterations)
    if fitted_state is None:  # the starting point: one forward pass, no stage of its own to report
        net = starting_network(ctx, config, seed=meta_cfg.seed)
        fitted_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    else:
        net = StyleNet(net_cfg).to(ctx.device)
        net.load_state_dict(fitted_state)
    theta = theta if theta is not None else mapper_state(net)
    gen = torch.Generator().manual_seed(meta_cfg.seed)
    order = torch.randint(len(targets), (meta_cfg.iterations,), generator=gen).tolist()

    def save(it):
        save_checkpoint({"avatar_hash": ctx.hash, "guidance": guidance.name, "config": net_cfg.to_dict(),
                         "meta_config": asdict(meta_cfg), "iteration": it, "iterations": meta_cfg.iterations,
                         "net_version": NET_VERSION, "start": fitted_state, "meta_mappers": theta, "history": hist,
                         "styles": len(targets)}, path)

    it = start
    try:
        for it in range(start, meta_cfg.iterations):
            if is_cancelled and is_cancelled():
                raise Cancelled("Preparation was cancelled; progress so far is saved and resumes next time.")
            eps = meta_cfg.outer_lr * (1.0 - 0.9 * it / max(meta_cfg.iterations - 1, 1))
            load_mapper_state(net, theta)
            acfg = replace(adapt_cfg, steps=meta_cfg.inner_steps, seed=meta_cfg.seed * 100003 + it,
                           identity=meta_cfg.identity, preview_every=0, time_budget_s=0.0)
            r = adapt(ctx, net, guidance, targets[order[it]], cameras, frame_w, acfg)
            new = mapper_state(net)
            theta = [t + eps * (n - t) for t, n in zip(theta, new)]
            hist.append(r.history[-1]["style"])
            if progress:
                progress("meta", it + 1, meta_cfg.iterations, {"style": hist[-1], "eps": eps}, None)
            if (it + 1) % meta_cfg.save_every == 0:
                save(it + 1)
        it = meta_cfg.iterations
    except Cancelled:
        save(it)
        raise
    save(it)
    return {"checkpoint": str(path), "iterations": meta_cfg.iterations, "resumed_from": start,
            "styles": len(targets), "seconds": time.time() - t0, "guidance": guidance.name,
            "guidance_is_test_model": bool(guidance.is_test_model), "avatar_hash": ctx.hash,
            "final_inner_style_loss": hist[-1] if hist else None}


__all__ = ["bind", "load_checkpoint", "load_meta_init", "load_styles", "meta_path", "prepare", "save_checkpoint",
           "starting_network", "style_cache"]
