"""Shared fixtures: a real ``metamorph serve`` subprocess on a free loopback port.

``start_server(*args, env=..., tmp_path=...)`` starts one and waits until it
answers ``hello``; extra CLI args go straight to ``metamorph serve`` (e.g.
``"--client-timeout", "2"``, ``"--limit", "max_vertices=1000"``). The session
fixture ``server`` is one shared default server; tests that need special
settings (or kill it) start their own and stop it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shared.client import Client  # noqa: E402
from shared.errors import ServerUnavailable  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Run torch single-threaded where a test module loaded it.

    The tests' tensors are small: on the 2-core CI box torch's thread pool spends
    more time waiting than working (10-20x slower measured). torch is looked up,
    not imported, because the Blender phase of the suite must never load it.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class ServerProcess:
    """A running ``metamorph serve`` subprocess. ``endpoint`` is where it listens."""

    def __init__(self, proc: subprocess.Popen, endpoint: str, workdir: Path, log_path: Path):
        self.proc = proc
        self.endpoint = endpoint
        self.workdir = workdir
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, **kw) -> Client:
        """A new client (caller closes it; or use ``with server.client() as c``)."""
        kw.setdefault("timeout_s", 20.0)
        kw.setdefault("server_timeout_s", 20.0)
        return Client(self.endpoint, **kw)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> int:
        if self.alive:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def kill(self) -> None:
        if self.alive:
            self.proc.kill()
            self.proc.wait(5)


def server_command(*args: str, bind: str = "tcp://127.0.0.1:*", workdir: Path) -> list[str]:
    args = list(args)
    cmd = [sys.executable, "-m", "backend.cli", "serve", "--bind", bind,
           "--ready-file", str(workdir / "ready.json")]
    if "--cache-dir" not in args:
        cmd += ["--cache-dir", str(workdir / "cache")]
    if "--device" not in args:
        cmd += ["--device", "cpu"]  # no GPU on CI; skips importing torch just to ask
    return cmd + args


def start_server(*args: str, env: dict | None = None, tmp_path: Path | None = None,
                 bind: str = "tcp://127.0.0.1:*", timeout_s: float = 120.0,
                 client_kw: dict | None = None) -> ServerProcess:
    """Start ``metamorph serve *args`` and wait until it answers ``hello``.

    ``env`` entries are added to the current environment. ``client_kw`` are
    passed to the Client used for the readiness hello (e.g. CURVE keys).
    Raises RuntimeError with the server's log if it exits or never answers.
    """
    workdir = Path(tmp_path or tempfile.mkdtemp(prefix="metamorph-server-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "server.log"
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), full_env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    full_env.update(env or {})
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(server_command(*args, bind=bind, workdir=workdir), cwd=ROOT,
                                env=full_env, stdout=log, stderr=subprocess.STDOUT)
    ready = workdir / "ready.json"
    deadline = time.monotonic() + timeout_s
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"metamorph serve did not start (rc={proc.poll()}):\n"
                               f"{log_path.read_text(errors='replace')}")
        time.sleep(0.05)
    sp = ServerProcess(proc, json.loads(ready.read_text())["endpoint"], workdir, log_path)
    kw = {"timeout_s": 5.0, "server_timeout_s": 5.0, **(client_kw or {})}
    while True:
        try:
            with sp.client(**kw) as c:
                c.hello()
            return sp
        except ServerUnavailable:
            if not sp.alive or time.monotonic() > deadline:
                sp.kill()
                raise RuntimeError(f"metamorph serve never answered hello:\n{sp.log()}")


@pytest.fixture
def scene():
    """A fresh Blender scene with the extension registered (Blender-side tests only: it
    imports bpy, so backend tests, which load torch, never use it)."""
    import blender_addon
    from addon_scene import fresh

    sc = fresh()
    blender_addon.register()
    yield sc
    blender_addon.unregister()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One default server for the session (loopback, --device cpu)."""
    sp = start_server(tmp_path=tmp_path_factory.mktemp("server"))
    yield sp
    sp.stop()


@pytest.fixture
def client(server):
    with server.client() as c:
        c.hello()
        yield c
