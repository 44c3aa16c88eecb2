"""``metamorph serve --ray``: the same ZeroMQ front end over a pool of 2 real Ray CPU workers.

The server subprocess starts and stops its own local Ray instance. Jobs are the real
``stylize`` handler (test guidance model, tiny settings) and the ``selfcheck`` one.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import numpy as np
import pytest

from conftest import start_server
from shared.errors import WorkerLost
from shared.stylize import StyleTerm, StylizeRequest, StylizeResult
from backend.style.rig import turntable
from backend.style.testing import tiny_avatar

pytest.importorskip("ray")

TINY = {"resolution": 32, "width": 16, "render_size": 48, "steps": 3}


def stylize_params(av, aid, seed):
    return StylizeRequest(aid, [StyleTerm("text", 1.0, "a bronze statue")],
                          turntable(av.vertices, 2, (0.0,), 360.0, resolution=64), frames=[0.0, 3.0], seed=seed,
                          guidance="test-tiny", texture_size=32, pass_resolution=32, settings=dict(TINY)).to_params()


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory):
    sp = start_server("--ray", "local", "--workers", "2", "--heartbeat", "0.5",
                      tmp_path=tmp_path_factory.mktemp("ray-server"), timeout_s=300)
    yield sp
    sp.stop(timeout_s=60)


def worker_pids(sp) -> list[int]:
    """Current worker pids, from the server's log (start-up line, then replacements)."""
    log = sp.log()
    pids = [int(p) for p in re.search(r"Ray pool: \d+ \w+ worker\(s\), pids \[([\d, ]+)\]", log).group(1).split(",")]
    for slot, pid in re.findall(r"Ray worker (\d+) replaced: pid (\d+)", log):
        pids[int(slot)] = int(pid)
    return pids


def test_hello_reports_the_pool(ray_server):
    with ray_server.client() as c:
        h = c.hello()
    assert h["workers"] == 2 and h["device"].startswith("ray:cpu")
    assert len(set(worker_pids(ray_server))) == 2


def test_two_clients_run_at_once_and_get_what_the_single_process_server_returns(ray_server, server):
    av = tiny_avatar()
    results, events = {}, []

    def run(i):
        with ray_server.client(timeout_s=300, server_timeout_s=60) as c:
            aid = c.put_avatar(av)
            jid = c.submit("stylize", stylize_params(av, aid, seed=i))
            m = c.wait(jid, timeout_s=300, on_progress=lambda p: events.append((i, time.monotonic(),
                                                                                 p.body["stage"])))
            events.append((i, time.monotonic(), "result"))
            results[i] = StylizeResult.from_wire(m.body["result"], m.arrays)

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert set(results) == {0, 1}
    # Both ran at the same time: each started before the other one's result came back.
    started = {i: t for i, t, stage in events if stage == "started"}
    ended = {i: t for i, t, stage in events if stage == "result"}
    assert max(started.values()) < min(ended.values()), events
    # The one avatar went into the object store once, for both workers.
    assert len(re.findall(r"avatar \w+ put into the object store", ray_server.log())) == 1
    # Same request and seed on the in-process server: the same result.
    with server.client(timeout_s=300) as c:
        aid = c.put_avatar(av)
        m = c.wait(c.submit("stylize", stylize_params(av, aid, seed=1)), timeout_s=300)
    ref = StylizeResult.from_wire(m.body["result"], m.arrays)
    got = results[1]
    np.testing.assert_allclose(got.neutral_offsets, ref.neutral_offsets, atol=1e-5)
    np.testing.assert_allclose(got.blendshape_offsets, ref.blendshape_offsets, atol=1e-5)
    for a, b in zip(got.textures, ref.textures):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert got.body["metadata"]["guidance_is_test_model"] is True


def test_a_killed_worker_is_reported_or_retried_the_other_job_finishes_and_later_jobs_run(ray_server):
    outcome = {}

    def run(i):
        with ray_server.client(timeout_s=120, server_timeout_s=60) as c:
            jid = c.submit("selfcheck", {"steps": 30, "step_delay_s": 0.1})
            try:
                outcome[i] = c.wait(jid, timeout_s=120).body["result"]["steps"]
            except WorkerLost as e:
                outcome[i] = e

    pids = worker_pids(ray_server)
    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for th in threads:
        th.start()
    time.sleep(1.0)  # both running
    os.kill(pids[0], signal.SIGKILL)
    for th in threads:
        th.join()
    # The killed job was retried once on a worker (its client got the full result) or
    # reported as worker_lost; the other job finished.
    assert sorted(type(v).__name__ for v in outcome.values()) in (["int", "int"], ["WorkerLost", "int"])
    assert 30 in outcome.values()
    assert "requeued after its worker was lost" in ray_server.log() or any(
        isinstance(v, WorkerLost) for v in outcome.values())
    # The front end kept serving and a replacement worker took the dead one's place.
    assert ray_server.alive
    assert pids[0] not in worker_pids(ray_server)
    with ray_server.client(timeout_s=60) as c:
        assert c.wait(c.submit("selfcheck", {"steps": 2}), timeout_s=60).body["result"]["steps"] == 2


def test_cancel_and_queue_positions_behave_as_in_process(ray_server):
    with ray_server.client(timeout_s=60) as c:
        jobs = [c.submit("selfcheck", {"steps": 200, "step_delay_s": 0.05}) for _ in range(3)]
        time.sleep(0.5)
        st = {j["job_id"]: j for j in c.status()["jobs"]}
        states = sorted(st[j]["state"] for j in jobs)
        assert states == ["queued", "running", "running"]  # 2 workers: 2 run, 1 waits
        for j in jobs:
            c.cancel(j)
        t0 = time.monotonic()
        for j in jobs:
            with pytest.raises(Exception) as ei:
                c.wait(j, timeout_s=30)
            assert getattr(ei.value, "code", "") == "cancelled"
        assert time.monotonic() - t0 < 10
