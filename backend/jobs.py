"""The job handler interface the server runs, and the registry of handlers.

A handler is a small object with a ``name``, a ``validate`` that rejects bad
parameters before anything is queued, and a ``run`` that does the work in the
server's worker thread, reporting progress and checking for cancellation at
every step. ``stylize`` and ``prepare`` plug in here; ``selfcheck`` is the
built-in one used by tests and the README's self-check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from shared.avatar import AvatarData


@dataclass
class JobContext:
    """What a handler sees while it runs.

    ``report_progress(stage, step, total, losses=None, preview=None)`` streams a
    ``progress`` message to the submitting client (``preview``: small
    ``[h,w,3]`` uint8 sRGB image, row 0 at top). ``is_cancelled()`` turns True
    once the client cancels or disappears; handlers check it every step and
    raise :class:`shared.errors.Cancelled` (or just return early).
    """

    job_id: str
    params: dict
    arrays: dict[str, np.ndarray]
    avatar: AvatarData | None
    avatar_id: str | None
    report_progress: Callable[..., None]
    is_cancelled: Callable[[], bool]
    device: str = "cpu"
    workdir: str | None = None  # server-owned scratch/cache folder, never client-named
    extra: dict = field(default_factory=dict)


@dataclass
class JobResult:
    """A handler's answer: a msgpack-able body plus named arrays sent as frames."""

    body: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


class JobHandler(Protocol):
    name: str
    needs_avatar: bool

    def validate(self, params: dict, arrays: dict[str, np.ndarray]) -> None:
        """Raise shared.errors.InvalidParams (or another MetamorphError) on bad input."""

    def run(self, ctx: JobContext) -> JobResult:
        ...


_REGISTRY: dict[str, JobHandler] = {}


def register(handler: JobHandler) -> JobHandler:
    _REGISTRY[handler.name] = handler
    return handler


def handlers() -> dict[str, JobHandler]:
    """All registered handlers, importing the built-in handler modules on first use."""
    _load_builtin()
    return dict(_REGISTRY)


def _load_builtin() -> None:
    import importlib

    for mod in BUILTIN_HANDLER_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:  # a module not written yet must not break the server
            if e.name != mod:
                raise


# Modules that call register() at import time. Add yours here.
BUILTIN_HANDLER_MODULES = [
    "backend.selfcheck",
    "backend.style.jobs",
]
