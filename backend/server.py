"""``metamorph serve``: the ZeroMQ ROUTER server that caches avatars and runs jobs.

Threads and who owns what (ZeroMQ sockets are not thread-safe):

    loop thread    owns the ROUTER socket. Decodes and validates every message
                   (shared.protocol.decode), answers hello/put_avatar/has_avatar/
                   status/cancel/heartbeat itself, validates and queues jobs,
                   forwards what the worker emits, cancels the jobs of clients
                   that went silent. Never waits on a job.
    worker thread  runs one job at a time (the device is shared), FIFO. It
                   emits progress/result/error through an inproc PAIR socket
                   that the loop forwards to the ROUTER, zero-copy.

A handler exception becomes an ``error`` for that job (``internal``, or
``out_of_memory`` for MemoryError / torch.cuda.OutOfMemoryError) and the server
keeps serving. The server only writes under its own cache directory.
"""

from __future__ import annotations

import argparse
import collections
import ipaddress
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import zmq
import zmq.auth

from shared import PROTOCOL_VERSION, avatar as avatar_mod, codec, protocol
from shared.errors import (Cancelled, Internal, InvalidAvatar, InvalidParams, MetamorphError,
                           OutOfMemory, TooLarge, UnknownAvatar, UnknownJob)

from . import jobs as jobs_mod

log = logging.getLogger("metamorph.server")

DEFAULT_BIND = "tcp://127.0.0.1:5557"
SERVER_VERSION = "0.1.0"
FINISHED_JOBS_KEPT = 256


# --- configuration ---------------------------------------------------------------

@dataclass
class ServerConfig:
    bind: str = DEFAULT_BIND
    device: str = "auto"                  # auto | cpu | cuda | cuda:N
    cache_dir: str | None = None          # server-owned; default ~/.cache/metamorph
    client_timeout_s: float = 30.0        # silent client -> its jobs are cancelled
    heartbeat_s: float = 2.0              # ZMTP heartbeat interval
    avatar_cache_size: int = 8            # avatars kept in memory (LRU)
    avatar_cache_mb: int = 4096           # ...and their bytes
    max_queue: int = 32                   # queued + running jobs
    limits: protocol.Limits = field(default_factory=protocol.Limits)
    curve_secret_key: str | None = None   # path to a zmq.auth secret key file
    curve_authorized_dir: str | None = None
    insecure: bool = False
    ready_file: str | None = None         # JSON {endpoint, pid} written once bound (tests)
    # Guidance weights the operator keeps on this machine: "ViT-B-32" (any tag) or an
    # exact "name:tag" -> weights file. Clients name models, never paths.
    clip_checkpoints: dict[str, str] = field(default_factory=dict)


class ConfigError(Exception):
    """The server refuses to start; the message says what to change."""


def is_loopback(endpoint: str) -> bool:
    """True for endpoints only this machine can reach (loopback TCP, ipc, inproc)."""
    parts = urlsplit(endpoint)
    if parts.scheme in ("ipc", "inproc"):
        return True
    if parts.scheme != "tcp":
        return False
    host = parts.netloc.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", an interface name or a host name: reachable from outside
        return False


def check_checkpoints(cfg: ServerConfig) -> None:
    """Every configured guidance weights file must exist before the server starts."""
    for name, path in cfg.clip_checkpoints.items():
        if not Path(path).is_file():
            raise ConfigError(f"--clip-checkpoint {name}={path}: no such file. Give the path of an "
                              f"open_clip weights file for the '{name.split(':')[0]}' architecture.")


def check_security(cfg: ServerConfig) -> str:
    """-> "curve" | "insecure" | "loopback"; raises ConfigError when the bind is
    exposed without CURVE and without --insecure."""
    if cfg.curve_secret_key or cfg.curve_authorized_dir:
        if not (cfg.curve_secret_key and cfg.curve_authorized_dir):
            raise ConfigError("CURVE needs both --curve-secret-key FILE and "
                              "--curve-authorized-dir DIR (create keys with `metamorph keys generate`).")
        if not Path(cfg.curve_secret_key).is_file():
            raise ConfigError(f"CURVE secret key file {cfg.curve_secret_key} does not exist.")
        if not Path(cfg.curve_authorized_dir).is_dir():
            raise ConfigError(f"CURVE authorized-keys directory {cfg.curve_authorized_dir} does not exist.")
        return "curve"
    if is_loopback(cfg.bind):
        return "loopback"
    if cfg.insecure:
        return "insecure"
    raise ConfigError(
        f"Refusing to listen on {cfg.bind} without encryption: anyone who can reach it could "
        f"run jobs. Configure CURVE (--curve-secret-key FILE --curve-authorized-dir DIR; create "
        f"keys with `metamorph keys generate`), bind to tcp://127.0.0.1, or pass --insecure on a "
        f"network you trust.")


def resolve_device(requested: str) -> str:
    """"cpu" without touching torch; otherwise import torch (lazily, here only)."""
    if requested == "cpu":
        return "cpu"
    try:
        import torch
    except ImportError:
        if requested == "auto":
            return "cpu"
        raise ConfigError(f"--device {requested} needs torch, which is not installed.")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {requested} was asked for but CUDA is not available here.")
    return requested


def guidance_models() -> list[str]:
    try:
        from backend.style import guidance
    except ImportError:
        return []
    try:
        return list(guidance.available_models())
    except Exception as e:  # a broken optional part must not stop the server
        log.warning("guidance.available_models() failed: %s", e)
        return []


# --- state -------------------------------------------------------------------------

def avatar_nbytes(av: avatar_mod.AvatarData) -> int:
    arrays = [av.vertices, av.faces, av.uvs, av.uv_faces, av.face_material, av.blendshapes]
    return sum(int(a.nbytes) for a in arrays) + sum(int(t.image.nbytes) for t in av.texture_sets)


class AvatarCache:
    """Avatars by content hash, least recently used evicted first, bounded in count
    and bytes (the newest is always kept). Loop thread only."""

    def __init__(self, max_items: int, max_bytes: int = 4 << 30):
        self.max_items = max(1, int(max_items))
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self._items: collections.OrderedDict[str, avatar_mod.AvatarData] = collections.OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def get(self, key: str) -> avatar_mod.AvatarData | None:
        av = self._items.get(key)
        if av is not None:
            self._items.move_to_end(key)
        return av

    def put(self, key: str, av: avatar_mod.AvatarData) -> None:
        if key in self._items:
            self.nbytes -= avatar_nbytes(self._items[key])
        self._items[key] = av
        self._items.move_to_end(key)
        self.nbytes += avatar_nbytes(av)
        while len(self._items) > 1 and (len(self._items) > self.max_items or self.nbytes > self.max_bytes):
            old, gone = self._items.popitem(last=False)
            self.nbytes -= avatar_nbytes(gone)
            log.info("avatar cache full: evicted %s", old[:12])


@dataclass
class Job:
    id: str
    kind: str
    handler: object
    identity: bytes
    request_id: str
    params: dict
    arrays: dict
    avatar: object = None
    avatar_id: str | None = None
    state: str = "queued"
    cancel: threading.Event = field(default_factory=threading.Event)


# --- server -------------------------------------------------------------------------

class Server:
    """One ROUTER socket, one worker. ``run()`` blocks until ``stop()`` or a signal."""

    def __init__(self, cfg: ServerConfig, handlers: dict | None = None):
        self.cfg = cfg
        self.limits = cfg.limits
        self.security = check_security(cfg)
        check_checkpoints(cfg)
        self.handlers = dict(handlers) if handlers is not None else jobs_mod.handlers()
        self.device = resolve_device(cfg.device)
        # Models with operator-configured local weights first: those work offline.
        self.guidance_models = list(cfg.clip_checkpoints) + [
            m for m in guidance_models() if m not in cfg.clip_checkpoints]
        self.versions = _versions()
        self.cache_dir = Path(cfg.cache_dir or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                              / "metamorph").resolve()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.avatars = AvatarCache(cfg.avatar_cache_size, cfg.avatar_cache_mb << 20)
        self.jobs: dict[str, Job] = {}
        self.queue: collections.deque[Job] = collections.deque()
        self.running: Job | None = None
        self.last_seen: dict[bytes, float] = {}
        self._lock = threading.Lock()  # jobs, queue, running
        self._work_ready = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._emit_lock = threading.Lock()
        self._loop_thread: threading.Thread | None = None
        self.endpoint: str | None = None
        self.ctx = zmq.Context()
        self._auth = None

    # sockets ---------------------------------------------------------------------
    def _open(self) -> None:
        router = self.ctx.socket(zmq.ROUTER)
        # Frames larger than this make libzmq drop the connection before we see them.
        router.setsockopt(zmq.MAXMSGSIZE, max(self.limits.max_message_bytes, self.limits.max_header_bytes))
        router.setsockopt(zmq.LINGER, 200)
        router.setsockopt(zmq.SNDHWM, 10000)
        router.setsockopt(zmq.RCVHWM, 1000)
        router.setsockopt(zmq.ROUTER_MANDATORY, 0)  # vanished peer: drop, never raise
        router.setsockopt(zmq.ROUTER_HANDOVER, 1)   # a reconnecting client keeps its identity
        ivl = max(100, int(self.cfg.heartbeat_s * 1000))
        router.setsockopt(zmq.HEARTBEAT_IVL, ivl)
        router.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * ivl)
        router.setsockopt(zmq.HEARTBEAT_TTL, 3 * ivl)
        if self.security == "curve":
            from zmq.auth.thread import ThreadAuthenticator
            pub, sec = zmq.auth.load_certificate(self.cfg.curve_secret_key)
            if not sec:
                raise ConfigError(f"{self.cfg.curve_secret_key} holds no secret key; pass the "
                                  f"'.key_secret' file written by `metamorph keys generate`.")
            self._auth = ThreadAuthenticator(self.ctx, log=logging.getLogger("metamorph.auth"))
            self._auth.start()
            self._auth.configure_curve(domain="*", location=str(self.cfg.curve_authorized_dir))
            router.curve_secretkey = sec
            router.curve_publickey = pub
            router.curve_server = True
        router.bind(self.cfg.bind)
        self.endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.router = router
        self.inbox = self.ctx.socket(zmq.PAIR)  # worker -> loop
        self.inbox.setsockopt(zmq.LINGER, 0)
        self.inbox.bind(f"inproc://metamorph-worker-{id(self)}")
        self.outbox = self.ctx.socket(zmq.PAIR)  # used by any non-loop thread, under _emit_lock
        self.outbox.setsockopt(zmq.LINGER, 0)
        self.outbox.setsockopt(zmq.SNDHWM, 0)
        self.outbox.connect(f"inproc://metamorph-worker-{id(self)}")

    def _emit(self, identity: bytes, frames: list) -> None:
        """Send to a client from any thread: directly on the loop thread, else via inproc."""
        if threading.current_thread() is self._loop_thread:
            self.router.send_multipart([identity, *frames], copy=False)
        else:
            with self._emit_lock:
                self.outbox.send_multipart([identity, *frames], copy=False)

    def _reply_error(self, identity: bytes, err: MetamorphError, rid: str, job_id: str | None = None):
        self._emit(identity, protocol.encode_error(err, rid, job_id))

    # lifecycle -------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        self._open()
        self._loop_thread = threading.current_thread()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: self._stop.set())
        if self.security == "insecure":
            log.warning("!" * 72)
            log.warning("INSECURE: listening on %s WITHOUT encryption or authentication (--insecure).",
                        self.endpoint)
            log.warning("Anyone who can reach this address can upload avatars and run jobs.")
            log.warning("!" * 72)
        log.info("Metamorph server %s (protocol %d) listening on %s; device %s; jobs %s; security %s",
                 SERVER_VERSION, PROTOCOL_VERSION, self.endpoint, self.device,
                 sorted(self.handlers), self.security)
        worker = threading.Thread(target=self._work, name="metamorph-worker", daemon=True)
        worker.start()
        if self.cfg.ready_file:
            tmp = Path(str(self.cfg.ready_file) + ".tmp")
            tmp.write_text(json.dumps({"endpoint": self.endpoint, "pid": os.getpid()}))
            tmp.replace(self.cfg.ready_file)
        try:
            self._loop()
        finally:
            log.info("shutting down")
            with self._lock:
                for job in self.jobs.values():
                    job.cancel.set()
                self._work_ready.notify_all()
            worker.join(timeout=10)
            if worker.is_alive():
                log.warning("the running job did not stop within 10 s; exiting anyway")
            # Forward what the worker said last (e.g. "cancelled") before leaving, and tell
            # clients whose jobs never started.
            while self.inbox.poll(0, zmq.POLLIN):
                self.router.send_multipart(self.inbox.recv_multipart(copy=False), copy=False)
            for job in list(self.queue):
                self._reply_error(job.identity, Cancelled("The server shut down before the job "
                                                          "started; submit it again."),
                                  job.request_id, job.id)
            self.router.close(linger=500)
            for s in (self.inbox, self.outbox):
                s.close(linger=0)
            if self._auth is not None:
                self._auth.stop()
            self.ctx.term()
            log.info("Metamorph server stopped")
        return 0

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.inbox, zmq.POLLIN)
        next_sweep = 0.0
        while not self._stop.is_set():
            events = dict(poller.poll(100))
            if self.inbox in events:
                # Drain what the worker produced first: results are what clients wait for.
                for _ in range(1000):
                    try:
                        frames = self.inbox.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self.router.send_multipart(frames, copy=False)
            if self.router in events:
                for _ in range(100):
                    try:
                        frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    try:
                        self._handle(frames)
                    except Exception:  # even a failing error reply must not stop the loop
                        log.exception("unexpected failure handling a message")
            now = time.monotonic()
            if now >= next_sweep:
                self._sweep_silent_clients(now)
                next_sweep = now + 0.25

    # message handling (loop thread) ----------------------------------------------
    def _handle(self, frames: list) -> None:
        identity = frames[0].bytes
        body_frames = frames[1:]
        self.last_seen[identity] = time.monotonic()
        try:
            msg = protocol.decode(body_frames, self.limits, from_client=True)
        except MetamorphError as e:
            log.debug("rejected message: %s", e)
            self._reply_error(identity, e, protocol.peek_id(body_frames) if body_frames else "")
            return
        try:
            getattr(self, "_on_" + msg.kind)(identity, msg)
        except MetamorphError as e:
            self._reply_error(identity, e, msg.id)
        except Exception as e:  # a bug in request handling must not stop the server
            log.exception("error handling %s", msg.kind)
            self._reply_error(identity, Internal(f"The server failed handling '{msg.kind}': "
                                                 f"{type(e).__name__}: {e}"), msg.id)

    def _reply(self, identity: bytes, msg: protocol.Message, body: dict, arrays=None) -> None:
        self._emit(identity, protocol.encode(msg.kind, msg.id, body, arrays))

    def _on_hello(self, identity, msg):
        self._reply(identity, msg, {
            "protocol": PROTOCOL_VERSION, "server_version": SERVER_VERSION, "versions": self.versions,
            "device": self.device,
            "limits": self.limits.to_dict(), "job_kinds": sorted(self.handlers),
            "guidance_models": self.guidance_models, "heartbeat_s": self.cfg.heartbeat_s,
            "client_timeout_s": self.cfg.client_timeout_s, "curve": self.security == "curve",
        })

    def _on_heartbeat(self, identity, msg):
        self._reply(identity, msg, {"time": time.time()})

    def _on_has_avatar(self, identity, msg):
        aid = msg.body["avatar_id"]
        self._reply(identity, msg, {"avatar_id": aid, "present": aid in self.avatars})

    def _on_put_avatar(self, identity, msg):
        av = avatar_mod.from_wire(msg.body, msg.arrays)
        try:
            avatar_mod.validate(av, self.limits.avatar_limits())
        except (TypeError, ValueError, IndexError) as e:  # malformed beyond what validate names
            raise InvalidAvatar(f"The avatar message is malformed: {e}") from e
        aid = avatar_mod.content_hash(av)
        cached = aid in self.avatars
        if not cached:
            _freeze(av)  # jobs share the cached avatar: none may modify it
            self.avatars.put(aid, av)
            log.info("avatar %s: %d vertices, %d faces, %d blendshapes", aid[:12], av.num_vertices,
                     av.num_faces, len(av.blendshape_names))
        else:
            self.avatars.get(aid)
        self._reply(identity, msg, {"avatar_id": aid, "cached": cached})

    def _on_submit(self, identity, msg):
        kind = msg.body["job"]
        params = msg.body.get("params") or {}
        handler = self.handlers.get(kind)
        if handler is None:
            raise InvalidParams(f"Unknown job kind '{kind}'; this server runs {sorted(self.handlers)}.")
        av = aid = None
        if getattr(handler, "needs_avatar", False) or "avatar_id" in params:
            aid = params.get("avatar_id")
            if not isinstance(aid, str):
                raise InvalidParams(f"The '{kind}' job needs params.avatar_id (the id put_avatar returned).")
            av = self.avatars.get(aid)
            if av is None:
                raise UnknownAvatar(f"The server does not hold avatar {aid[:12]}... (evicted, or the "
                                    f"server restarted); upload it again with put_avatar.",
                                    details={"avatar_id": aid})
        try:
            handler.validate(params, msg.arrays)
        except MetamorphError:
            raise
        except (ValueError, TypeError, KeyError) as e:
            raise InvalidParams(f"Invalid parameters for '{kind}': {e}") from e
        with self._lock:
            active = len(self.queue) + (self.running is not None)
            if active >= self.cfg.max_queue:
                raise TooLarge(f"The server's job queue is full ({active} jobs); wait for some to "
                               f"finish or cancel them.")
            job = Job(id=protocol.new_id(), kind=kind, handler=handler, identity=identity,
                      request_id=msg.id, params=params, arrays=msg.arrays, avatar=av, avatar_id=aid)
            self.jobs[job.id] = job
            self.queue.append(job)
            position = active  # jobs ahead of it, the running one included
            self._work_ready.notify()
        log.info("job %s (%s) queued at position %d", job.id[:8], kind, position)
        self._reply(identity, msg, {"job_id": job.id, "queue_position": position})
        self._emit(identity, self._progress_frames(job, "queued", 0, 0, None, None, position))

    def _owned_job(self, identity: bytes, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None or job.identity != identity:
            raise UnknownJob(f"There is no job {job_id[:12]} for this client (finished long ago, "
                             f"or submitted from another connection).", details={"job_id": job_id})
        return job

    def _on_cancel(self, identity, msg):
        job = self._owned_job(identity, msg.body["job_id"])
        state = self._cancel(job, "the client asked")
        self._reply(identity, msg, {"job_id": job.id, "state": state})

    def _cancel(self, job: Job, why: str) -> str:
        """Cancel a job from the loop thread; -> its state afterwards."""
        with self._lock:
            if job.state == "queued":
                self.queue.remove(job)
                job.state = "cancelled"
                job.cancel.set()
                dequeued = True
            else:
                dequeued = False
                if job.state == "running":
                    job.cancel.set()
            state = job.state
        if dequeued:
            log.info("job %s cancelled while queued (%s)", job.id[:8], why)
            self._reply_error(job.identity, Cancelled(f"The job was cancelled ({why})."),
                              job.request_id, job.id)
            self._announce_queue()
            self._trim_finished()
        elif state == "running":
            log.info("job %s cancelling (%s)", job.id[:8], why)
            state = "cancelling"
        return state

    def _on_status(self, identity, msg):
        jid = msg.body.get("job_id")
        with self._lock:
            if jid is not None:
                mine = [self._owned_job(identity, jid)]
            else:
                mine = [j for j in self.jobs.values() if j.identity == identity]
            queued = list(self.queue)
            rows = [{"job_id": j.id, "kind": j.kind, "state": j.state,
                     "queue_position": self._position(j, queued)} for j in mine]
            body = {"jobs": rows, "running": self.running is not None, "queued": len(queued)}
        self._reply(identity, msg, body)

    def _position(self, job: Job, queued: list) -> int:
        if job.state == "running":
            return 0
        if job.state == "queued" and job in queued:
            return queued.index(job) + (self.running is not None)
        return -1

    def _sweep_silent_clients(self, now: float) -> None:
        timeout = self.cfg.client_timeout_s
        stale = {i for i, t in self.last_seen.items() if now - t > timeout}
        if not stale:
            return
        with self._lock:
            victims = [j for j in self.jobs.values()
                       if j.identity in stale and j.state in ("queued", "running") and not j.cancel.is_set()]
        for job in victims:
            log.warning("client silent for more than %.1f s: cancelling its job %s", timeout, job.id[:8])
            self._cancel(job, f"the client sent nothing for {timeout:.0f} s")
        with self._lock:
            busy = {j.identity for j in self.jobs.values() if j.state in ("queued", "running")}
        for i in stale - busy:
            del self.last_seen[i]

    def _trim_finished(self) -> None:
        with self._lock:
            done = [k for k, j in self.jobs.items() if j.state in ("done", "failed", "cancelled")]
            for k in done[:max(0, len(done) - FINISHED_JOBS_KEPT)]:
                del self.jobs[k]

    # progress ---------------------------------------------------------------------
    def _progress_frames(self, job: Job, stage, step, total, losses, preview, position) -> list:
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

    def _announce_queue(self) -> None:
        """Tell every queued job its new position (any thread)."""
        with self._lock:
            queued = list(self.queue)
            offset = self.running is not None
        for i, job in enumerate(queued):
            self._emit(job.identity, self._progress_frames(job, "queued", 0, 0, None, None, i + offset))

    # worker thread ----------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._lock:
                while not self.queue and not self._stop.is_set():
                    self._work_ready.wait(0.5)
                if self._stop.is_set():
                    return
                job = self.queue.popleft()
                job.state = "running"
                self.running = job
            # Tell its client it left the queue, and the others that they moved up.
            self._emit(job.identity, self._progress_frames(job, "started", 0, 0, None, None, 0))
            self._announce_queue()
            frames, state = self._run_job(job)
            with self._lock:
                job.state = state
                self.running = None
                job.arrays = {}  # release input frames
                job.avatar = None
            self._emit(job.identity, frames)
            self._trim_finished()

    def _run_job(self, job: Job) -> tuple[list, str]:
        """Run one job -> (frames of its final message, final state)."""
        t0 = time.monotonic()

        def report_progress(stage, step, total, losses=None, preview=None):
            self._emit(job.identity, self._progress_frames(job, stage, step, total, losses, preview, 0))

        ctx = jobs_mod.JobContext(job_id=job.id, params=job.params, arrays=job.arrays, avatar=job.avatar,
                                  avatar_id=job.avatar_id, report_progress=report_progress,
                                  is_cancelled=job.cancel.is_set, device=self.device,
                                  workdir=str(self.cache_dir),
                                  extra={"clip_checkpoints": dict(self.cfg.clip_checkpoints)})
        log.info("job %s (%s) running", job.id[:8], job.kind)
        try:
            res = job.handler.run(ctx)
            if job.cancel.is_set():
                raise Cancelled("The job was cancelled.")
            if not isinstance(res, jobs_mod.JobResult):
                raise Internal(f"The '{job.kind}' handler returned {type(res).__name__}, not a JobResult.")
            arrays = {k: codec.wire_array(v) for k, v in res.arrays.items()}
            for k, a in arrays.items():
                codec.check_values(k, a)  # the client would reject it anyway; fail here, with the job id
            frames = protocol.encode("result", job.request_id, {"job_id": job.id, "result": res.body}, arrays)
            log.info("job %s done in %.2f s", job.id[:8], time.monotonic() - t0)
            return frames, "done"
        except Cancelled as e:
            log.info("job %s cancelled after %.2f s", job.id[:8], time.monotonic() - t0)
            return protocol.encode_error(e, job.request_id, job.id), "cancelled"
        except MetamorphError as e:
            log.info("job %s failed: %s", job.id[:8], e)
            return protocol.encode_error(e, job.request_id, job.id), "failed"
        except BaseException as e:  # noqa: BLE001 - the worker must survive any handler failure
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
                _free_device_memory()
                err = OutOfMemory(f"The '{job.kind}' job ran out of memory on {self.device}: "
                                  f"lower the resolution, the number of cameras/frames, or the "
                                  f"batch, then try again.", details={"device": self.device})
            else:
                log.error("job %s crashed:\n%s", job.id[:8], traceback.format_exc())
                err = Internal(f"The '{job.kind}' job failed: {type(e).__name__}: {e}")
            return protocol.encode_error(err, job.request_id, job.id), "failed"


def _freeze(av: avatar_mod.AvatarData) -> None:
    arrays = [av.vertices, av.faces, av.uvs, av.uv_faces, av.face_material, av.blendshapes]
    arrays += [t.image for t in av.texture_sets]
    if av.track is not None:
        arrays += [av.track.frames, av.track.weights]
    for a in arrays:
        if isinstance(a, np.ndarray):
            a.flags.writeable = False


def _versions() -> dict:
    from importlib import metadata

    out = {"server": SERVER_VERSION, "protocol": PROTOCOL_VERSION,
           "python": ".".join(map(str, sys.version_info[:3])), "numpy": np.__version__,
           "pyzmq": zmq.__version__, "libzmq": zmq.zmq_version()}
    for pkg in ("torch", "open_clip_torch"):
        try:
            out[pkg] = metadata.version(pkg)  # without importing it
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _free_device_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- CLI -------------------------------------------------------------------------------

def _parse_limit(text: str) -> tuple[str, int]:
    key, _, value = text.partition("=")
    names = set(protocol.Limits().to_dict())
    if key not in names or not value:
        raise argparse.ArgumentTypeError(f"--limit takes KEY=INT with KEY in {sorted(names)}")
    return key, int(float(value))


def _parse_checkpoint(text: str) -> tuple[str, str]:
    name, _, path = text.partition("=")
    if not name or not path:
        raise argparse.ArgumentTypeError("--clip-checkpoint takes NAME=PATH, e.g. ViT-B-32=/models/vit-b-32.bin")
    return name.strip(), os.path.abspath(os.path.expanduser(path.strip()))


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("serve", help="run the backend server",
                              description="Serve Metamorph jobs over ZeroMQ (ROUTER).")
    p.add_argument("--bind", default=DEFAULT_BIND,
                   help="ZeroMQ endpoint (default %(default)s; tcp://127.0.0.1:* picks a free port)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--cache-dir", default=None, help="server-owned cache folder "
                   "(default $XDG_CACHE_HOME/metamorph or ~/.cache/metamorph)")
    p.add_argument("--client-timeout", type=float, default=30.0, metavar="S",
                   help="cancel the jobs of a client silent for S seconds (default %(default)s)")
    p.add_argument("--heartbeat", type=float, default=2.0, metavar="S",
                   help="ZMTP heartbeat interval (default %(default)s)")
    p.add_argument("--avatar-cache", type=int, default=8, metavar="N",
                   help="avatars kept in memory (default %(default)s)")
    p.add_argument("--avatar-cache-mb", type=int, default=4096, metavar="MB",
                   help="bytes of avatars kept in memory (default %(default)s)")
    p.add_argument("--max-queue", type=int, default=32, metavar="N",
                   help="jobs queued or running at most (default %(default)s)")
    p.add_argument("--limit", type=_parse_limit, action="append", default=[], metavar="KEY=INT",
                   help="override a protocol limit, e.g. --limit max_vertices=1000000")
    p.add_argument("--curve-secret-key", metavar="FILE",
                   help="server secret key (.key_secret from `metamorph keys generate`); turns CURVE on")
    p.add_argument("--curve-authorized-dir", metavar="DIR",
                   help="folder of allowed client public keys (*.key)")
    p.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback bind without CURVE (prints a warning)")
    p.add_argument("--clip-checkpoint", type=_parse_checkpoint, action="append", default=[],
                   metavar="NAME=PATH", help="local weights for a guidance model, by architecture "
                   "(ViT-B-32=FILE, any tag) or exact name:tag; repeatable (for servers without "
                   "internet access; clients can never name files)")
    p.add_argument("--ready-file", metavar="FILE", help=argparse.SUPPRESS)
    p.set_defaults(func=_serve)


def config_from_args(args) -> ServerConfig:
    return ServerConfig(
        bind=args.bind, device=args.device, cache_dir=args.cache_dir,
        client_timeout_s=args.client_timeout, heartbeat_s=args.heartbeat,
        avatar_cache_size=args.avatar_cache, avatar_cache_mb=args.avatar_cache_mb,
        max_queue=args.max_queue,
        limits=protocol.Limits().replace(**dict(args.limit)),
        curve_secret_key=args.curve_secret_key, curve_authorized_dir=args.curve_authorized_dir,
        insecure=args.insecure, ready_file=args.ready_file,
        clip_checkpoints=dict(args.clip_checkpoint))


def _serve(args) -> int:
    try:
        server = Server(config_from_args(args))
        return server.run()
    except ConfigError as e:
        log.error("%s", e)
        print(f"metamorph serve: {e}", file=sys.stderr)
        return 2
    except zmq.ZMQError as e:
        log.error("cannot listen on %s: %s", args.bind, e)
        print(f"metamorph serve: cannot listen on {args.bind}: {e}", file=sys.stderr)
        return 2
