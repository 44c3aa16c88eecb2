"""Typed errors with stable codes.

Every failure a user can cause maps to one ``MetamorphError`` subclass with a
stable ``code`` (sent on the wire) and a sentence a person can act on.
"""

from __future__ import annotations


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


class Internal(MetamorphError):
    code = "internal"


ERRORS_BY_CODE: dict[str, type[MetamorphError]] = {
    cls.code: cls
    for cls in (
        BadMessage, VersionMismatch, TooLarge, UnknownAvatar, UnknownJob, Cancelled,
        OutOfMemory, InvalidAvatar, InvalidParams, GuidanceUnavailable,
        ServerUnavailable, Internal,
    )
}


def error_from_body(body: dict) -> MetamorphError:
    """Rebuild a typed error from an ``error`` message body (unknown codes -> Internal)."""
    cls = ERRORS_BY_CODE.get(str(body.get("code")), Internal)
    err = cls(str(body.get("message", "unknown error")), details=body.get("details") or {})
    return err
