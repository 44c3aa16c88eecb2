"""The add-on's job machinery against a live `metamorph serve` on loopback:
worker thread + main-thread ticks, progress and preview, cancel, a backend
killed mid-job, and the avatar uploaded once per content hash. Uses the
server's built-in ``selfcheck`` job, so no model is needed."""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest

pytest.importorskip("bpy")

from blender_addon import jobs  # noqa: E402
from shared import errors  # noqa: E402
from shared.avatar import AvatarData, TextureSet, content_hash  # noqa: E402


def _opts(endpoint, hb=2.0):
    return {"address": endpoint, "timeout_s": 10.0, "server_timeout_s": hb,
            "heartbeat_s": min(1.0, hb / 4)}


def _drive(job, limit_s=60.0, on_tick=None):
    """What the modal timer does: tick every 50 ms on this (main) thread."""
    t0 = time.monotonic()
    job.start()
    try:
        while job.tick() == "running":
            if on_tick:
                on_tick(job)
            assert time.monotonic() - t0 < limit_s, "job did not end"
            time.sleep(0.05)
    finally:
        job.release()
    return time.monotonic() - t0


def _tiny_avatar(seed=0):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(12, 3)).astype(np.float32)
    f = np.array([[i, (i + 1) % 12, (i + 2) % 12] for i in range(10)], np.int32)
    return AvatarData(vertices=v, faces=f, uvs=rng.uniform(size=(12, 2)), uv_faces=f,
                      face_material=np.zeros(10, np.int32),
                      texture_sets=[TextureSet("skin", np.full((4, 4, 3), 200, np.uint8))],
                      blendshape_names=["jawOpen"],
                      blendshapes=rng.normal(size=(1, 12, 3)).astype(np.float32) * 0.01)


def test_job_streams_progress_and_result_without_stalling(server):
    endpoint = server.endpoint
    arrays = {"x": np.arange(6, dtype=np.float32)}
    work = functools.partial(jobs.run_job, kind="selfcheck",
                             params={"steps": 5, "step_delay_s": 0.05}, arrays=arrays)
    job = jobs.Job("selfcheck", work, _opts(endpoint))
    steps = []
    _drive(job, on_tick=lambda j: steps.append(j.progress.get("step")))
    assert job.state == "done", job.error
    body, out = job.result
    assert body["steps"] == 5
    assert np.array_equal(out["x"], arrays["x"] * 2 + 1)
    assert job.hello.get("device") == "cpu"
    assert job.progress["step"] == 5 and job.progress["total"] == 5
    assert len([x for x in steps if x]) >= 2  # progress showed while it ran
    assert job.preview is not None and job.preview.shape == (32, 32, 3)
    print(f"longest main-thread tick: {job.max_tick_s * 1000:.2f} ms")
    assert job.max_tick_s < 0.05
    assert jobs.current() is None


def test_avatar_uploaded_once_per_content_hash(server):
    endpoint = server.endpoint
    av = _tiny_avatar()
    aid = content_hash(av)
    uploads = []
    for _ in range(2):
        work = functools.partial(jobs.run_job, kind="selfcheck", params={"avatar_id": aid},
                                 arrays={}, avatar=av, avatar_id=aid)
        job = jobs.Job("selfcheck", work, _opts(endpoint))
        _drive(job)
        assert job.state == "done", job.error
        assert job.result[0]["avatar"]["vertices"] == 12
        uploads.append(job.uploaded)
    assert uploads == [True, False]


def test_cancel_mid_job_ends_cancelled(server):
    endpoint = server.endpoint
    work = functools.partial(jobs.run_job, kind="selfcheck",
                             params={"steps": 200, "step_delay_s": 0.05}, arrays={})
    job = jobs.Job("selfcheck", work, _opts(endpoint))

    def cancel_after_progress(j):
        if (j.progress.get("step") or 0) >= 2:
            j.cancel()

    took = _drive(job, on_tick=cancel_after_progress)
    assert job.state == "cancelled" and job.result is None
    assert took < 8.0


def test_local_backend_start_stop_and_killed_mid_job(tmp_path):
    """The add-on starts `metamorph serve` itself (pid file outside the extension),
    a job on it is reported within the heartbeat timeout when the backend is
    killed, and stop() cleans up."""
    import os
    import signal
    import socket
    import sys

    from blender_addon import backend_process
    from shared.client import Client

    with socket.socket() as s:  # a free loopback port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    pid = backend_process.start(sys.executable, address, log_path=str(tmp_path / "backend.log"))
    try:
        pf = backend_process.pid_file()
        assert open(pf).read() == str(pid)
        assert "blender_addon" not in os.path.abspath(pf)  # never inside the extension
        with Client(address, timeout_s=60.0) as c:
            assert c.hello()["device"] in ("cpu", "cuda")
        assert backend_process.running()

        hb = 2.0
        work = functools.partial(jobs.run_job, kind="selfcheck",
                                 params={"steps": 400, "step_delay_s": 0.05}, arrays={})
        job = jobs.Job("selfcheck", work, _opts(address, hb))
        killed = {}

        def kill_after_progress(j):
            if not killed and (j.progress.get("step") or 0) >= 2:
                os.kill(pid, signal.SIGKILL)
                killed["t"] = time.monotonic()

        _drive(job, on_tick=kill_after_progress)
        waited = time.monotonic() - killed["t"]
        assert job.state == "failed" and isinstance(job.error, errors.ServerUnavailable)
        assert "metamorph serve" in job.error.message
        print(f"dead backend reported after {waited:.2f} s (heartbeat timeout {hb} s)")
        assert waited < hb + 1.5
        assert not backend_process.running()
    finally:
        backend_process.stop()
    assert not backend_process.running() and not os.path.exists(pf)
    with pytest.raises(ValueError, match="Local backend Python"):
        backend_process.start("", address)


def test_background_mode_prints_progress_lines(server, capfd):
    """``blender -b`` scripts see what a long job is doing, as it happens."""
    work = functools.partial(jobs.run_job, kind="selfcheck",
                             params={"steps": 3, "step_delay_s": 0.01}, arrays={})
    job = jobs.Job("selfcheck", work, _opts(server.endpoint))
    job.run_blocking()
    assert job.state == "done", job.error
    out = capfd.readouterr().out
    assert "Metamorph selfcheck: queued" in out
    assert "Metamorph selfcheck: selfcheck 3/3" in out
