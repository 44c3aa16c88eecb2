"""The Metamorph client: one DEALER socket to a server, used by the add-on (from a
Blender timer), the CLI and the tests.

Nothing here blocks for longer than the timeout it was given; :meth:`Client.poll`
does not block at all by default, so the add-on can call it from a timer. The
client pings the server (``heartbeat``) whenever it is pumped and declares the
server gone (:class:`ServerUnavailable`) when a request or ping has been
unanswered for ``server_timeout_s``.

Not thread-safe: use one Client per thread (ZeroMQ sockets are single-threaded).

Typical use::

    with Client("tcp://127.0.0.1:5557") as c:
        info = c.hello()
        aid = c.put_avatar(avatar)              # skipped if the server has it
        jid = c.submit("stylize", {"avatar_id": aid, ...})
        for msg in c.iter_job(jid):             # progress..., then the result
            ...
"""

from __future__ import annotations

import collections
import os
import time
import uuid
from typing import Any, Iterator, Mapping

import zmq

from . import avatar as avatar_mod
from . import codec, protocol
from .errors import MetamorphError, ServerUnavailable, TooLarge, error_from_body
from .protocol import Message

PING_PREFIX = "ping-"  # our automatic heartbeats; their replies only prove the server lives
INBOX_CAP = 10_000  # buffered messages nobody asked for yet; oldest progress dropped beyond


def load_key(key: str | bytes | os.PathLike | None, secret: bool = False) -> bytes | None:
    """A Z85 CURVE key (40 bytes) from bytes/str, or from a zmq.auth key file path
    (``.key`` for public, ``.key_secret`` for secret)."""
    if key is None:
        return None
    if isinstance(key, (bytes, str)) and len(key) == 40 and not os.path.exists(key):
        return key.encode() if isinstance(key, str) else key
    import zmq.auth
    public, secret_key = zmq.auth.load_certificate(os.fspath(key))
    if secret and not secret_key:
        raise ValueError(f"{key} holds no secret key; use the '.key_secret' file.")
    return secret_key if secret else public


class Client:
    """A connection to one Metamorph server.

    address           ZeroMQ endpoint, e.g. ``tcp://127.0.0.1:5557``
    timeout_s         how long a request waits for its reply
    heartbeat_s       ping interval while the client is pumped
    server_timeout_s  unanswered traffic for this long -> ServerUnavailable
    server_public_key, client_public_key, client_secret_key
                      CURVE: Z85 keys or key files (``metamorph keys generate``)
    """

    def __init__(self, address: str, *, timeout_s: float = 10.0, heartbeat_s: float = 1.0,
                 server_timeout_s: float = 5.0, server_public_key=None, client_public_key=None,
                 client_secret_key=None, limits: protocol.Limits = protocol.CLIENT_LIMITS,
                 context: zmq.Context | None = None, name: str = "metamorph-client"):
        self.address = address
        self.timeout_s = float(timeout_s)
        self.heartbeat_s = float(heartbeat_s)
        self.server_timeout_s = float(server_timeout_s)
        self.limits = limits
        self.name = name
        self.server_info: dict = {}
        self.server_limits = protocol.Limits()
        self.last_upload_skipped = False
        self._own_ctx = context is None
        self._ctx = context or zmq.Context()
        self._inbox: collections.deque[Message] = collections.deque()
        self._last_rx = time.monotonic()
        self._waiting_since: float | None = None  # first send not yet followed by any reply
        self._last_ping = 0.0
        s = self._ctx.socket(zmq.DEALER)
        # A fixed routing id keeps our address across reconnects. The server binds our jobs to
        # our CURVE key (a reconnect with the same key keeps them) or, without CURVE, to this
        # connection (they end with it); another socket presenting this id gets none of them.
        s.setsockopt(zmq.ROUTING_ID, uuid.uuid4().bytes)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVHWM, 100_000)
        s.setsockopt(zmq.SNDHWM, 1000)
        s.setsockopt(zmq.RECONNECT_IVL, 100)
        s.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        ivl = max(100, int(heartbeat_s * 1000))
        s.setsockopt(zmq.HEARTBEAT_IVL, ivl)
        s.setsockopt(zmq.HEARTBEAT_TIMEOUT, max(ivl, int(self.server_timeout_s * 1000)))
        if server_public_key is not None:
            s.curve_serverkey = load_key(server_public_key)
            if client_secret_key is None:
                raise ValueError("CURVE needs the client's key pair too (client_secret_key).")
            s.curve_secretkey = load_key(client_secret_key, secret=True)
            s.curve_publickey = load_key(client_public_key if client_public_key is not None
                                         else client_secret_key)
        s.connect(address)
        self._sock = s

    # lifecycle --------------------------------------------------------------------
    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
        if self._own_ctx:
            self._ctx.term()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._sock is None

    # low level -----------------------------------------------------------------------
    def send(self, kind: str, body: Mapping | None = None, arrays: Mapping[str, Any] | None = None,
             rid: str | None = None) -> str:
        """Send one request without waiting; -> its request id."""
        rid = rid or protocol.new_id()
        frames = protocol.encode(kind, rid, body, arrays)
        try:
            self._sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            raise ServerUnavailable(f"Cannot send to the Metamorph server at {self.address}: its "
                                    f"queue is full (the server is gone or not reading).") from None
        if self._waiting_since is None:
            self._waiting_since = time.monotonic()
        return rid

    def _pump(self, timeout_s: float, dead_after_s: float | None = None) -> None:
        """Receive whatever arrives within ``timeout_s`` into the inbox, ping when due,
        raise ServerUnavailable when the server stopped answering."""
        now = time.monotonic()
        if now - self._last_ping >= self.heartbeat_s:
            self._last_ping = now
            try:
                self.send("heartbeat", rid=PING_PREFIX + protocol.new_id()[:16])
            except ServerUnavailable:
                pass  # reported below if nothing comes back in time
        ms = max(0, int(timeout_s * 1000))
        bad: MetamorphError | None = None
        if self._sock.poll(ms, zmq.POLLIN):
            while True:
                try:
                    frames = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self._last_rx = time.monotonic()
                self._waiting_since = None
                try:
                    msg = protocol.decode(frames, self.limits, from_client=False)
                except MetamorphError as e:
                    bad = bad or e
                    continue
                if not (msg.kind == "heartbeat" and msg.id.startswith(PING_PREFIX)):
                    self._store(msg)
        if bad is not None:
            raise bad
        if self._waiting_since is not None:
            silent = time.monotonic() - self._waiting_since
            if silent > max(self.server_timeout_s, dead_after_s or 0.0):
                raise ServerUnavailable(
                    f"No answer from the Metamorph server at {self.address} for {silent:.1f} s: check "
                    f"that `metamorph serve` is running there and reachable (for a remote server, "
                    f"that the CURVE keys match), then try again.",
                    details={"address": self.address, "silent_s": round(silent, 2)})

    def _store(self, msg: Message) -> None:
        self._inbox.append(msg)
        if len(self._inbox) > INBOX_CAP:
            for i, m in enumerate(self._inbox):
                if m.kind == "progress":
                    del self._inbox[i]
                    break
            else:
                self._inbox.popleft()

    def _take(self, pred) -> Message | None:
        for i, m in enumerate(self._inbox):
            if pred(m):
                del self._inbox[i]
                return m
        return None

    def request(self, kind: str, body: Mapping | None = None, arrays: Mapping[str, Any] | None = None,
                timeout_s: float | None = None) -> Message:
        """Send and wait for the reply (other messages stay buffered for poll/iter_job).
        Raises the typed error the server answered with, or ServerUnavailable."""
        timeout = self.timeout_s if timeout_s is None else float(timeout_s)
        rid = self.send(kind, body, arrays)
        deadline = time.monotonic() + timeout

        def is_reply(m: Message) -> bool:
            return m.id == rid and (m.kind == kind or (m.kind == "error" and m.job_id is None))

        while True:
            m = self._take(is_reply)
            if m is not None:
                if m.kind == "error":
                    raise error_from_body(m.body)
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServerUnavailable(
                    f"The Metamorph server at {self.address} did not answer '{kind}' within "
                    f"{timeout:.1f} s: check that `metamorph serve` is running and reachable.",
                    details={"address": self.address, "kind": kind})
            # A big upload may keep the server busy past the heartbeat timeout.
            self._pump(min(left, self.heartbeat_s), dead_after_s=timeout)

    def poll(self, timeout_s: float = 0.0) -> list[Message]:
        """All messages received so far (progress, results, job errors), waiting at
        most ``timeout_s`` (0: never blocks). Sends a heartbeat when one is due."""
        self._pump(timeout_s)
        out = list(self._inbox)
        self._inbox.clear()
        return out

    # protocol ------------------------------------------------------------------------
    def hello(self, timeout_s: float | None = None) -> dict:
        """Server capabilities: device, limits, job kinds, guidance models, versions."""
        m = self.request("hello", {"client": self.name}, timeout_s=timeout_s)
        self.server_info = dict(m.body)
        self.server_limits = protocol.Limits.from_dict(m.body.get("limits", {}))
        return self.server_info

    def heartbeat(self, timeout_s: float | None = None) -> float:
        """Round trip a ping; -> seconds it took."""
        t0 = time.monotonic()
        self.request("heartbeat", timeout_s=timeout_s)
        return time.monotonic() - t0

    def has_avatar(self, avatar_id: str) -> bool:
        return bool(self.request("has_avatar", {"avatar_id": avatar_id}).body.get("present"))

    def put_avatar(self, av: avatar_mod.AvatarData, force: bool = False,
                   timeout_s: float | None = None) -> str:
        """Upload an avatar unless the server already holds it; -> avatar id (content hash).

        Validates against the server's limits first so a bad avatar fails here,
        before any upload. ``last_upload_skipped`` tells whether bytes were sent.
        """
        avatar_mod.validate(av, self.server_limits.avatar_limits())
        aid = avatar_mod.content_hash(av)
        if not force and self.has_avatar(aid):
            self.last_upload_skipped = True
            return aid
        body, arrays = avatar_mod.to_wire(av)
        self._check_outgoing("put_avatar", body, arrays)
        m = self.request("put_avatar", body, arrays, timeout_s=timeout_s)
        self.last_upload_skipped = False
        return str(m.body["avatar_id"])

    def submit(self, kind: str, params: Mapping | None = None,
               arrays: Mapping[str, Any] | None = None, timeout_s: float | None = None) -> str:
        """Queue a job; -> job id. Parameter errors come back at once as typed errors."""
        body = {"job": kind, "params": dict(params or {})}
        self._check_outgoing("submit", body, arrays or {})
        return str(self.request("submit", body, arrays, timeout_s=timeout_s).body["job_id"])

    def cancel(self, job_id: str, timeout_s: float | None = None) -> str:
        """Ask the server to cancel; -> the job's state ("cancelled", "cancelling", "done"...).
        The job's stream then ends with a ``cancelled`` error."""
        return str(self.request("cancel", {"job_id": job_id}, timeout_s=timeout_s).body["state"])

    def status(self, job_id: str | None = None, timeout_s: float | None = None) -> dict:
        body = {} if job_id is None else {"job_id": job_id}
        return dict(self.request("status", body, timeout_s=timeout_s).body)

    def iter_job(self, job_id: str, timeout_s: float | None = None) -> Iterator[Message]:
        """Yield the job's ``progress`` messages, then its ``result`` message last.
        Raises the job's typed error (e.g. Cancelled), ServerUnavailable, or
        TimeoutError after ``timeout_s`` (None: no limit while the server lives)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            m = self._take(lambda m: m.job_id == job_id and m.kind in ("progress", "result", "error"))
            if m is not None:
                if m.kind == "error":
                    raise error_from_body(m.body)
                yield m
                if m.kind == "result":
                    return
                continue
            wait = self.heartbeat_s
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"Job {job_id[:12]} did not finish within {timeout_s} s.")
                wait = min(wait, left)
            self._pump(wait)

    def wait(self, job_id: str, timeout_s: float | None = None, on_progress=None) -> Message:
        """Block until the job ends; -> its ``result`` message (body["result"], arrays)."""
        for m in self.iter_job(job_id, timeout_s):
            if m.kind == "result":
                return m
            if on_progress is not None:
                on_progress(m)
        raise AssertionError("unreachable")

    def _check_outgoing(self, kind: str, body: dict, arrays: Mapping[str, Any]) -> None:
        """The server's checks, run here first so errors need no round trip."""
        wire = {k: codec.wire_array(v) for k, v in arrays.items()}
        lim = self.server_limits
        total = codec.total_nbytes(wire.values())
        if total > lim.max_message_bytes:
            raise TooLarge(f"This request holds {total} bytes of arrays, more than the server's "
                           f"limit of {lim.max_message_bytes}; send less data.")
        for k, a in wire.items():
            codec.check_values(k, a)
        protocol.check_body(Message(kind, "", body, wire), lim, from_client=True)


def connect(address: str, **kw) -> Client:
    """A Client that has already said hello (raises ServerUnavailable if nobody answers)."""
    c = Client(address, **kw)
    try:
        c.hello()
    except BaseException:
        c.close()
        raise
    return c
