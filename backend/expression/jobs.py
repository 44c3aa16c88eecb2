"""The server's ``expression_from_text`` and ``expression_from_video`` jobs: thin wrappers
over :mod:`backend.expression.text` and :mod:`backend.expression.capture` (the same code
as the CLI). ``validate`` is the contract's check (cheap, no torch); torch and the models
load inside ``run``.

expression_from_text: params :meth:`shared.expression.ExpressionFromTextRequest.to_params`;
needs the uploaded avatar. expression_from_video: params
:meth:`shared.expression.ExpressionFromVideoRequest.to_params`, array ``frames``
[N,H,W,3] uint8. Result (both): :meth:`shared.expression.ExpressionResult.to_wire`.
"""

from __future__ import annotations

from pathlib import Path

from shared import expression as X
from shared.protocol import Limits

from backend.jobs import JobContext, JobResult, register
from backend.style.jobs import check_server_guidance, job_guidance, server_checkpoint


def _cache(ctx: JobContext):
    from backend.cache import cache_dir

    # the server's own folder when it has one (never a client-named path)
    return Path(ctx.workdir) / "expression" if ctx.workdir else cache_dir("expression")


def _limits(ctx: JobContext) -> Limits:
    return (ctx.extra or {}).get("limits") or Limits()


class ExpressionFromTextJob:
    name = "expression_from_text"
    needs_avatar = True

    def validate(self, params: dict, arrays: dict, limits: Limits | None = None) -> None:
        req = X.ExpressionFromTextRequest.from_params(params).validate(limits or Limits())
        check_server_guidance(req.guidance)

    def run(self, ctx: JobContext) -> JobResult:
        from .text import run_expression_from_text

        req = X.ExpressionFromTextRequest.from_params(ctx.params)
        res = run_expression_from_text(ctx.avatar, req, device=ctx.device, guidance=job_guidance(ctx, req.guidance),
                                       clip_checkpoint=server_checkpoint(ctx, req.guidance),
                                       cache_dir=_cache(ctx), limits=_limits(ctx), progress=ctx.report_progress,
                                       is_cancelled=ctx.is_cancelled)
        body, arrays = res.to_wire()
        return JobResult(body=body, arrays=arrays)


class ExpressionFromVideoJob:
    name = "expression_from_video"
    needs_avatar = False

    def validate(self, params: dict, arrays: dict, limits: Limits | None = None) -> None:
        X.ExpressionFromVideoRequest.from_params(params).validate(limits or Limits(), arrays)

    def run(self, ctx: JobContext) -> JobResult:
        from .capture import run_expression_from_video

        req = X.ExpressionFromVideoRequest.from_params(ctx.params)
        res = run_expression_from_video(ctx.arrays.get("frames"), req, cache_dir=_cache(ctx), limits=_limits(ctx),
                                        progress=ctx.report_progress, is_cancelled=ctx.is_cancelled)
        body, arrays = res.to_wire()
        return JobResult(body=body, arrays=arrays)


register(ExpressionFromTextJob())
register(ExpressionFromVideoJob())
