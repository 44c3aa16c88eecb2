"""Running one job in the worker thread: the handler's context, its progress
messages, and every way it can end turned into one final message.

A handler exception becomes an ``error`` for that job (``out_of_memory`` for
MemoryError / torch.cuda.OutOfMemoryError, ``cache_unavailable`` for a cache folder
that cannot be written, ``internal`` with the traceback logged for a bug) and the
server keeps serving.
"""

from __future__ import annotations

import errno
import logging
import time
import traceback
from dataclasses import dataclass, field
import threading

import numpy as np

from shared import codec, protocol
from shared.errors import CacheUnavailable, Cancelled, Internal, MetamorphError, OutOfMemory

from backend import jobs as jobs_mod
from backend.devices import free_device_memory

log = logging.getLogger("metamorph.server")

# OS errors a user (or the machine's state) causes, not bugs: full or read-only disks.
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG)


@dataclass
class Job:
    id: str
    kind: str
    handler: object
    identity: bytes        # routing id: where its messages go
    owner: str             # who may see and cancel it (CURVE key, else the connection)
    request_id: str
    params: dict
    arrays: dict
    avatar: object = None
    avatar_id: str | None = None
    state: str = "queued"
    cancel: threading.Event = field(default_factory=threading.Event)
    detached: bool = False  # its connection is gone: nothing more is sent for it
    retried: bool = False   # it was requeued once after its (Ray) worker was lost


def progress_frames(job: Job, stage, step, total, losses, preview, position) -> list:
    """A ``progress`` message of ``job`` (``preview`` dropped unless a small uint8 RGB image)."""
    body = {"job_id": job.id, "stage": str(stage), "step": int(step), "total": int(total),
            "losses": {str(k): float(v) for k, v in (losses or {}).items()},
            "queue_position": int(position)}
    arrays = {}
    if preview is not None:
        p = np.asarray(preview)
        if p.dtype != np.uint8 or p.ndim != 3 or p.shape[2] != 3 or max(p.shape[:2]) > protocol.MAX_PREVIEW_SIDE:
            log.warning("job %s: preview dropped (must be [h,w,3] uint8, side <= %d)",
                        job.id[:8], protocol.MAX_PREVIEW_SIDE)
        else:
            arrays["preview"] = p
    return protocol.encode("progress", job.request_id, body, arrays)


def run_job(job: Job, ctx: jobs_mod.JobContext, device: str) -> tuple[list, str]:
    """Run one job in this process -> (frames of its final message, final state)."""
    t0 = time.monotonic()
    log.info("job %s (%s) running", job.id[:8], job.kind)
    try:
        res = job.handler.run(ctx)
        if not isinstance(res, jobs_mod.JobResult):
            raise Internal(f"The '{job.kind}' handler returned {type(res).__name__}, not a JobResult.")
        outcome = (res.body, res.arrays)
    except BaseException as e:  # noqa: BLE001 - the worker must survive any handler failure
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        outcome = e
    return final_message(job, outcome, device, t0)


def final_message(job: Job, outcome, device: str, t0: float) -> tuple[list, str]:
    """A job's last message from its ``outcome`` (``(body, arrays)`` or the exception it
    ended with), wherever it ran -> (frames, final state)."""
    try:
        if isinstance(outcome, BaseException):
            raise outcome
        body, arrays = outcome
        if job.cancel.is_set():
            raise Cancelled("The job was cancelled.")
        arrays = {k: codec.wire_array(v) for k, v in arrays.items()}
        for k, a in arrays.items():
            codec.check_values(k, a)  # the client would reject it anyway; fail here, with the job id
        frames = protocol.encode("result", job.request_id, {"job_id": job.id, "result": body}, arrays)
        log.info("job %s done in %.2f s", job.id[:8], time.monotonic() - t0)
        return frames, "done"
    except Cancelled as e:
        log.info("job %s cancelled after %.2f s", job.id[:8], time.monotonic() - t0)
        return protocol.encode_error(e, job.request_id, job.id), "cancelled"
    except MetamorphError as e:
        log.info("job %s failed: %s", job.id[:8], e)
        return protocol.encode_error(e, job.request_id, job.id), "failed"
    except BaseException as e:  # noqa: BLE001
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        return protocol.encode_error(typed_error(job, e, device), job.request_id, job.id), "failed"


def typed_error(job: Job, e: BaseException, device: str) -> MetamorphError:
    """The typed error for an exception a handler did not type itself."""
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
        free_device_memory()
        return OutOfMemory(f"The '{job.kind}' job ran out of memory on {device}: lower the resolution, the "
                           f"number of cameras/frames, or the batch, then try again.", details={"device": device})
    if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
        where = e.filename or "the server's cache folder"
        log.warning("job %s: cannot write %s: %s", job.id[:8], where, e)
        return CacheUnavailable(f"The '{job.kind}' job could not write {where} ({e.strerror}): the server's "
                                f"operator must free disk space there or make it writable (serve --cache-dir).",
                                details={"path": str(where), "errno": e.errno})
    log.error("job %s crashed:\n%s", job.id[:8], traceback.format_exc())
    return Internal(f"The '{job.kind}' job failed: {type(e).__name__}: {e}")
