"""Issue 14, server side, against a real server subprocess on loopback: what one client
can cost the server (quota, list and header bounds, guidance names), who owns a job,
and what put_avatar refuses before casting."""

from __future__ import annotations

import time
import uuid

import msgpack
import numpy as np
import psutil
import pytest
import zmq

from shared import PROTOCOL_VERSION, avatar, protocol
from shared.errors import Busy, InvalidAvatar, InvalidParams, TooLarge
from test_server import small_avatar


# --- raw sockets: a client that can choose its routing id ------------------------------------

def raw_socket(endpoint: str, identity: bytes | None = None, curve: dict | None = None) -> zmq.Socket:
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if identity is not None:
        s.setsockopt(zmq.ROUTING_ID, identity)
    for k, v in (curve or {}).items():
        setattr(s, k, v)
    s.connect(endpoint)
    return s


def receive(s: zmq.Socket, timeout_s: float) -> list[protocol.Message]:
    """Every message that arrives within ``timeout_s``."""
    out, deadline = [], time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        if s.poll(int(left * 1000)):
            out.append(protocol.decode(s.recv_multipart(copy=False), protocol.CLIENT_LIMITS, from_client=False))
    return out


def ask(s: zmq.Socket, kind: str, body: dict, arrays=None, timeout_s: float = 10.0) -> protocol.Message | None:
    """Send one request -> its reply (or error), None if nothing answers in time."""
    rid = protocol.new_id()
    s.send_multipart(protocol.encode(kind, rid, body, arrays), copy=False)
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        if not s.poll(int(left * 1000)):
            return None
        m = protocol.decode(s.recv_multipart(copy=False), protocol.CLIENT_LIMITS, from_client=False)
        if m.id == rid and (m.kind == kind or (m.kind == "error" and m.job_id is None)):
            return m
    return None


def wait_stage(s: zmq.Socket, job_id: str, stage: str, timeout_s: float = 20.0) -> protocol.Message:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for m in receive(s, 0.2):
            if m.job_id == job_id and m.body.get("stage") == stage:
                return m
    raise AssertionError(f"job {job_id[:8]} never reached stage {stage}")


LONG = {"job": "selfcheck", "params": {"steps": 2000, "step_delay_s": 0.05}}


# --- 14.2 jobs belong to a connection (CURVE: to a key, see test_curve.py) ----------------------

def test_a_routing_id_cannot_take_over_another_clients_job(server):
    ident = uuid.uuid4().bytes
    a = raw_socket(server.endpoint, ident)
    jid = ask(a, "submit", LONG).body["job_id"]
    wait_stage(a, jid, "selfcheck")
    intruder = raw_socket(server.endpoint, ident)  # same routing id, another connection
    try:
        assert ask(intruder, "status", {"job_id": jid}, timeout_s=1.5) is None  # refused outright
        assert receive(intruder, 0.5) == []                                   # and none of A's progress
        assert wait_stage(a, jid, "selfcheck", timeout_s=5).job_id == jid     # A still has its job
        rows = ask(a, "status", {"job_id": jid}).body["jobs"]
        assert rows[0]["state"] == "running"
    finally:
        intruder.close(0)
    # A leaves; a newcomer presenting its routing id gets nothing of A's, and A's job stops.
    a.close(0)
    time.sleep(0.5)
    newcomer = raw_socket(server.endpoint, ident)
    try:
        reply = ask(newcomer, "status", {"job_id": jid})
        assert reply.kind == "error" and reply.body["code"] == "unknown_job", reply.body
        assert ask(newcomer, "cancel", {"job_id": jid}).body["code"] == "unknown_job"
        assert not [m for m in receive(newcomer, 0.5) if m.job_id == jid]
        assert ask(newcomer, "status", {}).body["jobs"] == []
    finally:
        newcomer.close(0)
    deadline = time.monotonic() + 5
    while "its connection closed" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "its connection closed" in server.log()


# --- 14.3 a per-client quota; the global limit stays ------------------------------------------

def test_one_client_cannot_fill_the_queue(server):
    with server.client() as greedy, server.client() as other:
        greedy.hello()
        assert greedy.server_info["max_jobs_per_client"] == 4
        jobs = [greedy.submit("selfcheck", LONG["params"]) for _ in range(4)]
        with pytest.raises(Busy, match="limit per client") as e:
            greedy.submit("selfcheck", {"steps": 1})
        assert e.value.code == "busy" and isinstance(e.value, TooLarge)
        # someone else is still served, and the greedy client gets a slot back after a cancel
        theirs = other.submit("selfcheck", {"steps": 1})
        greedy.cancel(jobs[-1])
        jobs[-1] = greedy.submit("selfcheck", {"steps": 1})
        for j in jobs:
            greedy.cancel(j)
        assert other.wait(theirs, timeout_s=30).body["result"]["steps"] == 1


# --- 14.4 every text and list a client sends is bounded ----------------------------------------

def test_long_texts_and_lists_in_any_job_are_refused_at_submit(client):
    lim = client.server_limits
    with pytest.raises(TooLarge, match="characters long"):
        client.request("submit", {"job": "selfcheck", "params": {"name": "n" * 1_000_000}})
    with pytest.raises(TooLarge, match="items"):
        client.request("submit", {"job": "prepare", "params": {"styles": ["p" * 300] * 10_000}})
    with pytest.raises(TooLarge, match="nested"):
        deep = []
        for _ in range(protocol.MAX_PARAMS_DEPTH + 1):
            deep = [deep]
        client.request("submit", {"job": "selfcheck", "params": {"x": deep}})
    # at the bounds: accepted
    jid = client.submit("selfcheck", {"steps": 1, "name": "n" * lim.max_prompt_length,
                                      "tags": ["t"] * lim.max_list_items})
    assert client.wait(jid, timeout_s=30).body["result"]["steps"] == 1


# --- 14.5 header amplification -------------------------------------------------------------------

def test_a_header_of_millions_of_empty_lists_is_refused_cheaply(server):
    n = 3_000_000  # about 3 MB of msgpack: a 4 MB header limit lets it through unparsed
    items = b"\x90" * n
    body = b"\x81" + msgpack.packb("x") + b"\xdd" + n.to_bytes(4, "big") + items
    h = msgpack.packb({"v": PROTOCOL_VERSION, "id": "amp", "kind": "hello", "arrays": []})
    frame = bytes([h[0] + 1]) + h[1:] + msgpack.packb("body") + body  # one more key: "body"
    proc = psutil.Process(server.pid)
    before = proc.memory_info().rss
    s = raw_socket(server.endpoint)
    try:
        s.send(frame)
        assert s.poll(10_000)
        reply = protocol.decode(s.recv_multipart(copy=False), protocol.CLIENT_LIMITS, from_client=False)
    finally:
        s.close(0)
    assert reply.kind == "error" and reply.body["code"] == "too_large", reply.body
    grown = (proc.memory_info().rss - before) / 2 ** 20
    assert grown < 50, f"one 3 MB header grew the server by {grown:.0f} MB"


# --- 14.6 put_avatar validates before casting --------------------------------------------------------

@pytest.mark.parametrize("faces", [
    np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 2 ** 32 + 3]], np.int64),  # int32 cast: 3
    np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3.0]], np.float32) + np.float32(0.7),
])
def test_put_avatar_refuses_indices_a_cast_would_hide(client, faces):
    av = small_avatar(seed=31)
    body, arrays = avatar.to_wire(av)
    arrays = dict(arrays, faces=faces)
    with pytest.raises(InvalidAvatar, match="integer indices|Triangle indices"):
        client.request("put_avatar", body, arrays)
    assert not client.has_avatar(avatar.content_hash(av))


@pytest.mark.parametrize("shape", [(0, 0, 3), (1, 16, 3), (16, 1, 3)])
def test_put_avatar_refuses_degenerate_textures(client, shape):
    body, arrays = avatar.to_wire(small_avatar(seed=32))
    arrays = dict(arrays, texture_0=np.zeros(shape, np.uint8))
    with pytest.raises(InvalidAvatar, match="at least 2x2"):
        client.request("put_avatar", body, arrays)


# --- 14.1 guidance: only names the server offers -------------------------------------------------------

@pytest.mark.parametrize("name", ["hf-hub:someone/clip", "local-dir:/models/clip", "/etc/passwd",
                                  "../weights.bin", "test-tiny:7", "ViT-B-32:no-such-tag"])
def test_guidance_names_not_offered_are_refused_before_queueing(client, name):
    assert "test-tiny" in client.hello()["guidance_models"]
    with pytest.raises(InvalidParams, match="guidance|model"):
        client.submit("selfcheck", {"steps": 1, "guidance": name})
    assert client.status()["queued"] == 0


def test_guidance_cache_keeps_at_most_n_models_least_recently_used_first():
    import gc
    import weakref

    from backend.server import GuidanceCache

    class Model:  # what a loader returns: an object holding memory (1 MB here)
        def __init__(self, name, checkpoint):
            self.name, self.checkpoint, self.weights = name, checkpoint, np.ones(1 << 18, np.float32)

    loads = []

    def loader(name, checkpoint, device):
        loads.append(name)
        return Model(name, checkpoint)

    cache = GuidanceCache(["test-tiny", "ViT-B-32", "RN50:openai"], {"ViT-B-32": "/models/b32.bin"},
                          max_models=2, loader=loader)
    a = weakref.ref(cache.get("test-tiny"))
    assert cache.get("ViT-B-32").checkpoint == "/models/b32.bin"
    cache.get("test-tiny")                       # most recent now
    cache.get("RN50:openai")                     # evicts ViT-B-32, the least recently used
    assert cache.loaded() == ["test-tiny", "RN50:openai"] and loads == ["test-tiny", "ViT-B-32", "RN50:openai"]
    cache.get("ViT-B-32")                        # evicts test-tiny
    gc.collect()
    assert a() is None, "an evicted model must be freed"
    assert len(cache.loaded()) == 2 and cache.loads == 4
    for bad in ("hf-hub:x/y", "local-dir:/m", "/abs/path", "test-tiny:2", "", 5):
        with pytest.raises(InvalidParams):
            cache.get(bad)
    assert cache.loads == 4


def test_jobs_get_their_guidance_model_from_the_servers_cache(client):
    """End to end through ctx.guidance: the labelled test model, loaded by the server."""
    res = client.wait(client.submit("selfcheck", {"steps": 1, "guidance": "test-tiny"}), timeout_s=120)
    assert res.body["result"]["guidance"] == {"name": "test-tiny", "is_test_model": True}


# --- 14.7 what a user can get wrong is a typed error at submit, never `internal` later -------------

def _stylize_params(aid: str) -> dict:
    from shared.camera import Camera
    from shared.stylize import StyleTerm, StylizeRequest

    cam = Camera(matrix_world=np.eye(4), resolution_x=64, resolution_y=64)
    return StylizeRequest(avatar_id=aid, terms=[StyleTerm("text", text="a bronze statue")], cameras=[cam],
                          guidance="test-tiny").to_params()


@pytest.mark.parametrize("change", [
    lambda p: p["terms"][0].update(weight="heavy"),
    lambda p: p.update(frames=[float("nan")]),
    lambda p: p.update(steps=10 ** 9),
    lambda p: p.update(cameras=[]),
    lambda p: p["cameras"][0].update(lens="long"),
    lambda p: p["cameras"][0].update(resolution_x=-3),
    lambda p: p.update(identity=float("inf")),
])
def test_stylize_mistakes_are_refused_at_submit(client, change):
    aid = client.put_avatar(small_avatar(seed=41))
    params = _stylize_params(aid)
    change(params)
    with pytest.raises((InvalidParams, TooLarge)) as e:
        client.submit("stylize", params)
    assert e.value.code in ("invalid_params", "too_large"), e.value
    assert client.status()["jobs"] == [] or all(r["kind"] != "stylize" for r in client.status()["jobs"])
