"""Guidance models the server keeps loaded: at most ``max_models`` (least recently
used dropped first), only names the server offers, weights only from where the
operator said.

Clients name models; the operator names sources. A client's name must be one of
the names ``hello`` reports (``available``); ``hf-hub:``, ``local-dir:`` and
anything that looks like a path are refused whatever the list says. The weights
file for a name is the operator's ``--clip-checkpoint`` entry for that exact
``name:tag``, else for its architecture, else the loader's own (Hugging Face cache).
"""

from __future__ import annotations

import collections
import ctypes
import gc
import logging
import threading
from typing import Callable

from shared.errors import InvalidParams

from backend.devices import free_device_memory

log = logging.getLogger("metamorph.server")

OPERATOR_ONLY_PREFIXES = ("hf-hub:", "local-dir:")
MAX_NAME_LENGTH = 128


def refuse_sources(name: str) -> None:
    """The rule for every guidance name a client sends: a model name, never a source
    (``hf-hub:``, ``local-dir:``) or anything that looks like a path."""
    if not isinstance(name, str) or name.startswith(OPERATOR_ONLY_PREFIXES) or name.startswith(("/", ".", "~")) \
            or "\\" in name or "/" in name.split(":", 1)[0]:
        raise InvalidParams("A client cannot name files or model sources on the server: use one of "
                            "the model names hello lists; the operator configures sources "
                            "(`metamorph serve --clip-checkpoint NAME=PATH`).")


def default_loader(name: str, checkpoint: str | None, device: str):
    """Load through :func:`backend.style.guidance.load_guidance` without its per-process
    cache (the bound here is the one that counts)."""
    from . import guidance  # imports torch + open_clip: only when a model is needed

    return guidance.load_guidance(name, checkpoint, device=device, cache=False)


def trim_heap() -> None:
    """Return freed heap memory to the OS (glibc keeps freed blocks of a worker thread's
    arena otherwise, so RSS would stay at its peak after a model is dropped)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


class GuidanceCache:
    """``check(name)`` (cheap, socket loop) and ``get(name)`` (worker thread: loads or
    reuses). Thread-safe."""

    def __init__(self, available: list[str], checkpoints: dict[str, str] | None = None, device: str = "cpu",
                 max_models: int = 2, loader: Callable | None = None):
        self.available = list(available)
        self._available = set(self.available)
        self.checkpoints = dict(checkpoints or {})
        self.device = device
        self.max_models = max(1, int(max_models))
        self.loader = loader or default_loader
        self._models: collections.OrderedDict[str, object] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0  # models loaded so far (evicted ones included)

    def check(self, name) -> str:
        """``name`` if a client may use it; raises InvalidParams saying what to use."""
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
            raise InvalidParams(f"'guidance' must name a guidance model of this server "
                                f"(hello lists them), got {str(name)[:40]!r}.")
        refuse_sources(name)
        if name not in self._available:
            shown = [m for m in self.available if m == "test-tiny" or m in self.checkpoints][:8] or self.available[:8]
            raise InvalidParams(f"This server does not offer guidance model '{name}'; use one hello lists "
                                f"(e.g. {shown}).", details={"guidance": name})
        return name

    def checkpoint_for(self, name: str) -> str | None:
        """The operator's weights file for ``name``: exact entry first, then its architecture."""
        return self.checkpoints.get(name) or self.checkpoints.get(name.split(":", 1)[0])

    def get(self, name: str):
        """The loaded model ``name`` (checked first); loads it, evicting the least
        recently used beyond ``max_models``. One load at a time."""
        self.check(name)
        with self._lock:
            if name in self._models:
                self._models.move_to_end(name)
                return self._models[name]
            dropped = []
            while len(self._models) >= self.max_models:
                old, _ = self._models.popitem(last=False)
                dropped.append(old)
                log.info("guidance cache full (%d): dropped '%s'", self.max_models, old)
            if dropped:
                gc.collect()  # models hold reference cycles: free the dropped one before the next load
                free_device_memory()  # ...give its GPU memory back
                trim_heap()  # ...and its host memory to the OS
            model = self.loader(name, self.checkpoint_for(name), self.device)
            self.loads += 1
            self._models[name] = model
            return model

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._models)
