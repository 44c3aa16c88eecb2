"""The server's sockets and its loop: one ROUTER socket, an explicit dispatch table
from request kind to handler, and the rules for who may see which job.

Threads and who owns what (ZeroMQ sockets are not thread-safe):

    loop thread    owns the ROUTER socket. Decodes and validates every message
                   (shared.protocol.decode), answers hello/put_avatar/has_avatar/
                   status/cancel/heartbeat itself, validates and queues jobs,
                   forwards what the worker emits, cancels the jobs of clients
                   that went silent or whose connection closed. Never waits on a job.
    worker thread  (backend.server.job_queue) runs one job at a time, FIFO, and emits
                   progress/result/error through an inproc PAIR socket that the
                   loop forwards to the ROUTER, zero-copy.

Job ownership. A job belongs to whoever submitted it: with CURVE, the client's
public key (the ``User-Id`` ZAP gives each connection); otherwise the connection
itself (a socket monitor numbers connections as they are accepted). Status, cancel,
progress and results go to the owner only. ``ROUTER_HANDOVER`` is off, so a socket
presenting a connected client's routing id is refused; once that client is gone,
nothing is sent to its routing id until its owner talks again (a CURVE client
reconnecting with its key gets a result that finished meanwhile; without CURVE the
jobs of a closed connection are cancelled).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import zmq
from zmq.utils.monitor import parse_monitor_message

from shared import PROTOCOL_VERSION, avatar as avatar_mod, protocol
from shared.errors import Cancelled, Internal, InvalidAvatar, InvalidParams, MetamorphError, UnknownAvatar

from backend import jobs as jobs_mod

from . import auth
from .avatars import AvatarCache, freeze_avatar
from .config import (SERVER_VERSION, ServerConfig, check_cache_dir, check_checkpoints, check_security,
                     resolve_device, versions)
from backend.style.guidance_cache import GuidanceCache
from .job_queue import ACTIVE, JobQueue
from .runner import Job, progress_frames

log = logging.getLogger("metamorph.server")

PENDING_PER_OWNER = 8  # finished results kept for an owner whose connection is away


def available_guidance_models() -> list[str]:
    """Names ``backend.style.guidance`` can load ([] without the style part)."""
    try:
        from backend.style import guidance  # imports torch + open_clip: optional for the server
    except ImportError:
        return []
    try:
        return list(guidance.available_models())
    except Exception as e:  # a broken optional part must not stop the server
        log.warning("guidance.available_models() failed: %s", e)
        return []


class Server:
    """One ROUTER socket, one worker. ``run()`` blocks until ``stop()`` or a signal."""

    def __init__(self, cfg: ServerConfig, handlers: dict | None = None):
        self.cfg = cfg
        self.limits = cfg.limits
        self.security = check_security(cfg)
        check_checkpoints(cfg)
        self.cache_dir = check_cache_dir(cfg)
        self.client_keys = auth.authorized_keys(cfg.curve_authorized_dir) if self.security == "curve" else None
        self.handlers = dict(handlers) if handlers is not None else jobs_mod.handlers()
        self.device = resolve_device(cfg.device)
        # Models with operator-configured local weights first: those work offline.
        self.guidance_models = list(cfg.clip_checkpoints) + [
            m for m in available_guidance_models() if m not in cfg.clip_checkpoints]
        self.guidance = GuidanceCache(self.guidance_models, cfg.clip_checkpoints, self.device,
                                      cfg.max_guidance_models)
        self.versions = versions()
        self.avatars = AvatarCache(cfg.avatar_cache_size, cfg.avatar_cache_mb << 20)
        self.executor = self._ray_executor() if cfg.ray else None
        if self.executor is not None:
            self.device = f"ray:{self.executor.device} x{self.executor.slots}"
        self.queue = JobQueue(self._emit_job, self._job_context, self.device, cfg.max_queue,
                              cfg.max_jobs_per_client, slots=self.executor.slots if self.executor else 1,
                              execute=self.executor)
        self.last_seen: dict[bytes, float] = {}
        self.holder: dict[bytes, str] = {}  # routing id -> owner of the connection holding it now
        self._conn_of_fd: dict[int, int] = {}  # socket fd -> connection number (non-CURVE owners)
        self._ids_of_fd: dict[int, set[bytes]] = collections.defaultdict(set)
        self._conn_count = 0
        self._pending: dict[str, list] = collections.defaultdict(list)  # owner -> [(t, identity, frames)]
        self._stop = threading.Event()
        self._emit_lock = threading.Lock()
        self._loop_thread: threading.Thread | None = None
        self.endpoint: str | None = None
        self.ctx = zmq.Context()
        self._auth = None
        self.dispatch = {
            "hello": self._on_hello, "heartbeat": self._on_heartbeat, "put_avatar": self._on_put_avatar,
            "has_avatar": self._on_has_avatar, "submit": self._on_submit, "cancel": self._on_cancel,
            "status": self._on_status,
        }
        missing = set(protocol.REQUEST_KINDS) - set(self.dispatch)
        assert not missing, f"request kinds without a handler: {missing}"

    def _ray_executor(self):
        """The Ray worker pool for ``--ray`` (Ray is imported only then: it is heavy)."""
        from backend.cluster.pool import PoolConfig

        from .ray_executor import RayExecutor

        pool_cfg = PoolConfig(address=self.cfg.ray, num_workers=self.cfg.ray_workers,
                              job_deadline_s=self.cfg.job_deadline_s)
        return RayExecutor(pool_cfg, str(self.cache_dir), {"clip_checkpoints": dict(self.cfg.clip_checkpoints)},
                           {"available": self.guidance_models, "checkpoints": dict(self.cfg.clip_checkpoints),
                            "max_models": self.cfg.max_guidance_models})

    # sockets ---------------------------------------------------------------------
    def _open(self) -> None:
        router = self.ctx.socket(zmq.ROUTER)
        # Frames larger than this make libzmq drop the connection before we see them.
        router.setsockopt(zmq.MAXMSGSIZE, max(self.limits.max_message_bytes, self.limits.max_header_bytes))
        router.setsockopt(zmq.LINGER, 200)
        router.setsockopt(zmq.SNDHWM, 10000)
        router.setsockopt(zmq.RCVHWM, 1000)
        router.setsockopt(zmq.ROUTER_MANDATORY, 0)  # vanished peer: drop, never raise
        router.setsockopt(zmq.ROUTER_HANDOVER, 0)   # a connected client's routing id cannot be taken over
        ivl = max(100, int(self.cfg.heartbeat_s * 1000))
        router.setsockopt(zmq.HEARTBEAT_IVL, ivl)
        router.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * ivl)
        router.setsockopt(zmq.HEARTBEAT_TTL, 3 * ivl)
        if self.security == "curve":
            self._auth = auth.start_curve(self.ctx, router, self.cfg.curve_secret_key, self.client_keys)
        self.monitor = router.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
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

    def _emit_job(self, job: Job, frames: list) -> None:
        """Send a job's message to its owner, from any thread (the queue's ``emit``)."""
        if job.detached:
            return
        final = job.state not in ACTIVE
        if threading.current_thread() is self._loop_thread:
            self._deliver(job.owner, job.identity, frames, final)
        else:
            with self._emit_lock:
                self.outbox.send_multipart([job.owner.encode(), b"1" if final else b"0", job.identity, *frames],
                                           copy=False)

    def _deliver(self, owner: str, identity: bytes, frames: list, final: bool) -> None:
        """Loop thread: send if ``identity`` is held by ``owner`` now; else keep a final
        message for when the owner is back, drop progress."""
        if self.holder.get(identity) == owner:
            self.router.send_multipart([identity, *frames], copy=False)
        elif final:
            kept = self._pending[owner]
            kept.append((time.monotonic(), identity, frames))
            del kept[:-PENDING_PER_OWNER]

    def _reply(self, identity: bytes, msg: protocol.Message, body: dict, arrays=None) -> None:
        self.router.send_multipart([identity, *protocol.encode(msg.kind, msg.id, body, arrays)], copy=False)

    def _reply_error(self, identity: bytes, err: MetamorphError, rid: str) -> None:
        self.router.send_multipart([identity, *protocol.encode_error(err, rid)], copy=False)

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
        log.info("Metamorph server %s (protocol %d) listening on %s; device %s; jobs %s; security %s; "
                 "cache %s", SERVER_VERSION, PROTOCOL_VERSION, self.endpoint, self.device,
                 sorted(self.handlers), self.security, self.cache_dir)
        self.queue.start()
        if self.cfg.ready_file:
            tmp = Path(str(self.cfg.ready_file) + ".tmp")
            tmp.write_text(json.dumps({"endpoint": self.endpoint, "pid": os.getpid()}))
            tmp.replace(self.cfg.ready_file)
        try:
            self._loop()
        finally:
            self._shutdown()
        return 0

    def _shutdown(self) -> None:
        log.info("shutting down")
        never_started = self.queue.stop(timeout_s=10)
        if self.executor is not None:
            self.executor.shutdown()
        # Forward what the worker said last (e.g. "cancelled") before leaving, and tell
        # clients whose jobs never started.
        self._drain_worker(10_000)
        for job in never_started:
            job.state = "cancelled"
            self._emit_job(job, protocol.encode_error(
                Cancelled("The server shut down before the job started; submit it again."), job.request_id, job.id))
        self.router.close(linger=500)
        for s in (self.inbox, self.outbox, self.monitor):
            s.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
        self.ctx.term()
        log.info("Metamorph server stopped")

    def _loop(self) -> None:
        poller = zmq.Poller()
        for s in (self.monitor, self.inbox, self.router):
            poller.register(s, zmq.POLLIN)
        next_sweep = 0.0
        while not self._stop.is_set():
            events = dict(poller.poll(100))
            # Connections first (a closed one's jobs must not reach a newcomer), then what the
            # worker produced (results are what clients wait for), then requests.
            if self.monitor in events:
                self._drain_monitor()
            if self.inbox in events:
                self._drain_worker(1000)
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

    def _drain_worker(self, at_most: int) -> None:
        for _ in range(at_most):
            try:
                owner, final, identity, *frames = self.inbox.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._deliver(owner.bytes.decode(), identity.bytes, frames, final.bytes == b"1")

    def _drain_monitor(self) -> None:
        while True:
            try:
                ev = parse_monitor_message(self.monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            fd = int(ev["value"])
            if ev["event"] == zmq.EVENT_ACCEPTED:
                self._conn_count += 1
                self._conn_of_fd[fd] = self._conn_count
                self._ids_of_fd.pop(fd, None)
            elif ev["event"] == zmq.EVENT_DISCONNECTED:
                self._connection_closed(fd)

    def _connection_closed(self, fd: int) -> None:
        conn = self._conn_of_fd.pop(fd, None)
        for identity in self._ids_of_fd.pop(fd, set()):
            owner = self.holder.pop(identity, None)
            if owner is not None and self.security != "curve":
                gone = self.queue.cancel_where(lambda j, o=owner: j.owner == o, "its connection closed",
                                               detach=True)
                if gone:
                    log.info("connection %s closed: cancelled its %d job(s)", conn, len(gone))

    # message handling (loop thread) ----------------------------------------------
    def _owner(self, fd: int, frame: zmq.Frame) -> str:
        """Who sent ``frame`` (over socket ``fd``): ``key:<z85 public key>`` with CURVE,
        else ``conn:<n>``, the connection's number."""
        if self.security == "curve":
            return "key:" + frame.get("User-Id")
        if fd not in self._conn_of_fd:  # the monitor has not said so yet: number it now
            self._conn_count += 1
            self._conn_of_fd[fd] = self._conn_count
        return f"conn:{self._conn_of_fd[fd]}"

    def _handle(self, frames: list) -> None:
        identity = frames[0].bytes
        body_frames = frames[1:]
        self._drain_monitor()  # a connection closed just now must not lend its number to this one
        fd = frames[-1].get(zmq.SRCFD)
        self._ids_of_fd[fd].add(identity)
        owner = self._owner(fd, frames[-1])
        if self.holder.get(identity) != owner:
            self.holder[identity] = owner
            if owner in self._pending:  # results that finished while this client was away
                kept = self._pending.pop(owner)
                for item in kept:
                    if item[1] == identity:
                        self.router.send_multipart([identity, *item[2]], copy=False)
                rest = [item for item in kept if item[1] != identity]
                if rest:
                    self._pending[owner] = rest
        self.last_seen[identity] = time.monotonic()
        try:
            msg = protocol.decode(body_frames, self.limits, from_client=True)
        except MetamorphError as e:
            log.debug("rejected message: %s", e)
            self._reply_error(identity, e, protocol.peek_id(body_frames) if body_frames else "")
            return
        try:
            self.dispatch[msg.kind](identity, owner, msg)
        except MetamorphError as e:
            self._reply_error(identity, e, msg.id)
        except Exception as e:  # a bug in request handling must not stop the server
            log.exception("error handling %s", msg.kind)
            self._reply_error(identity, Internal(f"The server failed handling '{msg.kind}': "
                                                 f"{type(e).__name__}: {e}"), msg.id)

    def _on_hello(self, identity, owner, msg):
        self._reply(identity, msg, {
            "protocol": PROTOCOL_VERSION, "server_version": SERVER_VERSION, "versions": self.versions,
            "device": self.device,
            "limits": self.limits.to_dict(), "job_kinds": sorted(self.handlers),
            "guidance_models": self.guidance_models, "heartbeat_s": self.cfg.heartbeat_s,
            "client_timeout_s": self.cfg.client_timeout_s, "curve": self.security == "curve",
            "max_jobs_per_client": self.cfg.max_jobs_per_client, "max_queue": self.cfg.max_queue,
            "workers": self.queue.slots,
        })

    def _on_heartbeat(self, identity, owner, msg):
        self._reply(identity, msg, {"time": time.time()})

    def _on_has_avatar(self, identity, owner, msg):
        aid = msg.body["avatar_id"]
        self._reply(identity, msg, {"avatar_id": aid, "present": aid in self.avatars})

    def _on_put_avatar(self, identity, owner, msg):
        av = avatar_mod.from_wire(msg.body, msg.arrays)
        try:
            avatar_mod.validate(av, self.limits.avatar_limits())
        except (TypeError, ValueError, IndexError) as e:  # malformed beyond what validate names
            raise InvalidAvatar(f"The avatar message is malformed: {e}") from e
        aid = avatar_mod.content_hash(av)
        cached = aid in self.avatars
        if not cached:
            freeze_avatar(av)  # jobs share the cached avatar: none may modify it
            self.avatars.put(aid, av)
            log.info("avatar %s: %d vertices, %d faces, %d blendshapes", aid[:12], av.num_vertices,
                     av.num_faces, len(av.blendshape_names))
        else:
            self.avatars.get(aid)
        self._reply(identity, msg, {"avatar_id": aid, "cached": cached})

    def _on_submit(self, identity, owner, msg):
        kind = msg.body["job"]
        params = msg.body.get("params") or {}
        handler = self.handlers.get(kind)
        if handler is None:
            raise InvalidParams(f"Unknown job kind '{kind}'; this server runs {sorted(self.handlers)}.")
        if "guidance" in params:  # the shared name of a job's guidance model: only what hello lists
            self.guidance.check(params["guidance"])
        self._validate(handler, kind, params, msg.arrays)  # bad parameters first, whatever the avatar
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
        job = Job(id=protocol.new_id(), kind=kind, handler=handler, identity=identity, owner=owner,
                  request_id=msg.id, params=params, arrays=msg.arrays, avatar=av, avatar_id=aid)
        position = self.queue.submit(job)
        self._reply(identity, msg, {"job_id": job.id, "queue_position": position})
        self._emit_job(job, progress_frames(job, "queued", 0, 0, None, None, position))

    def _validate(self, handler, kind: str, params: dict, arrays: dict) -> None:
        """The handler's checks; anything but a typed error from them is a handler bug:
        logged with its traceback, answered as invalid_params, and the server keeps serving."""
        try:
            handler.validate(params, arrays, limits=self.limits)
        except MetamorphError:
            raise
        except Exception as e:
            log.exception("BUG: the '%s' handler's validate raised %s instead of a typed error", kind,
                          type(e).__name__)
            raise InvalidParams(f"The '{kind}' parameters could not be checked ({type(e).__name__}: {e}); "
                                f"check them against the request's documentation (the server logged this "
                                f"as a bug).") from e

    def _on_cancel(self, identity, owner, msg):
        job = self.queue.owned(owner, msg.body["job_id"])
        state = self.queue.cancel(job, "the client asked")
        self._reply(identity, msg, {"job_id": job.id, "state": state})

    def _on_status(self, identity, owner, msg):
        self._reply(identity, msg, self.queue.status(owner, msg.body.get("job_id")))

    def _sweep_silent_clients(self, now: float) -> None:
        timeout = self.cfg.client_timeout_s
        stale = {i for i, t in self.last_seen.items() if now - t > timeout}
        for owner in [o for o, kept in self._pending.items() if all(now - t > timeout for t, _, _ in kept)]:
            del self._pending[owner]
        if not stale:
            return
        for job in self.queue.active_jobs(lambda j: j.identity in stale):
            log.warning("client silent for more than %.1f s: cancelling its job %s", timeout, job.id[:8])
            self.queue.cancel(job, f"the client sent nothing for {timeout:.0f} s")
        for i in stale - self.queue.busy_identities():
            del self.last_seen[i]

    def _job_context(self, job: Job, report_progress) -> jobs_mod.JobContext:
        return jobs_mod.JobContext(job_id=job.id, params=job.params, arrays=job.arrays, avatar=job.avatar,
                                   avatar_id=job.avatar_id, report_progress=report_progress,
                                   is_cancelled=job.cancel.is_set, device=self.device,
                                   workdir=str(self.cache_dir),
                                   extra={"clip_checkpoints": dict(self.cfg.clip_checkpoints)},
                                   guidance=self.guidance.get)
