"""The backend server as a real subprocess on loopback: hello, avatars, jobs
streamed, cancelled, queued, failing, and clients/servers that vanish."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest

from conftest import start_server
from shared import PROTOCOL_VERSION, avatar
from shared.errors import (Cancelled, Internal, InvalidAvatar, InvalidParams, OutOfMemory,
                           ServerUnavailable, UnknownAvatar, UnknownJob)


def small_avatar(seed: int = 0, n_shapes: int = 2) -> avatar.AvatarData:
    """A textured tetrahedron with blendshapes; ``seed`` jitters it (new content hash)."""
    rng = np.random.default_rng(seed)
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32) + rng.normal(0, 0.01, (4, 3))
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int32)
    uv = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], np.float32)
    tex = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    return avatar.AvatarData(
        vertices=v, faces=f, uvs=uv, uv_faces=f.copy(), face_material=np.zeros(4, np.int32),
        texture_sets=[avatar.TextureSet("skin", tex)],
        blendshape_names=[f"shape{i}" for i in range(n_shapes)],
        blendshapes=rng.normal(0, 0.01, (n_shapes, 4, 3)).astype(np.float32), name="tetra")


def drain(client, job_id, timeout_s=30.0):
    """-> (progress messages, result message) of a job."""
    progress, result = [], None
    for m in client.iter_job(job_id, timeout_s=timeout_s):
        (progress if m.kind == "progress" else [None]).append(m)
        if m.kind == "result":
            result = m
    return progress, result


def test_hello_reports_versions_limits_and_capabilities(client):
    info = client.hello()
    assert info["protocol"] == PROTOCOL_VERSION
    assert info["device"] == "cpu"
    assert "selfcheck" in info["job_kinds"]
    assert isinstance(info["guidance_models"], list)
    assert info["limits"]["max_vertices"] >= 50_000
    assert client.server_limits.max_message_bytes == info["limits"]["max_message_bytes"]


def test_put_and_has_avatar_with_skip_on_reupload(client):
    av = small_avatar(seed=101)
    aid = avatar.content_hash(av)
    assert not client.has_avatar(aid)
    assert client.put_avatar(av) == aid and not client.last_upload_skipped
    assert client.has_avatar(aid)
    av.name = "renamed"  # not part of the identity: still the same avatar
    assert client.put_avatar(av) == aid and client.last_upload_skipped
    # the server recomputes the hash itself, from what it received
    assert client.put_avatar(av, force=True) == aid and not client.last_upload_skipped


def test_invalid_avatar_is_a_typed_error_checked_on_both_sides(client):
    av = small_avatar(seed=5)
    av.faces[0, 0] = 99  # index out of range
    with pytest.raises(InvalidAvatar, match="Triangle indices"):
        client.put_avatar(av)  # caught by the client before uploading
    body, arrays = avatar.to_wire(av)
    with pytest.raises(InvalidAvatar, match="Triangle indices"):
        client.request("put_avatar", body, arrays)  # and by the server if sent anyway
    assert client.heartbeat() < 5


def test_selfcheck_streams_progress_and_echoes_arrays(client):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    mask = np.array([True, False, True])
    jid = client.submit("selfcheck", {"steps": 4}, {"x": x, "mask": mask})
    progress, result = drain(client, jid)
    steps = [m.body["step"] for m in progress if m.body["stage"] == "selfcheck"]
    assert steps == [1, 2, 3, 4]
    assert [m.body["stage"] for m in progress[:2]] == ["queued", "started"]
    last = progress[-1]
    assert last.body["losses"]["loss"] == pytest.approx(0.25)
    assert last.arrays["preview"].shape == (32, 32, 3) and last.arrays["preview"].dtype == np.uint8
    np.testing.assert_array_equal(result.arrays["x"], x * 2 + 1)
    np.testing.assert_array_equal(result.arrays["mask"], ~mask)
    assert result.body["result"]["arrays"]["x"]["sum"] == float(x.sum())


def test_job_resolves_the_avatar_it_names(client):
    av = small_avatar(seed=7, n_shapes=3)
    aid = client.put_avatar(av)
    _, result = drain(client, client.submit("selfcheck", {"avatar_id": aid}))
    assert result.body["result"]["avatar"] == {"vertices": 4, "faces": 4, "blendshapes": 3}
    with pytest.raises(UnknownAvatar, match="upload it again"):
        client.submit("selfcheck", {"avatar_id": "0" * 64})


def test_bad_params_and_unknown_kinds_fail_before_queueing(client):
    with pytest.raises(InvalidParams, match="steps"):
        client.submit("selfcheck", {"steps": -1})
    with pytest.raises(InvalidParams, match="Unknown job kind"):
        client.submit("no-such-job")
    with pytest.raises(UnknownJob):
        client.cancel("f" * 32)


def test_cancel_mid_job_frees_worker_within_one_step(client):
    delay = 0.2
    jid = client.submit("selfcheck", {"steps": 1000, "step_delay_s": delay})
    it = client.iter_job(jid, timeout_s=30)
    for m in it:
        if m.body["step"] >= 2:
            break
    t0 = time.monotonic()
    assert client.cancel(jid) == "cancelling"
    with pytest.raises(Cancelled):
        for m in it:
            pass
    elapsed = time.monotonic() - t0
    assert elapsed < delay + 1.0, f"cancel took {elapsed:.2f} s"
    assert m.body["step"] < 10  # it did not run on
    assert client.status(jid)["jobs"][0]["state"] == "cancelled"
    # the worker is free: a new job starts at once
    _, result = drain(client, client.submit("selfcheck", {"steps": 1}), timeout_s=10)
    assert result.body["result"]["steps"] == 1


def test_second_job_queues_and_reports_its_position(client):
    first = client.submit("selfcheck", {"steps": 1000, "step_delay_s": 0.05})
    for m in client.iter_job(first, timeout_s=30):
        if m.body["stage"] == "selfcheck":
            break  # running now
    second = client.submit("selfcheck", {"steps": 2})
    it = client.iter_job(second, timeout_s=30)
    queued = next(it)
    assert queued.body["stage"] == "queued" and queued.body["queue_position"] == 1
    rows = {r["job_id"]: r for r in client.status()["jobs"]}
    assert rows[first]["state"] == "running" and rows[second]["state"] == "queued"
    client.cancel(first)
    with pytest.raises(Cancelled):
        drain(client, first)
    rest = list(it)
    assert rest[-1].kind == "result"
    started = [m for m in rest if m.body.get("stage") == "started"]
    assert started and started[0].body["queue_position"] == 0  # told when it left the queue


def test_cancel_queued_job_never_runs(client):
    first = client.submit("selfcheck", {"steps": 1000, "step_delay_s": 0.05})
    second = client.submit("selfcheck", {"steps": 1})
    assert client.cancel(second) == "cancelled"
    with pytest.raises(Cancelled):
        drain(client, second)
    client.cancel(first)
    with pytest.raises(Cancelled):
        drain(client, first)


def test_handler_exception_is_an_error_and_server_keeps_serving(client, server):
    jid = client.submit("selfcheck", {"steps": 3, "fail": True, "fail_at": 1})
    with pytest.raises(Internal, match="failure requested at step 1"):
        drain(client, jid)
    with pytest.raises(OutOfMemory, match="ran out of memory"):
        drain(client, client.submit("selfcheck", {"steps": 2, "oom": True}))
    _, result = drain(client, client.submit("selfcheck", {"steps": 1}, {"a": np.ones(3, np.int8)}))
    np.testing.assert_array_equal(result.arrays["a"], [3, 3, 3])
    assert server.alive


def test_poll_is_non_blocking_and_collects_job_messages(client):
    t0 = time.monotonic()
    assert client.poll() == []
    assert time.monotonic() - t0 < 0.5
    jid = client.submit("selfcheck", {"steps": 2})
    got = []
    deadline = time.monotonic() + 20
    while not any(m.kind == "result" for m in got) and time.monotonic() < deadline:
        got += client.poll(0.05)
    assert [m.kind for m in got if m.job_id == jid][-1] == "result"


def test_silent_client_cancelled_then_sigterm_and_client_notices(tmp_path):
    """One server for the lifecycle checks (each server start costs seconds)."""
    sp = start_server("--client-timeout", "1.0", tmp_path=tmp_path)
    try:
        # A client that stops talking: its job is cancelled after the grace period.
        quiet = sp.client(heartbeat_s=0.2)
        jid = quiet.submit("selfcheck", {"steps": 10_000, "step_delay_s": 0.05})
        time.sleep(2.5)  # no polling, so no heartbeats
        with pytest.raises(Cancelled):
            drain(quiet, jid)  # the server told it when it came back
        assert "client silent for more than 1.0 s" in sp.log()
        quiet.close()

        with sp.client(heartbeat_s=0.2, server_timeout_s=1.0) as c:
            # the worker is free for others
            _, result = drain(c, c.submit("selfcheck", {"steps": 1}), timeout_s=10)
            assert result is not None
            # SIGTERM while a job runs: clean exit, and the client notices the server is gone
            # within its heartbeat timeout.
            jid = c.submit("selfcheck", {"steps": 10_000, "step_delay_s": 0.05})
            next(m for m in c.iter_job(jid) if m.body["stage"] == "selfcheck")
            assert sp.stop(signal.SIGTERM, timeout_s=20) == 0
            assert "Metamorph server stopped" in sp.log()
            t0 = time.monotonic()
            with pytest.raises(Cancelled):
                drain(c, jid, timeout_s=5)  # told before the server left
            with pytest.raises(ServerUnavailable, match="No answer from the Metamorph server"):
                while time.monotonic() - t0 < 10:
                    c.poll(0.05)
            assert time.monotonic() - t0 < 2.5
    finally:
        sp.kill()


def test_avatar_cache_is_bounded_lru_and_frozen():
    from backend.server import AvatarCache, avatar_nbytes, freeze_avatar

    avs = [small_avatar(seed=s) for s in range(4)]
    one = avatar_nbytes(avs[0])
    cache = AvatarCache(max_items=3, max_bytes=2 * one)
    for i, av in enumerate(avs[:2]):
        cache.put(f"k{i}", av)
    assert cache.get("k0") is avs[0]  # k0 now most recent
    cache.put("k2", avs[2])  # over the byte bound: least recently used (k1) goes
    assert "k1" not in cache and "k0" in cache and "k2" in cache
    assert cache.nbytes == 2 * one
    freeze_avatar(avs[3])
    with pytest.raises(ValueError):
        avs[3].vertices[0, 0] = 1.0  # jobs cannot modify a cached avatar
