"""The Ray actor that runs Metamorph jobs: the same handlers as the in-process server.

One actor holds one device (a GPU, or a CPU slot with ``torch_threads`` threads).
It is a threaded actor: ``run`` executes a job while ``take_events`` and ``cancel``
are answered concurrently, so the front end can stream progress and stop a job
within one step. Nothing here talks to ZeroMQ: the front end forwards what the
actor reports.

Events are ``("progress", stage, step, total, losses, preview)`` tuples, drained
by the front end with :meth:`JobWorker.take_events`.
"""

from __future__ import annotations

import logging
import os
import threading
import traceback

from shared.errors import Internal, MetamorphError, OutOfMemory

from backend import jobs as jobs_mod
from backend.style.guidance_cache import GuidanceCache

log = logging.getLogger("metamorph.cluster")


class JobWorker:
    """Plain class; :func:`backend.cluster.pool.actor_class` wraps it with ``ray.remote``
    (kept undecorated so it is importable and testable without Ray)."""

    def __init__(self, device: str, cache_root: str, extra: dict | None = None, torch_threads: int = 0,
                 guidance: dict | None = None):
        """``guidance``: {"available": [names], "checkpoints": {name: path}, "max_models": N}, the
        front end's guidance policy; each worker keeps its own bounded cache of loaded models."""
        # torch is imported in the actor's own process, never in the front end.
        import torch

        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        self.device = device
        self.cache_root = cache_root
        self.extra = dict(extra or {})
        g = guidance or {}
        self.guidance = (GuidanceCache(g["available"], g.get("checkpoints"), device, g.get("max_models", 2))
                         if g.get("available") else None)
        self._events: dict[str, list] = {}
        self._cancel: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def ping(self) -> dict:
        """-> {"pid", "device"}: the front end's liveness and placement check."""
        return {"pid": os.getpid(), "device": self.device}

    def run(self, job_id: str, kind: str, params: dict, arrays: dict, avatar, avatar_id) -> tuple:
        """Run one job -> ``("result", body, arrays)`` or ``("error", error_body)``.

        ``avatar`` arrives resolved from the object store (a read-only
        :class:`shared.avatar.AvatarData`); handlers never modify it.
        """
        cancel = threading.Event()
        with self._lock:
            self._events[job_id] = []
            self._cancel[job_id] = cancel

        def report_progress(stage, step, total, losses=None, preview=None):
            with self._lock:
                self._events.setdefault(job_id, []).append(("progress", stage, step, total, losses, preview))

        handler = jobs_mod.handlers()[kind]
        ctx = jobs_mod.JobContext(job_id=job_id, params=params, arrays=arrays, avatar=avatar, avatar_id=avatar_id,
                                  report_progress=report_progress, is_cancelled=cancel.is_set,
                                  device=self.device, workdir=self.cache_root, extra=dict(self.extra),
                                  guidance=self.guidance.get if self.guidance else None)
        try:
            res = handler.run(ctx)
            return ("result", res.body, dict(res.arrays))
        except MetamorphError as e:
            return ("error", e.to_body())
        except MemoryError:
            return ("error", OutOfMemory(f"The '{kind}' job ran out of memory on a worker ({self.device}).").to_body())
        except Exception as e:  # noqa: BLE001 - the actor must survive any handler failure
            if type(e).__name__ == "OutOfMemoryError":
                return ("error", OutOfMemory(f"The '{kind}' job ran out of memory on {self.device}: lower the "
                                             f"resolution, cameras or frames and try again.").to_body())
            log.error("job %s crashed on a worker:\n%s", job_id[:8], traceback.format_exc())
            return ("error", Internal(f"The '{kind}' job failed: {type(e).__name__}: {e}").to_body())
        finally:
            with self._lock:
                self._cancel.pop(job_id, None)

    def take_events(self, job_id: str) -> list:
        """Progress events reported since the last call (and forget them)."""
        with self._lock:
            ev = self._events.get(job_id, [])
            self._events[job_id] = []
            if job_id not in self._cancel:  # finished: nothing more will come
                self._events.pop(job_id, None)
            return ev

    def cancel(self, job_id: str) -> bool:
        with self._lock:
            ev = self._cancel.get(job_id)
        if ev is not None:
            ev.set()
        return ev is not None
