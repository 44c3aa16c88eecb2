"""The job handler interface the server runs, and the registry of handlers.

A handler is a small object with a ``name``, a ``validate`` that rejects bad
parameters before anything is queued, and a ``run`` that does the work in the
server's worker thread, reporting progress and checking for cancellation at
every step. ``stylize`` and ``prepare`` plug in here; ``selfcheck`` is the
built-in one used by tests and the README's self-check.

The built-in handler modules are listed in :data:`BUILTIN_HANDLERS` with the job
kinds each must register; :func:`handlers` imports every one of them and fails
loudly (:class:`HandlerImportError`) when a module is missing, does not import, or
does not register its kinds, so a renamed module stops the server at start instead
of shipping a server without ``stylize``.
"""

from __future__ import annotations

import importlib
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

    ``guidance(name)`` (set by the server; None elsewhere) returns the loaded guidance
    model ``name`` from the server's bounded cache (at most ``max_guidance_models``
    kept, least recently used dropped first). It accepts only the names the server
    offers in ``hello`` (never ``hf-hub:``/``local-dir:``/paths) and uses the weights
    the operator configured; raises InvalidParams / GuidanceUnavailable. Handlers
    use it when present instead of loading a model themselves.
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
    guidance: Callable[[str], object] | None = None


@dataclass
class JobResult:
    """A handler's answer: a msgpack-able body plus named arrays sent as frames."""

    body: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


class JobHandler(Protocol):
    name: str
    needs_avatar: bool

    def validate(self, params: dict, arrays: dict[str, np.ndarray], limits=None) -> None:
        """Raise shared.errors.InvalidParams (or another MetamorphError) on bad input.

        ``limits``: the server's :class:`shared.protocol.Limits` (None: the defaults).
        Runs on the server's socket loop: cheap checks only (no torch, no model).
        Anything but a MetamorphError raised here is a handler bug: the server logs
        it with its traceback, answers the client ``invalid_params`` and keeps serving."""

    def run(self, ctx: JobContext) -> JobResult:
        ...


_REGISTRY: dict[str, JobHandler] = {}


def register(handler: JobHandler) -> JobHandler:
    _REGISTRY[handler.name] = handler
    return handler


class HandlerImportError(RuntimeError):
    """A built-in handler module is missing, fails to import or does not register
    the job kinds it is listed with: the server must not start without them."""


# Built-in handler modules -> the job kinds each registers at import. Add yours here.
BUILTIN_HANDLERS: dict[str, tuple[str, ...]] = {
    "backend.selfcheck": ("selfcheck",),
    "backend.style.jobs": ("stylize", "prepare"),
    "backend.photo.jobs": ("avatar_from_photo",),
    "backend.expression.jobs": ("expression_from_text", "expression_from_video"),
    "backend.textavatar.jobs": ("avatar_from_text",),
}


def load_handler_modules(modules: dict[str, tuple[str, ...]]) -> None:
    """Import each module and check it registered its kinds; raises HandlerImportError."""
    for mod, kinds in modules.items():
        try:
            importlib.import_module(mod)
        except Exception as e:
            raise HandlerImportError(f"Job handler module '{mod}' (job kinds {list(kinds)}) cannot be "
                                     f"imported: {type(e).__name__}: {e}. Fix it or its entry in "
                                     f"backend.jobs.BUILTIN_HANDLERS.") from e
        missing = [k for k in kinds if k not in _REGISTRY]
        if missing:
            raise HandlerImportError(f"Job handler module '{mod}' imported but did not register job "
                                     f"kinds {missing}; it registers with backend.jobs.register().")


def handlers() -> dict[str, JobHandler]:
    """All registered handlers, importing the built-in handler modules on first use."""
    load_handler_modules(BUILTIN_HANDLERS)
    return dict(_REGISTRY)
