"""The Ray worker pool (backend.cluster) on a real local Ray instance with 2 CPU actors.

The jobs are the built-in ``selfcheck`` handler (progress, cancel, arrays both ways,
avatar lookup) so these tests exercise the pool itself; the stylize path over Ray
is covered by tests/test_batch.py and tests/test_server_ray.py.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from backend.cluster.pool import PoolConfig, RayPool  # noqa: E402
from shared.errors import Cancelled, WorkerLost  # noqa: E402


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    cfg = PoolConfig(address="local", num_workers=2, poll_s=0.02, cpus_per_worker=0.5)
    p = RayPool(cfg, str(tmp_path_factory.mktemp("cache")))
    yield p
    p.shutdown()
    ray.shutdown()


def _tiny_avatar():
    from backend.render.procedural import uv_sphere
    from shared.avatar import AvatarData, TextureSet, flat_image

    v, f, uv, uvf = uv_sphere(12, 8)
    return AvatarData(vertices=v, faces=f.astype(np.int32), uvs=uv, uv_faces=uvf.astype(np.int32),
                      face_material=np.zeros(len(f), np.int32),
                      texture_sets=[TextureSet("skin", flat_image((0.5, 0.4, 0.3)))])


def _run(pool, slot, job_id, params, arrays=None, avatar=None, avatar_id=None, events=None, cancelled=None):
    def progress(stage, step, total, losses=None, preview=None):
        if events is not None:
            events.append((job_id, stage, step, time.monotonic()))

    return pool.run(slot, job_id, "selfcheck", params, arrays or {}, avatar, avatar_id, progress,
                    cancelled or (lambda: False))


def test_two_jobs_run_at_once_on_two_actors_and_stream_progress(pool):
    assert pool.slots == 2 and len(set(pool.pids)) == 2
    events, results = [], {}
    x = np.arange(12, dtype=np.float32).reshape(3, 4)

    def go(slot):
        results[slot] = _run(pool, slot, f"job{slot}", {"steps": 6, "step_delay_s": 0.15},
                             {"x": x}, events=events)

    t0 = time.monotonic()
    threads = [threading.Thread(target=go, args=(s,)) for s in (0, 1)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.monotonic() - t0
    for slot in (0, 1):
        body, arrays = results[slot]
        assert body["steps"] == 6
        np.testing.assert_array_equal(arrays["x"], 2 * x + 1)
    # Both ran at once: their progress interleaves, and the wall time is about one job's.
    order = [e[0] for e in sorted(events, key=lambda e: e[3]) if e[1] == "selfcheck"]
    switches = sum(a != b for a, b in zip(order, order[1:]))
    assert switches >= 3, order
    assert wall < 2 * 6 * 0.15, wall


def test_an_avatar_goes_into_the_object_store_once_for_jobs_on_both_actors(pool):
    av = _tiny_avatar()
    before = pool.stats["avatar_puts"]
    out = [_run(pool, s, f"av{s}", {"steps": 1}, avatar=av, avatar_id="tiny-avatar")[0] for s in (0, 1)]
    assert pool.stats["avatar_puts"] - before == 1
    for body in out:
        assert body["avatar"]["vertices"] == len(av.vertices)


def test_cancel_stops_a_job_on_its_actor(pool):
    flag = threading.Event()
    threading.Timer(0.4, flag.set).start()
    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        _run(pool, 0, "cancel-me", {"steps": 200, "step_delay_s": 0.05}, cancelled=flag.is_set)
    assert time.monotonic() - t0 < 3.0


def test_a_killed_worker_is_reported_replaced_and_the_other_job_finishes(pool):
    results, errors = {}, {}
    victim = pool.worker_pid(0)

    def go(slot):
        try:
            results[slot] = _run(pool, slot, f"kill{slot}", {"steps": 8, "step_delay_s": 0.2})
        except WorkerLost as e:
            errors[slot] = e

    threads = [threading.Thread(target=go, args=(s,)) for s in (0, 1)]
    for th in threads:
        th.start()
    time.sleep(0.6)
    os.kill(victim, signal.SIGKILL)
    t_kill = time.monotonic()
    for th in threads:
        th.join()
    assert 0 in errors and errors[0].details["retryable"] is True
    assert time.monotonic() - t_kill < 30
    assert results[1][0]["steps"] == 8
    # A replacement actor took slot 0, and a later job runs there.
    assert pool.worker_pid(0) != victim
    assert _run(pool, 0, "after-kill", {"steps": 2})[0]["steps"] == 2


def test_a_job_past_its_deadline_is_stopped_and_reported(tmp_path):
    p = RayPool(PoolConfig(address="local", num_workers=1, job_deadline_s=1.0, poll_s=0.02,
                                cpus_per_worker=0.5), str(tmp_path))
    try:
        t0 = time.monotonic()
        with pytest.raises(WorkerLost) as ei:
            _run(p, 0, "hang", {"steps": 100, "step_delay_s": 0.5})
        assert ei.value.details["retryable"] is False
        assert time.monotonic() - t0 < 10
        assert _run(p, 0, "after-hang", {"steps": 1})[0]["steps"] == 1
    finally:
        p.shutdown()
