"""One stylize run end to end (shared by ``metamorph stylize`` and the server's
``stylize`` job), and the ``prepare`` run.

    result = run_stylize(avatar, request, style_images, ...)   # StylizeResult

Settings come from a preset (``draft`` for CPU, ``quality`` for a GPU) with
optional overrides (tests and benchmarks use tiny resolutions).
"""

from __future__ import annotations

import logging
import platform
import time

import numpy as np
import torch

from shared.avatar import AvatarData, ExpressionTrack, validate
from shared.errors import InvalidParams
from shared.stylize import QUALITY_PRESETS, StylizeRequest, StylizeResult

from . import bake, meta
from .adapt import AdaptConfig, adapt, frame_weights, load_mapper_state, make_target
from .context import AvatarContext, expression_dampening
from .guidance import load_guidance
from .meta import MetaConfig
from .net import StyleNet

log = logging.getLogger(__name__)

PRESETS = {
    # UV working resolution, network width/levels, steps, views per step, render size, fitting steps
    "draft": dict(resolution=128, width=32, levels=3, steps=30, views_per_step=2, render_size=128, fit_steps=300,
                  meta_iterations=200, inner_steps=10),
    "quality": dict(resolution=512, width=48, levels=4, steps=40, views_per_step=8, render_size=224,
                    fit_steps=600, meta_iterations=300, inner_steps=10),
}


def settings(preset: str, overrides: dict | None = None) -> dict:
    if preset not in QUALITY_PRESETS:
        raise InvalidParams(f"Unknown preset '{preset}'; use one of {list(QUALITY_PRESETS)}.")
    s = dict(PRESETS[preset])
    for k, v in (overrides or {}).items():
        if k not in s:
            raise InvalidParams(f"Unknown engine setting '{k}'; known: {sorted(s)}.")
        s[k] = v
    return s


def track_from_request(req: StylizeRequest, av: AvatarData):
    """The expression track to sample frames from: the request's, else the avatar's."""
    if req.track:
        t = req.track
        try:
            return ExpressionTrack(frames=np.asarray(t["frames"], np.float32), names=list(t["names"]),
                                   weights=np.asarray(t["weights"], np.float32).reshape(len(t["frames"]),
                                                                                       len(t["names"])))
        except (KeyError, ValueError, TypeError) as e:
            raise InvalidParams(f"The request's expression track is malformed: {e}.") from e
    return av.track


def build_context(av: AvatarData, s: dict, device="cpu") -> AvatarContext:
    validate(av)
    return AvatarContext(av, s["resolution"], device=device)


def starting_net(ctx: AvatarContext, s: dict, guidance_name: str, cache_dir, progress=None, is_cancelled=None):
    """(network at its starting point, "meta" | "fitted")."""
    cfg = ctx.net_config(width=s["width"], levels=s["levels"])
    prepared = meta.load_meta_init(cache_dir, ctx, guidance_name, cfg)
    net = StyleNet(cfg).to(ctx.device)
    if prepared is not None:
        fitted, mappers, info = prepared
        net.load_state_dict(fitted)
        load_mapper_state(net, mappers)
        return net, "meta"
    fprog = (lambda st, i, t, l: progress(st, i, t, l, None)) if progress else None
    return meta.load_or_fit(ctx, cfg, s["fit_steps"], cache_dir, fprog, is_cancelled), "fitted"


def run_stylize(av: AvatarData, req: StylizeRequest, style_images: dict | None = None, *, device: str = "cpu",
                clip_checkpoint: str | None = None, cache_dir=None, progress=None, is_cancelled=None,
                overrides: dict | None = None, allow_download: bool | None = None, guidance=None,
                render_fn=None) -> StylizeResult:
    """Stylize ``av`` as ``req`` asks. ``style_images``: {index: [H,W,3] uint8 sRGB}.

    ``progress(stage, step, total, losses=None, preview=None)``. Raises typed
    :mod:`shared.errors` for bad input, unavailable guidance and cancellation.
    The avatar is never modified.
    """
    t0 = time.time()
    s = settings(req.preset, {**(req.settings or {}), **(overrides or {})})
    if not req.cameras:
        raise InvalidParams("The request has no cameras: add at least one camera to the rig.")
    from shared.camera import projection
    for i, cam in enumerate(req.cameras):
        try:
            projection(cam)
        except ValueError as e:
            raise InvalidParams(f"Camera {i} ('{cam.name}') cannot be used: {e}.") from e
    if not 1 <= int(req.texture_size) <= bake.MAX_TEXTURE_SIZE:
        raise InvalidParams(f"Texture size must be between 1 and {bake.MAX_TEXTURE_SIZE}, got {req.texture_size}.")
    steps = int(req.steps) if req.steps else s["steps"]
    if steps < 0 or steps > 10000:
        raise InvalidParams(f"Steps must be between 0 and 10000, got {steps}.")
    if not 0.0 <= float(req.identity) <= 1.0:
        raise InvalidParams(f"Identity strength must be between 0 and 1, got {req.identity}.")
    g = guidance or load_guidance(req.guidance, clip_checkpoint, device=device, allow_download=allow_download)
    target = make_target(g, req.terms, style_images or {})
    report = progress or (lambda *a, **k: None)
    report("load", 0, 1)
    ctx = build_context(av, s, device)
    net, init = starting_net(ctx, s, g.name, cache_dir, report, is_cancelled)
    track = track_from_request(req, av)
    frames = list(req.frames) or [0.0]
    fw = frame_weights(ctx, track, frames)
    acfg = AdaptConfig(steps=steps, views_per_step=s["views_per_step"], render_size=s["render_size"],
                       identity=float(req.identity), seed=int(req.seed), time_budget_s=float(req.time_budget_s))
    r = adapt(ctx, net, g, target, req.cameras, fw, acfg, progress=report, is_cancelled=is_cancelled,
              render_fn=render_fn)
    report("bake", 0, 1)
    textures = bake.bake_textures(ctx, r.decoded, int(req.texture_size))
    passes = bake.bake_passes(ctx, r.decoded, textures, req.cameras, fw, int(req.pass_resolution),
                              tuple(req.passes), render_fn=render_fn)
    damp = expression_dampening(av.blendshapes, r.decoded.bs_offsets.cpu().numpy())
    name = req.name or next((t.text for t in req.terms if t.kind == "text" and t.text), "image style")
    md = {
        "prompts": [{"kind": t.kind, "text": t.text, "image_index": t.image_index, "weight": float(t.weight)}
                    for t in req.terms],
        "identity": float(req.identity), "guidance": g.name, "guidance_is_test_model": bool(g.is_test_model),
        "steps": r.steps_done, "steps_requested": steps, "stopped": r.stopped, "init": init,
        "losses": r.history, "adapt_seconds": r.seconds, "seconds": time.time() - t0,
        "device": str(device), "device_name": _device_name(device), "preset": req.preset, "settings": s,
        "seed": int(req.seed), "expression_dampening": damp["mean"],
        "expression_dampening_per_blendshape": damp["per_blendshape"], "avatar_hash": ctx.hash,
        "max_neutral_offset_m": float(np.abs(r.decoded.neutral.detach().cpu().numpy()).max()) if ctx.K >= 0 else 0.0,
    }
    if g.is_test_model:
        md["warning"] = ("Made with a test guidance model with untrained weights: the style is meaningless, "
                         "only the mechanics are exercised.")
    report("done", 1, 1)
    return bake.make_result(ctx, r.decoded, textures, passes, md, req.cameras, frames, name)


def run_prepare(av: AvatarData, guidance_name: str, *, styles=None, style_images=None, device="cpu",
                clip_checkpoint=None, cache_dir=None, preset="draft", overrides=None, iterations=None,
                cameras=None, frames=None, progress=None, is_cancelled=None, allow_download=None, guidance=None,
                seed: int = 0, render_fn=None) -> dict:
    """Fit + Reptile for ``av`` with ``guidance_name``; checkpoint in ``cache_dir``."""
    from .rig import default_rig

    s = settings(preset, overrides)
    g = guidance or load_guidance(guidance_name, clip_checkpoint, device=device, allow_download=allow_download)
    ctx = build_context(av, s, device)
    cfg = ctx.net_config(width=s["width"], levels=s["levels"])
    cams = cameras or default_rig(av.vertices, blendshapes=av.blendshapes)
    track = av.track
    fr = frames if frames is not None else (list(np.asarray(track.frames)[:: max(1, len(track.frames) // 8)])
                                            if track is not None else [0.0])
    fw = frame_weights(ctx, track, fr)
    acfg = AdaptConfig(views_per_step=s["views_per_step"], render_size=s["render_size"])
    mcfg = MetaConfig(iterations=int(iterations or s["meta_iterations"]), inner_steps=s["inner_steps"],
                      fit_steps=s["fit_steps"], seed=seed)
    info = meta.prepare(ctx, g, cfg, acfg, mcfg, cams, fw, styles=styles, style_images=style_images,
                        cache_dir=cache_dir or meta.default_cache_dir(), progress=progress,
                        is_cancelled=is_cancelled, render_fn=render_fn)
    info["device"] = str(device)
    return info


def _device_name(device) -> str:
    d = torch.device(device)
    if d.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(d)
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"
