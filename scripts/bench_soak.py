#!/usr/bin/env python
"""Soak benchmark (issue 14, "Measure"): server memory under abuse, against a real
``metamorph serve`` subprocess on loopback.

For each scenario it prints the server's RSS before, at its peak (sampled every
20 ms) and 2 s after:
  malformed     10,000 malformed messages (random bytes, bad versions/kinds/dtypes,
                huge shapes, NaNs, truncated headers, out-of-range avatars, long texts
                and lists), 50 in flight at a time; every one must get a typed error
  clients       50 concurrent clients, each submitting jobs (selfcheck, 256 KB of
                arrays up and back) until 2 each have finished
  guidance      20 distinct guidance names, each loaded by a job through the server's
                guidance cache (--max-guidance-models 2), plus 20 names a client must
                not use ("test-tiny:N", "hf-hub:...", paths): refused at submit. "before"
                is measured with the cache already full (2 names loaded first), the
                steady state of a server that has run jobs. The 20
                loadable names are operator entries (--clip-checkpoint NAME=FILE) that
                all point to one weights file holding the *test model's untrained
                seeded weights*: a memory measurement only, nothing is stylized
  amplification one 4 MB header of millions of empty lists (refused)
Goal: peak growth under 200 MB in each, and back within 50 MB of the start after.

    .venv/bin/python scripts/bench_soak.py [--malformed 10000] [--clients 50] [--names 20]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import psutil
import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared import PROTOCOL_VERSION, protocol  # noqa: E402
from shared.client import Client  # noqa: E402
from shared.errors import Busy, MetamorphError, TooLarge  # noqa: E402

TEST_ARCH = "metamorph-test-tiny"  # open_clip config name of backend.style.guidance's test model


class Peak(threading.Thread):
    """Peak RSS of a process, sampled every 20 ms while running."""

    def __init__(self, proc: psutil.Process):
        super().__init__(daemon=True)
        self.proc, self.peak, self.done = proc, proc.memory_info().rss, threading.Event()

    def run(self):
        while not self.done.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)


def measure(name: str, proc: psutil.Process, fn, setup=None) -> dict:
    if setup is not None:
        setup()
        time.sleep(1.0)
    before = proc.memory_info().rss
    sampler = Peak(proc)
    sampler.start()
    t0 = time.monotonic()
    note = fn()
    seconds = time.monotonic() - t0
    time.sleep(2.0)
    sampler.done.set()
    sampler.join()
    after = proc.memory_info().rss
    mb = 2 ** 20
    row = {"scenario": name, "before_mb": before / mb, "peak_mb": max(sampler.peak, after) / mb,
           "after_mb": after / mb, "seconds": seconds, "note": note}
    row["peak_growth_mb"] = row["peak_mb"] - row["before_mb"]
    row["after_growth_mb"] = row["after_mb"] - row["before_mb"]
    row["ok"] = row["peak_growth_mb"] < 200 and row["after_growth_mb"] < 50
    print(f"{name:14s} RSS before {row['before_mb']:7.0f} MB  peak {row['peak_mb']:7.0f} MB "
          f"(+{row['peak_growth_mb']:5.0f})  after {row['after_mb']:7.0f} MB (+{row['after_growth_mb']:5.0f})  "
          f"{seconds:6.1f} s  {'OK' if row['ok'] else 'OVER GOAL'}  {note}", flush=True)
    return row


# --- malformed messages ---------------------------------------------------------------------------

def _hdr(kind="submit", body=None, arrays=(), **over):
    h = {"v": PROTOCOL_VERSION, "id": "soak", "kind": kind, "body": {"job": "selfcheck"} if body is None else body,
         "arrays": list(arrays)}
    h.update(over)
    return msgpack.packb(h, use_bin_type=True)


def malformed(rng: random.Random) -> list:
    k = rng.randrange(10)
    if k == 0:
        return [rng.randbytes(rng.randint(0, 300))]
    if k == 1:
        return [_hdr("hello", {}, v=rng.choice([0, 2, "1", None, 1.0]))]
    if k == 2:
        return [_hdr(rng.choice(["", "shutdown", "x" * 300, "result"]))]
    if k == 3:
        return [_hdr(arrays=[{"name": "a", "dtype": "|u1", "shape": rng.choice([[2 ** 40], [2 ** 31] * 2, [-1]])}]),
                b"\0" * 8]
    if k == 4:
        return [_hdr(arrays=[{"name": "a", "dtype": rng.choice([">f4", "|O", "<c8", "", None]), "shape": [2]}]),
                b"\0" * 8]
    if k == 5:
        a = np.array([1.0, np.nan, 2.0], np.float32)
        return [_hdr(arrays=[{"name": "x", "dtype": "<f4", "shape": [3]}]), a.tobytes()]
    if k == 6:
        full = _hdr(body={"job": "selfcheck", "params": {"pad": "p" * 80}})
        return [full[:rng.randint(1, len(full) - 1)]]
    if k == 7:
        return [_hdr(body={"job": "selfcheck", "params": rng.choice([
            {"name": "n" * 100_000}, {"tags": ["t"] * 70_000}, {"steps": "three"}, {"guidance": "hf-hub:x/y"}])})]
    if k == 8:
        return [_hdr("cancel", {"job_id": "0" * 32})]
    v = np.zeros((4, 3), np.float32)
    f = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, rng.choice([4, -1, 2 ** 33])]], np.int64)
    body = {"texture_sets": [{"name": "t", "base_color": [1.0, 1.0, 1.0]}], "blendshape_names": []}
    arrays = {"vertices": v, "faces": f, "uvs": v[:, :2].copy(), "uv_faces": f.clip(0, 3).astype(np.int32),
              "face_material": np.zeros(4, np.int32), "blendshapes": np.zeros((0, 4, 3), np.float32),
              "texture_0": np.zeros((8, 8, 3), np.uint8)}
    return protocol.encode("put_avatar", "soak", body, arrays)


def run_malformed(endpoint: str, n: int) -> str:
    rng = random.Random(14)
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    codes: dict[str, int] = {}
    try:
        for start in range(0, n, 50):
            batch = [malformed(rng) for _ in range(min(50, n - start))]
            for frames in batch:
                s.send_multipart(frames, copy=False)
            for _ in batch:
                if not s.poll(20_000):
                    raise SystemExit("a malformed message went unanswered")
                m = protocol.decode(s.recv_multipart(copy=False), protocol.CLIENT_LIMITS, from_client=False)
                code = m.body.get("code", m.kind)
                codes[code] = codes.get(code, 0) + 1
    finally:
        s.close(0)
    if "internal" in codes:
        raise SystemExit(f"internal errors for malformed input: {codes}")
    return f"{n} answered: {dict(sorted(codes.items()))}"


# --- concurrent clients ---------------------------------------------------------------------------

def run_clients(endpoint: str, n_clients: int, jobs_each: int = 2) -> str:
    x = np.arange(64 * 1024, dtype=np.float32)  # 256 KB up, 256 KB back
    stats = {"done": 0, "busy": 0, "full": 0, "errors": 0}
    lock = threading.Lock()

    def one():
        done = 0
        with Client(endpoint, timeout_s=60, server_timeout_s=60) as c:
            c.hello()
            while done < jobs_each:
                try:
                    jid = c.submit("selfcheck", {"steps": 2, "step_delay_s": 0.01}, {"x": x})
                except Busy:
                    key = "busy"
                except TooLarge:
                    key = "full"
                else:
                    r = c.wait(jid, timeout_s=300)
                    ok = np.array_equal(r.arrays["x"], 2 * x + 1)
                    done += ok
                    key = "done" if ok else "errors"
                with lock:
                    stats[key] += 1
                if key in ("busy", "full"):
                    time.sleep(0.05)

    threads = [threading.Thread(target=one) for _ in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return f"{n_clients} clients: {stats['done']} jobs done, refused {stats['full']}x queue full, {stats['busy']}x busy"


# --- guidance names -------------------------------------------------------------------------------

def untrained_test_weights(workdir: Path) -> Path:
    """The test model's (untrained, seeded) weights as an open_clip checkpoint file."""
    from backend.style.guidance import load_guidance  # torch: only this scenario's setup needs it
    import torch

    g = load_guidance("test-tiny", cache=False)
    path = workdir / "test-tiny-untrained-weights.pt"
    torch.save(g.model.state_dict(), path)
    return path


def run_guidance(endpoint: str, names: list[str], refuse: bool = True) -> str:
    loaded, refused = 0, 0
    with Client(endpoint, timeout_s=120, server_timeout_s=120) as c:
        offered = set(c.hello()["guidance_models"])
        for i, name in enumerate(names):
            assert name in offered, name
            r = c.wait(c.submit("selfcheck", {"steps": 1, "guidance": name}), timeout_s=300)
            loaded += r.body["result"]["guidance"]["name"] == name
        for i in range(len(names) if refuse else 0):
            bad = random.choice([f"test-tiny:{i}", f"hf-hub:org/m{i}", f"local-dir:/m/{i}", f"/w/{i}.bin"])
            try:
                c.submit("selfcheck", {"steps": 1, "guidance": bad})
            except MetamorphError:
                refused += 1
    return f"{loaded} names loaded through the cache (2 kept), {refused} client-named sources refused"


# --- header amplification ----------------------------------------------------------------------

def run_amplification(endpoint: str) -> str:
    n = 4_000_000 - 64
    frame = (b"\x84" + msgpack.packb("v") + msgpack.packb(PROTOCOL_VERSION) + msgpack.packb("id")
             + msgpack.packb("amp") + msgpack.packb("kind") + msgpack.packb("hello") + msgpack.packb("body")
             + b"\x81" + msgpack.packb("x") + b"\xdd" + n.to_bytes(4, "big") + b"\x90" * n)
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    try:
        s.send(frame)
        if not s.poll(30_000):
            raise SystemExit("the amplification header went unanswered")
        m = protocol.decode(s.recv_multipart(copy=False), protocol.CLIENT_LIMITS, from_client=False)
    finally:
        s.close(0)
    return f"{len(frame) / 2 ** 20:.1f} MB header -> {m.body.get('code', m.kind)}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--malformed", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--names", type=int, default=20)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="metamorph-soak-") as tmp:
        work = Path(tmp)
        weights = untrained_test_weights(work)
        names = [f"{TEST_ARCH}:soak{i:02d}" for i in range(args.names)]
        cmd = [sys.executable, "-m", "backend.cli", "serve", "--bind", "tcp://127.0.0.1:*", "--device", "cpu",
               "--cache-dir", str(work / "cache"), "--ready-file", str(work / "ready.json"),
               "--max-guidance-models", "2"]
        for n in names:
            cmd += ["--clip-checkpoint", f"{n}={weights}"]
        log = open(work / "server.log", "wb")
        server = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            while not (work / "ready.json").exists():
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"server did not start:\n{(work / 'server.log').read_text()}")
                time.sleep(0.05)
            endpoint = json.loads((work / "ready.json").read_text())["endpoint"]
            with Client(endpoint, timeout_s=60) as c:
                info = c.hello()
            print(f"server pid {server.pid} on {endpoint}; quota {info['max_jobs_per_client']} jobs per client, "
                  f"queue {info['max_queue']}; guidance weights for the {args.names} names: the TEST MODEL's "
                  f"UNTRAINED seeded weights (memory measurement only)", flush=True)
            proc = psutil.Process(server.pid)
            rows = [measure("malformed", proc, lambda: run_malformed(endpoint, args.malformed)),
                    measure("clients", proc, lambda: run_clients(endpoint, args.clients)),
                    # "before" is the steady state: the 2-model cache already full (2 names loaded)
                    measure("guidance", proc, lambda: run_guidance(endpoint, names),
                            setup=lambda: run_guidance(endpoint, names[:2], refuse=False)),
                    measure("amplification", proc, lambda: run_amplification(endpoint))]
        finally:
            server.terminate()
            server.wait(30)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
    print("goal (peak < +200 MB, after < +50 MB):", "met in every scenario" if all(r["ok"] for r in rows)
          else "NOT met in " + ", ".join(r["scenario"] for r in rows if not r["ok"]))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
