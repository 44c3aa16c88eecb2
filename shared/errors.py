"""Typed errors with stable codes.

Every failure a user can cause maps to one ``MetamorphError`` subclass with a
stable ``code`` (sent on the wire) and a sentence a person can act on.
"""

from __future__ import annotations

import errno


class MetamorphError(Exception):
    """Base class. ``code`` is stable and travels in ``error`` messages."""

    code = "internal"

    def __init__(self, message: str, *, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.details = dict(details or {})

    def to_body(self) -> dict:
        return {"code": self.code, "message": self.message, "details": self.details}


class BadMessage(MetamorphError):
    code = "bad_message"


class VersionMismatch(MetamorphError):
    code = "version_mismatch"


class TooLarge(MetamorphError):
    code = "too_large"


class Busy(TooLarge):
    """This client already has as many jobs queued as the server allows it (its quota);
    a ``TooLarge`` so callers that handle size refusals handle this one too."""

    code = "busy"


class CacheUnavailable(MetamorphError):
    """A cache folder cannot be created or written (read-only, full, not a folder).
    ``details``: ``path``; the message says what to do."""

    code = "cache_unavailable"


class UnknownAvatar(MetamorphError):
    code = "unknown_avatar"


class UnknownJob(MetamorphError):
    code = "unknown_job"


class Cancelled(MetamorphError):
    code = "cancelled"


class OutOfMemory(MetamorphError):
    code = "out_of_memory"


class InvalidAvatar(MetamorphError):
    """The avatar data itself is wrong (no UVs, indices out of range, NaNs...)."""

    code = "invalid_avatar"


class InvalidParams(MetamorphError):
    """Job parameters are wrong (unknown guidance model, bad prompt weights...)."""

    code = "invalid_params"


class GuidanceUnavailable(MetamorphError):
    """A guidance model's weights cannot be loaded; never fall back to random weights."""

    code = "guidance_unavailable"


class ServerUnavailable(MetamorphError):
    """Client side: the server did not answer within the timeout / heartbeat."""

    code = "server_unavailable"


class WorkerLost(MetamorphError):
    """A cluster worker died or hung mid-job (killed, out of memory, past its deadline);
    ``details["retryable"]`` says whether running the job again may succeed."""

    code = "worker_lost"


class Internal(MetamorphError):
    code = "internal"


ERRORS_BY_CODE: dict[str, type[MetamorphError]] = {
    cls.code: cls
    for cls in (
        BadMessage, VersionMismatch, TooLarge, UnknownAvatar, UnknownJob, Cancelled,
        OutOfMemory, InvalidAvatar, InvalidParams, GuidanceUnavailable,
        ServerUnavailable, WorkerLost, Internal, Busy, CacheUnavailable,
    )
}


def error_from_body(body: dict) -> MetamorphError:
    """Rebuild a typed error from an ``error`` message body (unknown codes -> Internal)."""
    cls = ERRORS_BY_CODE.get(str(body.get("code")), Internal)
    err = cls(str(body.get("message", "unknown error")), details=body.get("details") or {})
    return err


# --- exit codes of the command line (one home for the rule every subcommand follows) ---

EXIT_BAD_INPUT = 2               # a MetamorphError or an OS error the user caused
EXIT_GUIDANCE_UNAVAILABLE = 3    # guidance weights cannot be loaded here

USER_OS_ERRNOS = frozenset({
    errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EISDIR,
    errno.ENOTDIR, errno.EEXIST, errno.EFBIG, errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTEMPTY,
    errno.EXDEV, errno.EMFILE,
})
"""OS errors a person causes (a missing or read-only path, a full disk) rather than a bug."""


def exit_code(e: BaseException) -> int | None:
    """The command-line exit code for an error a user caused, None for a bug (which keeps
    its traceback): GuidanceUnavailable -> 3, another MetamorphError or a user-caused
    OSError -> 2."""
    if isinstance(e, GuidanceUnavailable):
        return EXIT_GUIDANCE_UNAVAILABLE
    if isinstance(e, MetamorphError):
        return EXIT_BAD_INPUT
    if isinstance(e, OSError) and e.errno in USER_OS_ERRNOS:
        return EXIT_BAD_INPUT
    return None


def one_sentence(e: BaseException) -> str:
    """What to print for a user-caused error: its message, or for an OSError the reason
    and the path (``Permission denied: /out``)."""
    if isinstance(e, MetamorphError):
        return e.message
    if isinstance(e, OSError):
        where = f": {e.filename}" if e.filename else ""
        return f"{e.strerror or e}{where}."
    return str(e)
