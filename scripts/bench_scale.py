"""Scale-out figures: the same ZeroMQ front end with 1 and 2 Ray workers, and without Ray.

Prints, on this machine:
  - throughput (jobs per minute) of N short stylize jobs (test guidance model, tiny
    settings, labelled) submitted at once by N clients, for 1 and 2 CPU workers;
  - the front end's ``hello`` latency while every worker is busy (median, max);
  - the per-job overhead of the Ray path against the in-process worker (the
    same short job run alone on each, median of several).

    .venv/bin/python scripts/bench_scale.py [--jobs 8] [--workers 1,2] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import start_server  # noqa: E402  (the tests' real-subprocess server starter)

from backend.avatar import sample_avatar  # noqa: E402
from backend.style.rig import default_rig  # noqa: E402
from shared.stylize import StyleTerm, StylizeRequest  # noqa: E402

TINY = {"resolution": 64, "levels": 3, "width": 16, "steps": 25, "views_per_step": 2, "render_size": 96}


def job_params(av, aid: str, seed: int) -> dict:
    cams = default_rig(av.vertices, blendshapes=av.blendshapes)[:4]
    return StylizeRequest(aid, [StyleTerm("text", 1.0, text="a bronze statue")], cams, frames=[0.0], seed=seed,
                          guidance="test-tiny", texture_size=64, passes=["color"], pass_resolution=64,
                          settings=dict(TINY)).to_params()


def run_jobs(sp, av, n: int) -> tuple[float, list[float]]:
    """Submit ``n`` jobs from ``n`` clients at once -> (wall seconds, hello latencies while busy)."""
    with sp.client(timeout_s=120) as c:
        aid = c.put_avatar(av)
    done, lat = [], []

    def one(i):
        with sp.client(timeout_s=600, server_timeout_s=60) as c:
            jid = c.submit("stylize", job_params(av, aid, i))
            c.wait(jid, timeout_s=600)
            done.append(i)

    t0 = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    with sp.client(timeout_s=10) as probe:
        while len(done) < n:
            t = time.monotonic()
            probe.hello()
            lat.append(time.monotonic() - t)
            time.sleep(0.1)
    for th in threads:
        th.join()
    return time.monotonic() - t0, lat


def single_job_seconds(sp, av, repeats: int) -> float:
    with sp.client(timeout_s=120) as c:
        aid = c.put_avatar(av)
        times = []
        for i in range(repeats):
            t = time.monotonic()
            c.wait(c.submit("stylize", job_params(av, aid, 100 + i)), timeout_s=600)
            times.append(time.monotonic() - t)
    return statistics.median(times[1:] if len(times) > 1 else times)  # first: warm-up (model load)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--repeats", type=int, default=4, help="runs of the lone job for the overhead figure")
    args = ap.parse_args()
    av = sample_avatar(texture_size=256)
    print("guidance: test-tiny (untrained test model: figures are mechanics, not style quality)")
    tput = {}
    for w in [int(x) for x in args.workers.split(",")]:
        with tempfile.TemporaryDirectory() as d:
            sp = start_server("--ray", "local", "--workers", str(w), "--max-jobs-per-client", "64",
                              tmp_path=Path(d), timeout_s=300)
            try:
                run_jobs(sp, av, w)  # warm every worker (imports, guidance model, avatar context)
                wall, lat = run_jobs(sp, av, args.jobs)
                if w == 1:
                    ray_single = single_job_seconds(sp, av, args.repeats)
            finally:
                sp.stop()
        tput[w] = args.jobs / wall * 60
        print(f"ray workers={w}: {args.jobs} jobs in {wall:.1f} s -> {tput[w]:.1f} jobs/min; hello while busy: "
              f"median {statistics.median(lat) * 1e3:.1f} ms, max {max(lat) * 1e3:.1f} ms over {len(lat)}")
    if 1 in tput and 2 in tput:
        print(f"speed-up 2 vs 1 workers: {tput[2] / tput[1]:.2f}x (goal >= 1.7x)")
    with tempfile.TemporaryDirectory() as d:
        sp = start_server(tmp_path=Path(d), timeout_s=300)
        try:
            local_single = single_job_seconds(sp, av, args.repeats)
        finally:
            sp.stop()
    if 1 in tput:
        print(f"lone job: in-process worker {local_single:.2f} s, Ray worker {ray_single:.2f} s -> overhead "
              f"{ray_single - local_single:+.2f} s per job (goal < 0.5 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
