"""Per-avatar preparation: avatar fitting, then Reptile meta-training of the
bias-mapper initialization over a set of styles.

Checkpoints (``torch.save`` dicts, weights only) live in a cache folder:
    fit-<avatar hash 16>-<net config 8>.pt            fitted network
    meta-<avatar hash 16>-<guidance slug>-<cfg 8>.pt  fitted network + meta mappers +
                                                      Reptile iteration (resumable)
Reptile (Nichol et al. 2018): theta <- theta + eps * (theta'_style - theta), where
theta'_style is theta after a few adaptation steps on one sampled style.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, asdict, replace
from pathlib import Path

import torch

from shared.errors import Cancelled, InvalidParams

from .adapt import AdaptConfig, Target, adapt, load_mapper_state, make_target, mapper_state
from .context import AvatarContext
from .fitting import fit
from .net import NetConfig, StyleNet

log = logging.getLogger(__name__)

DATA = Path(__file__).with_name("data")


def default_cache_dir() -> Path:
    return Path(os.environ.get("METAMORPH_CACHE", Path.home() / ".cache" / "metamorph")) / "style"


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


def _cfg_key(cfg: NetConfig, extra: dict | None = None) -> str:
    return hashlib.sha256(json.dumps([cfg.to_dict(), extra or {}], sort_keys=True).encode()).hexdigest()[:8]


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in s)[:60]


def fit_path(cache_dir, avatar_hash: str, cfg: NetConfig) -> Path:
    return Path(cache_dir) / f"fit-{avatar_hash[:16]}-{_cfg_key(cfg)}.pt"


def meta_path(cache_dir, avatar_hash: str, guidance_name: str, cfg: NetConfig) -> Path:
    return Path(cache_dir) / f"meta-{avatar_hash[:16]}-{_slug(guidance_name)}-{_cfg_key(cfg)}.pt"


def _atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_or_fit(ctx: AvatarContext, cfg: NetConfig, fit_steps: int, cache_dir=None, progress=None,
                is_cancelled=None, seed: int = 0) -> StyleNet:
    """The fitted network for this avatar and config, from the cache or trained
    now (and cached). ``cache_dir=None`` disables the cache."""
    p = fit_path(cache_dir, ctx.hash, cfg) if cache_dir else None
    if p and p.is_file():
        ck = torch.load(p, map_location=ctx.device, weights_only=True)
        if ck.get("avatar_hash") == ctx.hash and ck.get("fit_steps") == fit_steps:
            net = StyleNet(cfg).to(ctx.device)
            net.load_state_dict(ck["state"])
            return net
    net, hist = fit(ctx, cfg, steps=fit_steps, seed=seed, progress=progress, is_cancelled=is_cancelled)
    if p:
        _atomic_save({"avatar_hash": ctx.hash, "fit_steps": fit_steps, "config": cfg.to_dict(),
                      "state": net.state_dict(), "loss": hist[-1] if hist else None}, p)
    return net


def load_meta_init(cache_dir, ctx: AvatarContext, guidance_name: str, cfg: NetConfig):
    """(fitted state_dict, meta mapper tensors, info) of a prepared avatar, or None."""
    if not cache_dir:
        return None
    p = meta_path(cache_dir, ctx.hash, guidance_name, cfg)
    if not p.is_file():
        return None
    ck = torch.load(p, map_location=ctx.device, weights_only=True)
    if ck.get("avatar_hash") != ctx.hash or ck.get("guidance") != guidance_name or ck.get("iteration", 0) <= 0:
        return None
    return ck["fitted"], ck["meta_mappers"], {"iteration": ck["iteration"], "iterations": ck.get("iterations"),
                                              "path": str(p)}


@dataclass
class MetaConfig:
    iterations: int = 200      # Reptile outer iterations
    inner_steps: int = 5       # adaptation steps per sampled style
    outer_lr: float = 0.5      # eps, annealed linearly to 0.1 * eps
    fit_steps: int = 300
    save_every: int = 10
    seed: int = 0
    identity: float = 0.5


def prepare(ctx: AvatarContext, guidance, net_cfg: NetConfig, adapt_cfg: AdaptConfig, meta_cfg: MetaConfig,
            cameras, frame_w: torch.Tensor, styles: list[str] | None = None, style_images: list | None = None,
            cache_dir=None, progress=None, is_cancelled=None, render_fn=None) -> dict:
    """Fit the avatar, then Reptile over ``styles`` (text prompts) and
    ``style_images`` ([H,W,3] uint8). Resumes from the checkpoint if one exists
    for this avatar, guidance and config. Returns a summary dict.
    ``progress(stage, step, total, losses, preview)``; cancel raises :class:`Cancelled`
    after saving the progress made so far."""
    cache_dir = Path(cache_dir or default_cache_dir())
    styles = list(styles) if styles is not None else load_styles()
    targets: list[Target] = [make_target(guidance, [{"kind": "text", "text": s}]) for s in styles]
    for i, img in enumerate(style_images or []):
        targets.append(make_target(guidance, [{"kind": "image", "image_index": i}], {i: img}))
    if not targets:
        raise InvalidParams("Meta-training needs at least one style prompt or image.")
    t0 = time.time()
    path = meta_path(cache_dir, ctx.hash, guidance.name, net_cfg)
    start, theta, fitted_state, hist = 0, None, None, []
    if path.is_file():
        ck = torch.load(path, map_location=ctx.device, weights_only=True)
        if ck.get("avatar_hash") == ctx.hash and ck.get("guidance") == guidance.name:
            start, theta, fitted_state = int(ck["iteration"]), ck["meta_mappers"], ck["fitted"]
            hist = list(ck.get("history", []))
            log.info("resuming meta-training at iteration %d of %d", start, meta_cfg.iterations)
    if fitted_state is None:
        fprog = (lambda st, s, t, l: progress(st, s, t, l, None)) if progress else None
        net = load_or_fit(ctx, net_cfg, meta_cfg.fit_steps, cache_dir, fprog, is_cancelled, seed=meta_cfg.seed)
        fitted_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    else:
        net = StyleNet(net_cfg).to(ctx.device)
        net.load_state_dict(fitted_state)
    theta = theta if theta is not None else mapper_state(net)
    gen = torch.Generator().manual_seed(meta_cfg.seed)
    order = torch.randint(len(targets), (meta_cfg.iterations,), generator=gen).tolist()

    def save(it):
        _atomic_save({"avatar_hash": ctx.hash, "guidance": guidance.name, "config": net_cfg.to_dict(),
                      "meta_config": asdict(meta_cfg), "iteration": it, "iterations": meta_cfg.iterations,
                      "fitted": fitted_state, "meta_mappers": theta, "history": hist,
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
            r = adapt(ctx, net, guidance, targets[order[it]], cameras, frame_w, acfg, render_fn=render_fn)
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
