"""A real `metamorph serve` subprocess on loopback for the add-on tests.

Not a test module: helpers imported by ``tests/test_addon_*.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

SERVER_CMD = os.environ.get("MM_TEST_SERVER_CMD", "-m backend.cli").split()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_server(workdir, heartbeat_s: float = 0.5, extra=()) -> tuple[subprocess.Popen, str]:
    """Start the server bound to a free loopback port; returns (process, endpoint)."""
    os.makedirs(str(workdir), exist_ok=True)
    ready = os.path.join(str(workdir), f"ready-{time.monotonic_ns()}.json")
    log = open(os.path.join(str(workdir), "server.log"), "ab")
    proc = subprocess.Popen(
        [sys.executable, *SERVER_CMD, "serve", "--bind", "tcp://127.0.0.1:*",
         "--device", "cpu", "--heartbeat", str(heartbeat_s), "--cache-dir",
         os.path.join(str(workdir), "cache"), "--ready-file", ready, *extra],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if os.path.exists(ready):
            return proc, json.load(open(ready))["endpoint"]
        if proc.poll() is not None:
            raise RuntimeError("metamorph serve exited: " +
                               open(os.path.join(str(workdir), "server.log")).read()[-2000:])
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("metamorph serve did not become ready within 60 s")


def stop_server(proc) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
