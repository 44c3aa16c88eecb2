"""Optional local backend: ``<python> -m backend.cli serve --bind ADDRESS`` as a
subprocess started from Blender, stopped on request, at unregister and at quit.

The pid file lives in the extension's user folder (or the system temp folder),
never inside the extension itself; a backend left over from a crashed session is
found through it and stopped before a new one starts.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import tempfile

_proc: subprocess.Popen | None = None
_address = ""  # the address the running local backend serves


def state_dir() -> str:
    try:
        import bpy
        return bpy.utils.extension_path_user(__package__, path="", create=True)
    except Exception:  # not installed as an extension (checkout, tests)
        d = os.path.join(tempfile.gettempdir(), "metamorph-addon")
        os.makedirs(d, exist_ok=True)
        return d


def pid_file() -> str:
    return os.path.join(state_dir(), "backend.pid")


def command(python: str, address: str) -> list[str]:
    return [python, "-m", "backend.cli", "serve", "--bind", address]


def start(python: str, address: str, log_path: str | None = None) -> int:
    """Start the backend; returns its pid. Raises ValueError with a readable message."""
    global _proc, _address
    if not python or not os.path.exists(python):
        raise ValueError("Set 'Local backend Python' in the preferences to a Python with "
                         "Metamorph installed (e.g. /path/to/metamorph/.venv/bin/python).")
    stop(include_stale=True)
    log = open(log_path or os.path.join(state_dir(), "backend.log"), "ab")
    _proc = subprocess.Popen(command(python, address), stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    _address = address
    with open(pid_file(), "w") as f:
        f.write(str(_proc.pid))
    return _proc.pid


def running() -> bool:
    return _proc is not None and _proc.poll() is None


def address() -> str:
    """The address of the local backend this session started ("" when none)."""
    return _address if running() else ""


def stop(timeout_s: float = 5.0, include_stale: bool = False) -> bool:
    """Stop the backend this session started; with ``include_stale`` also one an
    earlier (crashed) session recorded in the pid file. Returns True if
    something was stopped."""
    global _proc
    stopped = False
    if _proc is not None:
        if _proc.poll() is None:
            _proc.terminate()
            try:
                _proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                _proc.kill()
                _proc.wait(timeout_s)
            stopped = True
        _proc = None
        _remove_pid_file()
    pf = pid_file()
    if include_stale and os.path.exists(pf):
        try:
            pid = int(open(pf).read().strip() or 0)
            if pid > 0 and _is_our_backend(pid):
                os.kill(pid, signal.SIGTERM)
                stopped = True
        except (ValueError, OSError):
            pass
        try:
            os.remove(pf)
        except OSError:
            pass
    return stopped


def _remove_pid_file() -> None:
    try:
        os.remove(pid_file())
    except OSError:
        pass


def _is_our_backend(pid: int) -> bool:
    """Only signal a process that is really a Metamorph server (pids get reused)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
        return b"backend.cli" in cmd and b"serve" in cmd
    except OSError:  # no /proc (Windows, macOS): never signal a pid we cannot identify
        return False


atexit.register(stop)
