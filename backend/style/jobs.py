"""The server's ``stylize`` and ``prepare`` jobs: thin wrappers over
:mod:`backend.style.engine` (the same code as ``metamorph stylize/prepare``).
torch is imported only inside ``run`` so the server starts fast.

stylize params: :meth:`shared.stylize.StylizeRequest.to_params` (+ optional
``settings``: engine overrides, e.g. {"resolution": 64}); arrays
``style_image_<i>`` [H,W,3] uint8 sRGB. Result: :meth:`StylizeResult.to_wire`.

prepare params: ``guidance``, ``preset``, ``iterations``, ``seed``, optional
``styles`` (list of prompts; default the shipped list), ``settings``; arrays
``style_image_<i>``. Result body: the summary of :func:`backend.style.meta.prepare`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.errors import InvalidParams
from shared.stylize import PASS_NAMES, QUALITY_PRESETS, StylizeRequest

from backend.jobs import JobContext, JobResult, register

# Bounds on engine overrides a client may send (the server's memory is shared).
SETTING_LIMITS = {"resolution": (16, 1024), "width": (4, 128), "levels": (1, 6), "steps": (0, 10000),
                  "views_per_step": (1, 32), "render_size": (16, 1024), "fit_steps": (1, 5000),
                  "meta_iterations": (1, 100000), "inner_steps": (1, 100)}


def _check_settings(params: dict) -> dict:
    s = params.get("settings") or {}  # StylizeRequest.settings
    if not isinstance(s, dict):
        raise InvalidParams("'settings' must be a mapping of engine settings.")
    for k, v in s.items():
        if k not in SETTING_LIMITS:
            raise InvalidParams(f"Unknown engine setting '{k}'; known: {sorted(SETTING_LIMITS)}.")
        lo, hi = SETTING_LIMITS[k]
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise InvalidParams(f"Engine setting '{k}' must be an integer in [{lo}, {hi}], got {v!r}.")
    if "resolution" in s and s["resolution"] % (2 ** (s.get("levels", 3) - 1)):
        raise InvalidParams("Engine setting 'resolution' must divide by 2^(levels-1).")
    return dict(s)


def _check_guidance(name) -> None:
    if not isinstance(name, str) or not name.strip():
        raise InvalidParams("'guidance' must name a guidance model, e.g. 'ViT-B-32:laion2b_s34b_b79k'.")
    if name.startswith(("local-dir:", "/", ".")):
        raise InvalidParams("A client cannot name files on the server: use an open_clip name:tag or "
                            "'test-tiny'; local checkpoints are configured on the server.")


def server_checkpoint(ctx: JobContext, guidance: str) -> str | None:
    """The weights file the server's operator configured for ``guidance``
    (``metamorph serve --clip-checkpoint NAME=PATH``): an exact ``name:tag`` entry
    first, then one for its architecture; None when the HF cache should be used."""
    table = (ctx.extra or {}).get("clip_checkpoints") or {}
    return table.get(guidance) or table.get(guidance.split(":", 1)[0])


def _images(arrays: dict) -> dict:
    out = {}
    for k, a in arrays.items():
        if k.startswith("style_image_"):
            try:
                i = int(k[len("style_image_"):])
            except ValueError as e:
                raise InvalidParams(f"Bad style image array name '{k}'.") from e
            if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3 or min(a.shape[:2]) < 8:
                raise InvalidParams(f"'{k}' must be an [H,W,3] uint8 sRGB image of at least 8x8 pixels, "
                                    f"got {a.dtype} {list(a.shape)}.")
            out[i] = a
    return out


def _cache(ctx: JobContext):
    return Path(ctx.workdir) / "style" if ctx.workdir else None


class StylizeJob:
    name = "stylize"
    needs_avatar = True

    def validate(self, params: dict, arrays: dict) -> None:
        req = StylizeRequest.from_params(params)
        _check_guidance(req.guidance)
        _check_settings(params)
        if req.preset not in QUALITY_PRESETS:
            raise InvalidParams(f"Unknown preset '{req.preset}'; use one of {list(QUALITY_PRESETS)}.")
        if not req.terms:
            raise InvalidParams("Give at least one style prompt or style image.")
        imgs = _images(arrays)
        for t in req.terms:
            if t.kind == "image" and t.image_index not in imgs:
                raise InvalidParams(f"Style term names image {t.image_index} but no 'style_image_{t.image_index}' "
                                    f"array was sent.")
            if t.kind == "text" and not t.text.strip():
                raise InvalidParams("A text style term has an empty prompt.")
            if t.kind not in ("text", "image"):
                raise InvalidParams(f"Unknown style term kind '{t.kind}'.")
        if not req.cameras:
            raise InvalidParams("The request has no cameras: add at least one camera to the rig.")
        if not 0.0 <= req.identity <= 1.0:
            raise InvalidParams(f"Identity strength must be between 0 and 1, got {req.identity}.")
        if not 1 <= req.texture_size <= 4096:
            raise InvalidParams(f"Texture size must be between 1 and 4096, got {req.texture_size}.")
        if not 16 <= req.pass_resolution <= 4096:
            raise InvalidParams(f"Pass resolution must be between 16 and 4096, got {req.pass_resolution}.")
        bad = [p for p in req.passes if p not in PASS_NAMES]
        if bad:
            raise InvalidParams(f"Unknown passes {bad}; choose from {list(PASS_NAMES)}.")
        if not req.frames or len(req.frames) > 256:
            raise InvalidParams("Give between 1 and 256 frames.")

    def run(self, ctx: JobContext) -> JobResult:
        from .engine import run_stylize

        req = StylizeRequest.from_params(ctx.params)
        res = run_stylize(ctx.avatar, req, _images(ctx.arrays), device=ctx.device, cache_dir=_cache(ctx),
                          clip_checkpoint=server_checkpoint(ctx, req.guidance),
                          progress=ctx.report_progress, is_cancelled=ctx.is_cancelled,
                          overrides=_check_settings(ctx.params))
        body, arrays = res.to_wire()
        return JobResult(body=body, arrays=arrays)


class PrepareJob:
    name = "prepare"
    needs_avatar = True

    def validate(self, params: dict, arrays: dict) -> None:
        _check_guidance(params.get("guidance", "ViT-B-32:laion2b_s34b_b79k"))
        _check_settings(params)
        if params.get("preset", "draft") not in QUALITY_PRESETS:
            raise InvalidParams(f"Unknown preset; use one of {list(QUALITY_PRESETS)}.")
        it = params.get("iterations", 0)
        if isinstance(it, bool) or not isinstance(it, int) or not 0 <= it <= 100000:
            raise InvalidParams("'iterations' must be an integer in [0, 100000] (0 = the preset's).")
        st = params.get("styles")
        if st is not None and (not isinstance(st, list) or not all(isinstance(x, str) and x.strip() for x in st)
                               or not st):
            raise InvalidParams("'styles' must be a non-empty list of style prompts.")
        _images(arrays)

    def run(self, ctx: JobContext) -> JobResult:
        from .engine import run_prepare

        p = ctx.params
        imgs = _images(ctx.arrays)
        guidance = p.get("guidance", "ViT-B-32:laion2b_s34b_b79k")
        info = run_prepare(ctx.avatar, guidance, styles=p.get("styles"),
                           clip_checkpoint=server_checkpoint(ctx, guidance),
                           style_images=[imgs[i] for i in sorted(imgs)], device=ctx.device,
                           cache_dir=_cache(ctx), preset=p.get("preset", "draft"),
                           overrides=_check_settings(p), iterations=p.get("iterations") or None,
                           progress=ctx.report_progress, is_cancelled=ctx.is_cancelled, seed=int(p.get("seed", 0)))
        return JobResult(body=info)


register(StylizeJob())
register(PrepareJob())
