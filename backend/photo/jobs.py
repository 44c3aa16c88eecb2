"""The server's ``avatar_from_photo`` job (contract: :mod:`shared.photo`).

``validate`` is cheap (field and array checks only); torch, MediaPipe and dlib are imported in
``run``. The result is self-describing (body ``kind`` = "avatar_from_photo", the avatar under
``avatar`` with its arrays as sent by :func:`shared.avatar.to_wire`) so a client imports it as is.
"""

from __future__ import annotations

from shared.photo import JOB_KIND, PHOTO_ARRAY, PhotoRequest
from shared.protocol import Limits

from backend.jobs import JobContext, JobResult, register


class AvatarFromPhotoJob:
    name = JOB_KIND
    needs_avatar = False

    def validate(self, params: dict, arrays: dict, limits: Limits | None = None) -> None:
        PhotoRequest.from_params(params).validate(limits or Limits(), arrays)

    def run(self, ctx: JobContext) -> JobResult:
        from .pipeline import avatar_from_photo, downscale, result_wire

        req = PhotoRequest.from_params(ctx.params)
        img = downscale(req.validate(ctx.extra.get("limits") or Limits(), ctx.arrays))
        fit = avatar_from_photo(img, face_index=None if req.face_index < 0 else req.face_index,
                                imitator=req.imitator, search=req.search, fit_steps=req.fit_steps, seed=req.seed,
                                cache_root=ctx.workdir, progress=ctx.report_progress, is_cancelled=ctx.is_cancelled)
        body, arrays = result_wire(fit)
        assert PHOTO_ARRAY not in arrays
        return JobResult(body, arrays)


register(AvatarFromPhotoJob())
