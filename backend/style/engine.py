"""One stylize run end to end (shared by ``metamorph stylize`` and the server's
``stylize`` job), and the ``prepare`` run.

    result = run_stylize(avatar, request, style_images, ...)   # StylizeResult
    info = run_prepare(avatar, guidance_name, ...)             # summary dict

Requests are checked by their contract (:mod:`shared.stylize`); engine settings come
from one :class:`backend.style.config.StyleConfig` (a preset, ``draft`` for CPU and
``quality`` for a GPU, plus the request's ``settings`` and the caller's overrides,
merged once here).
"""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import replace

import numpy as np
import torch

from shared.avatar import AvatarData, ExpressionTrack, validate
from shared.errors import InvalidParams
from shared.protocol import Limits
from shared.stylize import DEFAULT_GUIDANCE, DEFAULT_PRESET, PrepareRequest, StylizeRequest, StylizeResult

from backend.face.measures import measures_from_passes

from . import bake, meta
from .adapt import adapt, frame_weights, load_mapper_state, make_target
from .config import StyleConfig, resolve
from .context import AvatarContext, expression_dampening
from .guidance import load_guidance
from .net import StyleNet
from .rig import default_rig

log = logging.getLogger(__name__)

TEST_MODEL_WARNING = ("Made with a test guidance model with untrained weights: the style is meaningless, "
                      "only the mechanics are exercised.")


def style_config(preset: str = DEFAULT_PRESET, *override_dicts: dict | None) -> StyleConfig:
    """The run's config: ``preset`` with the override dicts applied in order (later wins)."""
    merged: dict = {}
    for o in override_dicts:
        merged.update(o or {})
    return resolve(preset, merged)


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


def build_context(av: AvatarData, config: StyleConfig, device="cpu") -> AvatarContext:
    """The avatar as tensors at ``config``'s UV resolution (the avatar is checked first)."""
    validate(av)
    return AvatarContext(av, config.network.resolution, device=device)


def starting_net(ctx: AvatarContext, config: StyleConfig, guidance_name: str, cache_dir):
    """(network at its starting point, "meta" | "identity": the avatar reproduced by construction)."""
    prepared = meta.load_meta_init(cache_dir, ctx, guidance_name, config)
    if prepared is not None:
        start, mappers, _ = prepared
        net = StyleNet(ctx.net_config(config.network)).to(ctx.device)
        net.load_state_dict(start)
        load_mapper_state(net, mappers)
        return net, "meta"
    return meta.starting_network(ctx, config), "identity"


def run_stylize(av: AvatarData, req: StylizeRequest, style_images: dict | None = None, *, device: str = "cpu",
                clip_checkpoint: str | None = None, cache_dir=None, progress=None, is_cancelled=None,
                overrides: dict | None = None, allow_download: bool | None = None, guidance=None,
                limits: Limits | None = None, adapt_fn=None) -> StylizeResult:
    """Stylize ``av`` as ``req`` asks. ``style_images``: {index: [H,W,3] uint8 sRGB}.

    ``overrides``: engine settings applied over the request's ``settings`` (tests and
    benchmarks use tiny resolutions). ``progress(stage, step, total, losses=None,
    preview=None)``. Raises typed :mod:`shared.errors` for bad input, unavailable
    guidance and cancellation. The avatar is never modified.
    """
    t0 = time.time()
    images = style_images or {}
    req.validate(limits, images)
    config = style_config(req.preset, req.settings, overrides)
    steps = int(req.steps) or config.adaptation.steps
    g = guidance or load_guidance(req.guidance, clip_checkpoint, device=device, allow_download=allow_download)
    target = make_target(g, req.terms, images)
    report = progress or (lambda *a, **k: None)
    report("load", 0, 1)
    ctx = build_context(av, config, device)
    net, init = starting_net(ctx, config, g.name, cache_dir)
    track = track_from_request(req, av)
    frames = list(req.frames)
    fw = frame_weights(ctx, track, frames)
    acfg = replace(config.adaptation, steps=steps, identity=float(req.identity), seed=int(req.seed),
                   time_budget_s=float(req.time_budget_s))
    # adapt_fn: another loop with adapt's signature (avatar from text sculpts with its own)
    r = (adapt_fn or adapt)(ctx, net, g, target, req.cameras, fw, acfg, progress=report, is_cancelled=is_cancelled)
    report("bake", 0, len(req.cameras))
    textures = bake.bake_textures(ctx, r.decoded, int(req.texture_size))
    passes = bake.bake_passes(ctx, r.decoded, textures, req.cameras, fw, int(req.pass_resolution), tuple(req.passes),
                              progress=report)
    damp = expression_dampening(av.blendshapes, r.decoded.bs_offsets.cpu().numpy())
    md = {
        "prompts": [{"kind": t.kind, "text": t.text, "image_index": t.image_index, "weight": float(t.weight)}
                    for t in req.terms],
        "identity": float(req.identity), "guidance": g.name, "guidance_is_test_model": bool(g.is_test_model),
        "steps": r.steps_done, "steps_requested": steps, "stopped": r.stopped, "init": init,
        "losses": r.history, "adapt_seconds": r.seconds, "seconds": time.time() - t0,
        "device": str(device), "device_name": _device_name(device), "preset": req.preset,
        "settings": config.settings(), "seed": int(req.seed), "expression_dampening": damp["mean"],
        "expression_dampening_per_blendshape": damp["per_blendshape"], "avatar_hash": ctx.hash,
        "max_neutral_offset_m": float(np.abs(r.decoded.neutral.detach().cpu().numpy()).max()),
    }
    if g.is_test_model:
        md["warning"] = TEST_MODEL_WARNING
    md["independent_measures"] = measures_from_passes(passes, req.cameras)  # dlib identity + landmark motion
    report("done", 1, 1)
    return bake.make_result(ctx, r.decoded, textures, passes, md, req.cameras, frames, req.style_name())


def prepare_frames(av: AvatarData, count: int = 8) -> list[float]:
    """About ``count`` frames spread over the avatar's track (``[0.0]`` without one)."""
    track = av.track
    if track is None or not len(track.frames):
        return [0.0]
    return [float(f) for f in np.asarray(track.frames)[:: max(1, len(track.frames) // count)]]


def run_prepare(av: AvatarData, guidance_name: str | None = None, *, styles=None, style_images=None,
                device="cpu", clip_checkpoint=None, cache_dir=None, preset=DEFAULT_PRESET, overrides=None,
                iterations=None, cameras=None, frames=None, progress=None, is_cancelled=None,
                allow_download=None, guidance=None, seed: int = 0, request: PrepareRequest | None = None,
                limits: Limits | None = None) -> dict:
    """Fit + Reptile for ``av`` with ``guidance_name``; checkpoint in ``cache_dir``.

    Either a :class:`PrepareRequest` (``request``) or its fields as keywords;
    ``overrides`` apply over the request's ``settings``."""
    if request is None:
        request = PrepareRequest(avatar_id="local", guidance=guidance_name or DEFAULT_GUIDANCE,
                                 preset=preset, iterations=int(iterations or 0), seed=int(seed),
                                 styles=list(styles) if styles is not None else None)
    images = list(style_images or [])
    request.validate(limits, dict(enumerate(images)))
    config = style_config(request.preset, request.settings, overrides)
    if request.iterations:
        config = replace(config, meta=replace(config.meta, iterations=int(request.iterations)))
    config = replace(config, meta=replace(config.meta, seed=int(request.seed)))
    g = guidance or load_guidance(request.guidance, clip_checkpoint, device=device, allow_download=allow_download)
    ctx = build_context(av, config, device)
    cams = cameras or default_rig(av.vertices, blendshapes=av.blendshapes)
    fw = frame_weights(ctx, av.track, frames if frames is not None else prepare_frames(av))
    info = meta.prepare(ctx, g, config, cams, fw, styles=request.styles, style_images=images,
                        cache_dir=cache_dir or meta.style_cache(), progress=progress, is_cancelled=is_cancelled)
    info["device"] = str(device)
    return info


def _device_name(device) -> str:
    d = torch.device(device)
    if d.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(d)
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"
