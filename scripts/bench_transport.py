#!/usr/bin/env python
"""Transport benchmark: a real-size avatar and a result of the same size over
loopback ZeroMQ to a real ``metamorph serve`` subprocess.

Avatar: 50,000 vertices, 100,000 triangles, 52 blendshapes, one 2048x2048 RGB
texture (~52 MB of arrays). Measured:
  put_avatar      client validate + hash, upload, server validate + hash, reply
  put_avatar raw  the request alone (no client-side checks)
  result          a selfcheck job echoing the same arrays: upload + same-size result back
Goal: under 1 s each. Prints seconds (median of --repeat) and MB/s.

    .venv/bin/python scripts/bench_transport.py [--address tcp://host:port] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared import avatar  # noqa: E402
from shared.client import Client  # noqa: E402

ARKIT_COUNT = 52


def bench_avatar(n_vertices=50_000, n_faces=100_000, n_shapes=ARKIT_COUNT, tex=2048, seed=0):
    rng = np.random.default_rng(seed)
    v = rng.normal(0, 0.1, (n_vertices, 3)).astype(np.float32)
    f = rng.integers(0, n_vertices, (n_faces, 3), dtype=np.int32)
    uv = rng.random((n_vertices, 2), dtype=np.float32)
    image = rng.integers(0, 256, (tex, tex, 3), dtype=np.uint8)
    shapes = rng.normal(0, 0.002, (n_shapes, n_vertices, 3)).astype(np.float32)
    return avatar.AvatarData(v, f, uv, f.copy(), np.zeros(n_faces, np.int32),
                             [avatar.TextureSet("skin", image)],
                             [f"shape_{i:02d}" for i in range(n_shapes)], shapes, name="bench")


def start_server(workdir: Path) -> tuple[subprocess.Popen, str]:
    ready = workdir / "ready.json"
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--bind", "tcp://127.0.0.1:*",
                             "--device", "cpu", "--cache-dir", str(workdir / "cache"),
                             "--ready-file", str(ready)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=open(workdir / "server.log", "wb"))
    deadline = time.monotonic() + 120
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"server did not start:\n{(workdir / 'server.log').read_text()}")
        time.sleep(0.05)
    return proc, json.loads(ready.read_text())["endpoint"]


def timed(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--address", help="use a running server instead of starting one")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    av = bench_avatar()
    body, arrays = avatar.to_wire(av)
    mb = sum(a.nbytes for a in arrays.values()) / 1e6
    print(f"avatar: {av.num_vertices} vertices, {av.num_faces} triangles, {len(av.blendshape_names)} "
          f"blendshapes, {av.texture_sets[0].image.shape[1]}x{av.texture_sets[0].image.shape[0]} "
          f"texture = {mb:.1f} MB of arrays")

    proc = None
    tmp = tempfile.TemporaryDirectory(prefix="metamorph-bench-")
    address = args.address
    if address is None:
        proc, address = start_server(Path(tmp.name))
    try:
        with Client(address, timeout_s=60, server_timeout_s=60) as c:
            c.hello()
            c.put_avatar(av, force=True)  # warm-up (connection, allocator)

            med, best, aid = timed(lambda: c.put_avatar(av, force=True), args.repeat)
            print(f"put_avatar      round trip: {med:.3f} s median, {best:.3f} s best "
                  f"({mb / med:.0f} MB/s)  [goal < 1 s]")
            med, best, _ = timed(lambda: c.request("put_avatar", body, arrays), args.repeat)
            print(f"put_avatar raw  round trip: {med:.3f} s median, {best:.3f} s best ({mb / med:.0f} MB/s)")
            med, best, _ = timed(lambda: c.has_avatar(aid), args.repeat)
            print(f"has_avatar      round trip: {med * 1000:.2f} ms median (skips re-uploads)")

            def echo():
                jid = c.submit("selfcheck", {"steps": 1, "transform": "echo"}, arrays)
                return c.wait(jid, timeout_s=60)

            med, best, res = timed(echo, args.repeat)
            for k, a in arrays.items():
                assert np.array_equal(res.arrays[k], a), k
            print(f"result          round trip: {med:.3f} s median, {best:.3f} s best for {mb:.1f} MB up + "
                  f"{mb:.1f} MB back ({2 * mb / med:.0f} MB/s)  [goal < 1 s]")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(20)
        tmp.cleanup()
    print(f"machine: {os.cpu_count()} CPUs, loopback tcp")
    return 0


if __name__ == "__main__":
    sys.exit(main())
