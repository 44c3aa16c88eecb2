"""The server's ``avatar_from_text`` job: a thin wrapper over
:func:`backend.textavatar.pipeline.avatar_from_text` (the same code as
``metamorph avatar-from-text``).

Params, arrays and result: the contract in :mod:`shared.text_avatar`. ``validate`` runs on
the socket loop (the contract's ``validate(limits)``, the engine-settings bounds, no
torch); ``run`` uses the server's loaded guidance model (``ctx.guidance``) when it hands
one, builds or reuses the codebook under the server's cache root (``ctx.workdir``) and
returns the avatar with :func:`shared.avatar.to_wire` plus the query and stylization
metadata (``guidance_is_test_model`` labels results of the test model).
"""

from __future__ import annotations

from backend.jobs import JobContext, JobResult, register
from backend.style.config import resolve
from backend.style.jobs import check_server_guidance, job_guidance, server_checkpoint
from shared.errors import InvalidParams
from shared.protocol import Limits
from shared.text_avatar import JOB_KIND, AvatarFromTextRequest


def text_avatar_request(params: dict, arrays: dict, limits: Limits | None = None) -> AvatarFromTextRequest:
    """The checked request of a submit (no arrays are expected)."""
    req = AvatarFromTextRequest.from_params(params).validate(limits)
    check_server_guidance(req.guidance)
    if arrays:
        raise InvalidParams(f"An avatar-from-text job takes no arrays; got {sorted(arrays)}.")
    resolve(req.preset, req.settings)
    return req


class AvatarFromTextJob:
    name = JOB_KIND
    needs_avatar = False

    def validate(self, params: dict, arrays: dict, limits: Limits | None = None) -> None:
        text_avatar_request(params, arrays, limits)

    def run(self, ctx: JobContext) -> JobResult:
        from .pipeline import avatar_from_text  # torch and the models: only once a job runs

        req = text_avatar_request(ctx.params, ctx.arrays)
        run = avatar_from_text(req, device=ctx.device, cache_root=ctx.workdir,
                               clip_checkpoint=server_checkpoint(ctx, req.guidance),
                               guidance=job_guidance(ctx, req.guidance), progress=ctx.report_progress,
                               is_cancelled=ctx.is_cancelled)
        body, arrays = run.to_result().to_wire()
        return JobResult(body=body, arrays=arrays)


register(AvatarFromTextJob())
