"""Few-step style adaptation: Adam on the bias mappers only.

Each step renders the stylized avatar (textured and plain shaded) and the
original from a few views of the user's rig at frames of the user's expression
track, composites them on random backgrounds, takes the same random
crops/perspective of both, embeds them with CLIP and minimizes the weighted style
terms + identity + regularizers. Deterministic for a seed on a given device.
"""

from __future__ import annotations

import logging
import time
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from shared.errors import Cancelled, InvalidParams

from . import augment, losses
from .color import to_srgb_uint8
from .config import AdaptConfig
from .context import AvatarContext, Decoded
from .net import StyleNet

log = logging.getLogger(__name__)

NEUTRAL_PROMPT = "a 3D render of a head"
_TEXT_CACHE: dict = {}  # (id(guidance), prompt) -> (weakref to guidance, [1,D] embedding)
_TEXT_CACHE_SIZE = 4096


def text_embedding(guidance, text: str) -> torch.Tensor:
    """``guidance.encode_text([text])`` ``[1,D]``, kept per guidance model and prompt: the
    neutral prompt and the meta-training prompts are embedded once per process."""
    key = (id(guidance), text)
    hit = _TEXT_CACHE.get(key)
    if hit is not None and hit[0]() is guidance:
        return hit[1]
    if len(_TEXT_CACHE) >= _TEXT_CACHE_SIZE:
        _TEXT_CACHE.clear()
    emb = guidance.encode_text([text])
    _TEXT_CACHE[key] = (weakref.ref(guidance), emb)
    return emb


@dataclass
class Target:
    """A prepared style: weighted terms as CLIP embeddings.

    terms: list of (kind "text"|"image", weight, embedding [1,D]); ``neutral`` [1,D]
    embedding of :data:`NEUTRAL_PROMPT` for the directional loss.
    """

    terms: list
    neutral: torch.Tensor
    labels: list = field(default_factory=list)


def make_target(guidance, terms: list, images: dict | None = None) -> Target:
    """``terms``: list of :class:`shared.stylize.StyleTerm` (or dicts with kind,
    weight, text, image_index); ``images``: {index: [H,W,3] uint8}."""
    out, labels = [], []
    images = images or {}
    for t in terms:
        t = t if isinstance(t, dict) else vars(t)
        kind, w = t.get("kind", "text"), float(t.get("weight", 1.0))
        if not np.isfinite(w):
            raise InvalidParams("Style weights must be finite numbers.")
        if kind == "text":
            text = str(t.get("text", "")).strip()
            if not text:
                raise InvalidParams("A text style term has an empty prompt; type a style description.")
            out.append(("text", w, text_embedding(guidance, text)))
            labels.append(text)
        elif kind == "image":
            idx = int(t.get("image_index", -1))
            if idx not in images:
                raise InvalidParams(f"Style image {idx} was named by a term but not sent.")
            out.append(("image", w, guidance.encode_image_uint8(images[idx])))
            labels.append(f"<image {idx}>")
        else:
            raise InvalidParams(f"Unknown style term kind '{kind}' (use 'text' or 'image').")
    if not out or sum(abs(w) for _, w, _ in out) == 0:
        raise InvalidParams("Give at least one style prompt or style image with a non-zero weight.")
    return Target(terms=out, neutral=text_embedding(guidance, NEUTRAL_PROMPT), labels=labels)


@dataclass
class AdaptResult:
    decoded: Decoded
    history: list  # per step {"total", "style", "identity", "offset", "laplacian", "texture"}
    steps_done: int
    stopped: str  # "done" | "time_budget"
    seconds: float


def frame_weights(ctx: AvatarContext, track, frames) -> torch.Tensor:
    """Blendshape weights ``[N,K]`` of the avatar at each frame (linear
    interpolation of ``track``; no track -> neutral). ``track``: an
    :class:`shared.avatar.ExpressionTrack` or None."""
    N = max(len(frames), 1)
    W = np.zeros((N, ctx.K), np.float32)
    if track is not None and ctx.K and len(track.frames):
        col = {n: i for i, n in enumerate(ctx.avatar.blendshape_names)}
        tf = np.asarray(track.frames, np.float64)
        for j, name in enumerate(track.names):
            if name in col:
                W[:, col[name]] = np.interp(np.asarray(frames, np.float64), tf, track.weights[:, j])
    return torch.from_numpy(W).to(ctx.device)


def progress_preview(img: torch.Tensor, size: int) -> np.ndarray:
    """A linear ``[H,W,3]`` render -> ``[size,size,3]`` uint8 sRGB preview."""
    x = F.interpolate(img.detach()[None].permute(0, 3, 1, 2), size=(size, size), mode="bilinear",
                      antialias=True, align_corners=False)[0].permute(1, 2, 0)
    return to_srgb_uint8(x)


def regularized_total(ctx, net, dec, cfg, objective: torch.Tensor):
    """``objective`` plus the engine's regularizers, with the weights of ``cfg``: offset size
    and smoothness of [neutral; blendshape offsets] (on the moving vertices only) and the
    texture's drift from the original. -> (total, offset, laplacian, texture) scalars."""
    l_off, l_lap = ctx.offset_regularizers(dec, ctx.head_size * net.cfg.max_offset_frac)
    l_tex = losses.texture_regularizer(dec.albedo, ctx.base_albedo, ctx.mask)
    total = (objective + cfg.offset_weight * 1e-2 * l_off + cfg.laplacian_weight * l_lap
             + cfg.texture_weight * l_tex)
    return total, l_off, l_lap, l_tex


def adapt(ctx: AvatarContext, net: StyleNet, guidance, target: Target, cameras, frame_w: torch.Tensor,
          cfg: AdaptConfig, progress=None, is_cancelled=None) -> AdaptResult:
    """Adapt ``net``'s bias mappers in place to ``target``.

    cameras: list of :class:`shared.camera.Camera` (views are drawn from them);
    frame_w: ``[N,K]`` expression weights of the frames to draw from.
    ``progress(stage, step, total, losses, preview)``; ``is_cancelled()`` checked
    before every step (raises :class:`Cancelled`). Only
    ``net.mapper_parameters()`` change; everything else is frozen.
    """
    t0 = time.time()
    if not cameras:
        raise InvalidParams("No cameras were given: add at least one camera to the rig.")
    gen = torch.Generator().manual_seed(int(cfg.seed))
    mapper_ids = {id(p) for p in net.mapper_parameters()}
    for p in net.parameters():
        p.requires_grad_(id(p) in mapper_ids)
    # channels-last convs: 10-15% less CPU time per decode (oneDNN; scripts/bench_stylize.py)
    net.to(memory_format=torch.channels_last)
    with torch.no_grad():  # the encoder is frozen: compute once
        feats = [f.contiguous(memory_format=torch.channels_last) for f in net.encode(ctx.identity)]
    opt = torch.optim.Adam(net.mapper_parameters(), lr=cfg.lr)
    crop = guidance.image_size
    S = min(cfg.render_size, crop)  # crops are resampled to the guidance input: larger renders are wasted
    n = cfg.views_per_step
    base_tex = list(ctx.base_albedo)
    orig_cache: dict[tuple[int, int], torch.Tensor] = {}
    w_id = float(np.clip(cfg.identity, 0.0, 1.0)) * cfg.identity_scale
    history, stopped, step = [], "done", 0

    try:
        for step in range(cfg.steps):
            if is_cancelled and is_cancelled():
                raise Cancelled("Stylization was cancelled.")
            if cfg.time_budget_s and time.time() - t0 > cfg.time_budget_s and step > 0:
                stopped = "time_budget"
                break
            ci = torch.randint(len(cameras), (n,), generator=gen).tolist()
            fi = torch.randint(frame_w.shape[0], (n,), generator=gen).tolist()
            bg = augment.random_backgrounds(n, S, S, gen).to(ctx.device)
            H = augment.crop_params(n * cfg.crops_per_view, gen)
            cams = [cameras[c] for c in ci]

            dec = ctx.decode(net, feats)
            wts = frame_w[fi]
            # antialiased: the style reaches the outline too (see backend.render.antialias)
            out = ctx.render(ctx.posed(wts, dec), list(dec.albedo), cams, S, ("color", "grey", "alpha"), antialias=True)
            with torch.no_grad():
                need = [(c, f) for c, f in zip(ci, fi) if (c, f) not in orig_cache]
                if need:
                    o = ctx.render(ctx.posed(frame_w[[f for _, f in need]]), base_tex,
                                   [cameras[c] for c, _ in need], S, ("color", "alpha"), antialias=True)
                    for k, key in enumerate(need):
                        orig_cache[key] = torch.cat([o["color"][k], o["alpha"][k]], -1)
                orig = torch.stack([orig_cache[(c, f)] for c, f in zip(ci, fi)])
            img_s = augment.composite(out["color"], out["alpha"], bg)
            img_g = augment.composite(out["grey"], out["alpha"], bg)
            img_o = augment.composite(orig[..., :3], orig[..., 3:], bg)
            rep = lambda x: x.repeat_interleave(cfg.crops_per_view, 0)  # noqa: E731
            # stylized and plain shaded crops in one guidance batch (one pass of larger matrices)
            e_sg = guidance.encode_image(augment.warp(rep(torch.cat([img_s, img_g])), H.repeat(2, 1, 1), crop))
            e_s, e_g = e_sg.chunk(2)
            with torch.no_grad():
                e_o = guidance.encode_image(augment.warp(rep(img_o), H, crop))

            l_style = _style_loss(target, e_s, e_g, e_o, cfg)
            l_id = losses.identity_loss(e_s, e_o)
            total, l_off, l_lap, l_tex = regularized_total(ctx, net, dec, cfg, l_style + w_id * l_id)
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            rec = {"total": float(total.detach()), "style": float(l_style.detach()),
                   "identity": float(l_id.detach()), "offset": float(l_off.detach()),
                   "laplacian": float(l_lap.detach()), "texture": float(l_tex.detach())}
            history.append(rec)
            if progress:
                prev = None
                if cfg.preview_every and (step % cfg.preview_every == 0 or step == cfg.steps - 1):
                    prev = progress_preview(img_s[0], cfg.preview_size)
                progress("adapt", step + 1, cfg.steps, rec, prev)
    finally:
        for p in net.parameters():
            p.requires_grad_(True)
    done = len(history)
    with torch.no_grad():
        dec = ctx.decode(net)
    return AdaptResult(decoded=dec, history=history, steps_done=done, stopped=stopped, seconds=time.time() - t0)


def mapper_state(net: StyleNet) -> list[torch.Tensor]:
    """Detached copies of the bias mappers' parameters (the adapted subset)."""
    return [p.detach().clone() for p in net.mapper_parameters()]


def load_mapper_state(net: StyleNet, state: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for p, s in zip(net.mapper_parameters(), state):
            p.copy_(s)


@torch.no_grad()
def evaluate(ctx: AvatarContext, net: StyleNet, guidance, target: Target, cameras, frame_w: torch.Tensor,
             render_size: int = 128, draws: int = 2, seed: int = 12345) -> float:
    """The guidance (style) loss the adaptation minimizes, on a fixed sample:
    every camera at every frame, ``draws`` fixed random backgrounds and crops each
    (seeded, so two networks are compared on identical images). The number the
    benchmarks plot."""
    gen = torch.Generator().manual_seed(seed)
    dec = ctx.decode(net)
    C, N = len(cameras), frame_w.shape[0]
    cams = [c for c in cameras for _ in range(N)]
    wts = frame_w.repeat(C, 1)
    S = render_size
    out = ctx.render(ctx.posed(wts, dec), list(dec.albedo), cams, S, ("color", "grey", "alpha"), antialias=True)
    orig = ctx.render(ctx.posed(wts), list(ctx.base_albedo), cams, S, ("color", "alpha"), antialias=True)
    B = C * N
    vals = []
    for _ in range(draws):
        bg = augment.random_backgrounds(B, S, S, gen).to(ctx.device)
        H = augment.crop_params(B, gen)
        crop = guidance.image_size
        e_s = guidance.encode_image(augment.warp(augment.composite(out["color"], out["alpha"], bg), H, crop))
        e_g = guidance.encode_image(augment.warp(augment.composite(out["grey"], out["alpha"], bg), H, crop))
        e_o = guidance.encode_image(augment.warp(augment.composite(orig["color"], orig["alpha"], bg), H, crop))
        vals.append(float(_style_loss(target, e_s, e_g, e_o, AdaptConfig())))
    return float(np.mean(vals))


def _style_loss(target: Target, e_s, e_g, e_o, cfg: AdaptConfig) -> torch.Tensor:
    """Weighted mix of the style terms for stylized (``e_s``), plain shaded
    (``e_g``) and original (``e_o``) embeddings of the same crops."""
    parts = []
    for kind, w, emb in target.terms:
        if kind == "text":
            loss = (losses.text_loss(e_s, emb) + cfg.geometry_weight * losses.text_loss(e_g, emb)
                    + cfg.directional_weight * losses.directional_loss(e_s, e_o, emb, target.neutral))
        else:
            loss = losses.image_loss(e_s, emb) + cfg.geometry_weight * losses.image_loss(e_g, emb)
        parts.append((w, loss))
    return losses.weighted_mix(parts)
