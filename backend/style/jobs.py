"""The server's ``stylize`` and ``prepare`` jobs: thin wrappers over
:mod:`backend.style.engine` (the same code as ``metamorph stylize/prepare``).

Params, arrays and results: the contracts in :mod:`shared.stylize`
(:class:`~shared.stylize.StylizeRequest`, :class:`~shared.stylize.PrepareRequest`).
``validate`` runs on the server's socket loop: the contract's ``validate(limits)`` and
the engine-settings bounds (:func:`backend.style.config.resolve`, no torch); the
server itself checks the guidance name (only models ``hello`` lists, never files) and
hands ``run`` the loaded model (``ctx.guidance``). torch is imported only inside
``run`` so the server starts fast.
"""

from __future__ import annotations

from backend.cache import cache_dir
from backend.jobs import JobContext, JobResult, register
from shared.protocol import Limits
from shared.stylize import PrepareRequest, StylizeRequest, style_images

from .config import resolve
from .guidance_cache import refuse_sources


def check_server_guidance(name: str) -> None:
    """Server rule for handlers that load a model themselves: a client names a model,
    never a file on the server (the router applies the same rule to every job's
    ``guidance`` param before a handler sees it)."""
    refuse_sources(name)


def server_checkpoint(ctx: JobContext, guidance: str) -> str | None:
    """The weights file the server's operator configured for ``guidance``
    (``metamorph serve --clip-checkpoint NAME=PATH``): an exact ``name:tag`` entry
    first, then one for its architecture; None when the HF cache should be used.
    Only used when the server does not hand the job its model (``ctx.guidance``)."""
    table = (ctx.extra or {}).get("clip_checkpoints") or {}
    return table.get(guidance) or table.get(guidance.split(":", 1)[0])


def stylize_request(params: dict, arrays: dict, limits: Limits | None = None):
    """(checked :class:`StylizeRequest`, its style images) from a submit's params and arrays."""
    lim = limits or Limits()
    req = StylizeRequest.from_params(params)
    images = style_images(arrays, lim)
    req.validate(lim, images)
    resolve(req.preset, req.settings)
    return req, images


def prepare_request(params: dict, arrays: dict, limits: Limits | None = None):
    """(checked :class:`PrepareRequest`, its style images in index order)."""
    lim = limits or Limits()
    req = PrepareRequest.from_params(params)
    images = style_images(arrays, lim)
    req.validate(lim, images)
    resolve(req.preset, req.settings)
    return req, [images[i] for i in sorted(images)]


def job_guidance(ctx: JobContext, name: str):
    """The server's loaded model ``name`` (``ctx.guidance``), or None to load it in the engine."""
    return ctx.guidance(name) if getattr(ctx, "guidance", None) else None


class StylizeJob:
    name = "stylize"
    needs_avatar = True

    def validate(self, params: dict, arrays: dict, limits: Limits | None = None) -> None:
        stylize_request(params, arrays, limits)

    def run(self, ctx: JobContext) -> JobResult:
        from .engine import run_stylize  # torch and the models: only once a job runs

        req, images = stylize_request(ctx.params, ctx.arrays)
        res = run_stylize(ctx.avatar, req, images, device=ctx.device, cache_dir=cache_dir("style", ctx.workdir),
                          clip_checkpoint=server_checkpoint(ctx, req.guidance),
                          guidance=job_guidance(ctx, req.guidance), progress=ctx.report_progress,
                          is_cancelled=ctx.is_cancelled)
        body, arrays = res.to_wire()
        return JobResult(body=body, arrays=arrays)


class PrepareJob:
    name = "prepare"
    needs_avatar = True

    def validate(self, params: dict, arrays: dict, limits: Limits | None = None) -> None:
        prepare_request(params, arrays, limits)

    def run(self, ctx: JobContext) -> JobResult:
        from .engine import run_prepare  # torch and the models: only once a job runs

        req, images = prepare_request(ctx.params, ctx.arrays)
        info = run_prepare(ctx.avatar, request=req, style_images=images, device=ctx.device,
                           clip_checkpoint=server_checkpoint(ctx, req.guidance),
                           guidance=job_guidance(ctx, req.guidance), cache_dir=cache_dir("style", ctx.workdir),
                           progress=ctx.report_progress, is_cancelled=ctx.is_cancelled)
        return JobResult(body=info)


register(StylizeJob())
register(PrepareJob())
