"""Backend jobs without freezing Blender.

Network work runs in one worker thread per job, which owns its client (ZeroMQ
sockets stay in the thread that made them) and never touches ``bpy``: it gets
plain data (the extracted avatar, request params, arrays) and posts events to a
queue. The main thread drains the queue from a modal operator's timer
(:meth:`Job.tick`, a few milliseconds), updates the panel, and applies the
result itself. In background mode (``blender -b``, no timers) the operators
call :meth:`Job.run_blocking` instead.

Events (worker -> main): ("hello", dict), ("stage", str), ("progress", dict),
("result", (body, arrays)), ("error", MetamorphError), ("cancelled", None),
("uploaded", bool).

Operators do not use this module directly: :mod:`job_operator` wraps it
(send, show progress, apply in one undo step).
"""

from __future__ import annotations

import queue
import threading
import time

from ._shared import client as mm_client
from ._shared import errors

_current = None  # the running Job (one at a time)
last = None  # the last finished Job, for scripts and tests to inspect


def current():
    return _current


class Job:
    """One backend job: a worker thread plus the main-thread state it reports to."""

    def __init__(self, kind: str, work, client_opts: dict):
        """``work(client, post, cancelled)`` runs in the worker thread; ``post(kind,
        payload)`` queues an event; ``cancelled()`` is True once Cancel was pressed."""
        self.kind = kind
        self._work = work
        self._opts = dict(client_opts)
        self.events: queue.Queue = queue.Queue()
        self.cancel_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.state = "new"  # new | running | done | failed | cancelled
        self.error: errors.MetamorphError | None = None
        self.result = None   # (body, arrays) once done
        self.hello: dict = {}
        self.progress: dict = {}
        self.preview = None  # latest preview [h,w,3] uint8
        self.max_tick_s = 0.0
        self.uploaded = None  # True/False once the avatar check ran
        self.started = time.monotonic()
        self.stage_since: tuple = ("", 0.0, 0)  # (stage, monotonic time, step) when it began
        self.echo = False  # background mode: print progress lines as they arrive

    def eta_s(self) -> float | None:
        """Seconds left in the current stage from its pace so far (None = unknown)."""
        p = self.progress or {}
        step, total = int(p.get("step") or 0), int(p.get("total") or 0)
        stage, t0, s0 = self.stage_since
        if total <= 0 or step <= s0 or stage != p.get("stage"):
            return None
        return (time.monotonic() - t0) / (step - s0) * max(0, total - step)

    # -- worker side -------------------------------------------------------
    def _post(self, kind, payload=None):
        self.events.put((kind, payload))
        if self.echo and kind in ("stage", "progress"):
            p = payload if kind == "progress" else {"stage": payload}
            step = f" {p.get('step')}/{p.get('total')}" if p.get("total") else ""
            print(f"Metamorph {self.kind}: {p.get('stage') or ''}{step}", flush=True)

    def _main(self):
        client = None
        try:
            opts = dict(self._opts)
            client = mm_client.Client(opts.pop("address"), **opts)
            hello = client.hello()
            self._post("hello", hello)
            out = self._work(client, self._post, self.cancel_event.is_set)
            if self.cancel_event.is_set():
                self._post("cancelled", None)
            else:
                self._post("result", out)
        except errors.Cancelled:
            self._post("cancelled", None)
        except errors.MetamorphError as e:
            self._post("error", e)
        except Exception as e:  # a bug must end the job with a message, not hang it
            self._post("error", errors.Internal(f"{type(e).__name__}: {e}"))
        finally:
            if client is not None:
                try:
                    client.close()
                except Exception:
                    pass

    # -- main-thread side --------------------------------------------------
    def start(self):
        global _current
        if _current is not None and _current.state == "running":
            raise errors.InvalidParams("A Metamorph job is already running.")
        _current = self
        self.state = "running"
        self.thread = threading.Thread(target=self._main, name=f"metamorph-{self.kind}",
                                       daemon=True)
        self.thread.start()

    def run_blocking(self):
        """Background mode: run the worker in this thread, then drain the events."""
        global _current
        _current = self
        self.state = "running"
        self.echo = True
        try:
            self._main()
            self.tick(budget_s=1e9)
        finally:
            self.release()

    def cancel(self):
        self.cancel_event.set()

    def tick(self, budget_s: float = 0.02) -> str:
        """Drain queued events for at most ``budget_s``; returns the state.
        Timed into :attr:`max_tick_s` (the main-thread stall this job causes)."""
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < budget_s:
            try:
                kind, payload = self.events.get_nowait()
            except queue.Empty:
                break
            if kind == "hello":
                self.hello = dict(payload or {})
            elif kind in ("progress", "stage"):
                self.progress = payload if kind == "progress" else {"stage": payload}
                if self.progress.get("stage") != self.stage_since[0]:
                    self.stage_since = (self.progress.get("stage"), time.monotonic(),
                                        int(self.progress.get("step") or 0))
                prev = (payload or {}).get("preview") if kind == "progress" else None
                if prev is not None:
                    self.preview = prev
            elif kind == "result":
                self.result, self.state = payload, "done"
            elif kind == "error":
                self.error, self.state = payload, "failed"
            elif kind == "cancelled":
                self.state = "cancelled"
            elif kind == "uploaded":
                self.uploaded = bool(payload)
        self.max_tick_s = max(self.max_tick_s, time.perf_counter() - t0)
        return self.state

    def release(self):
        global _current, last
        if _current is self:
            _current = None
        last = self


def run_job(client, post, cancelled, kind: str, params: dict, arrays: dict,
            avatar=None, avatar_id: str | None = None, poll_s: float = 0.1):
    """Worker-thread body shared by Prepare and Stylize: upload the avatar unless
    the server has it (asked by content hash), submit, stream progress, cancel
    on request. Returns ``(result body, result arrays)``; raises the job's typed
    error (Cancelled after a cancel) or ServerUnavailable when the backend goes
    silent past the heartbeat timeout."""
    if avatar is not None:
        post("stage", "checking avatar")
        present = client.has_avatar(avatar_id)
        post("uploaded", not present)
        if not present:
            if cancelled():
                raise errors.Cancelled("Cancelled before upload.")
            post("stage", "uploading avatar")
            got = client.put_avatar(avatar, force=True)
            if got != avatar_id:
                raise errors.Internal(f"The server hashed the avatar as {got[:12]}, expected "
                                      f"{avatar_id[:12]}; client and server versions differ.")
    if cancelled():
        raise errors.Cancelled("Cancelled before submitting.")
    post("stage", "queued")
    job_id = client.submit(kind, params, arrays)
    cancel_sent = False
    while True:
        if cancelled() and not cancel_sent:
            client.cancel(job_id)
            cancel_sent = True
        for m in client.poll(poll_s):
            if m.job_id != job_id:
                continue
            if m.kind == "progress":
                b = m.body
                post("progress", {"stage": b.get("stage"), "step": b.get("step"),
                                  "total": b.get("total"), "losses": b.get("losses") or {},
                                  "queue_position": b.get("queue_position"),
                                  "preview": m.arrays.get("preview")})
            elif m.kind == "result":
                return m.body.get("result", {}), dict(m.arrays)
            elif m.kind == "error":
                raise errors.error_from_body(m.body)
