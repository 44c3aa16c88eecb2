"""The server's configuration, its defaults (the CLI's defaults come from here) and
the checks that make ``metamorph serve`` refuse to start with a sentence saying what
to change: an exposed bind without CURVE, missing or unsafe key files, a cache
folder it cannot write, a device that is not there.
"""

from __future__ import annotations

import logging
import stat
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import zmq

from shared import PROTOCOL_VERSION, protocol
from shared.endpoints import is_loopback

from backend.cache import cache_root
from backend.checkpoints import ensure_writable_dir
from backend.devices import resolve_device  # noqa: F401  (re-exported: the server resolves its device here)

log = logging.getLogger("metamorph.server")

DEFAULT_BIND = "tcp://127.0.0.1:5557"
SERVER_VERSION = "0.1.0"
FINISHED_JOBS_KEPT = 256  # finished jobs whose state `status` still reports


@dataclass
class ServerConfig:
    bind: str = DEFAULT_BIND
    device: str = "auto"                  # auto | cpu | cuda | cuda:N
    cache_dir: str | None = None          # server-owned root; default backend.cache.cache_root()
    client_timeout_s: float = 30.0        # silent client -> its jobs are cancelled
    heartbeat_s: float = 2.0              # ZMTP heartbeat interval
    avatar_cache_size: int = 8            # avatars kept in memory (LRU)
    avatar_cache_mb: int = 4096           # ...and their bytes
    max_queue: int = 32                   # queued + running jobs, all clients together
    max_jobs_per_client: int = 4          # queued + running jobs of one client
    max_guidance_models: int = 2          # guidance models kept loaded (LRU)
    limits: protocol.Limits = field(default_factory=protocol.Limits)
    curve_secret_key: str | None = None   # path to a zmq.auth secret key file
    curve_authorized_dir: str | None = None
    insecure: bool = False
    insecure_keys: bool = False           # accept a secret key file others can read
    ready_file: str | None = None         # JSON {endpoint, pid} written once bound (tests)
    # Guidance weights the operator keeps on this machine: "ViT-B-32" (any tag) or an
    # exact "name:tag" -> weights file. Clients name models, never paths.
    clip_checkpoints: dict[str, str] = field(default_factory=dict)
    # Scale-out: run jobs on a Ray worker pool (None: in-process, one job at a time).
    ray: str | None = None                # "auto" | "local" | a cluster address
    ray_workers: int = 0                  # 0: one per GPU, else one per CPU
    job_deadline_s: float = 6 * 3600.0    # a Ray job running longer is stopped (its worker replaced)


class ConfigError(Exception):
    """The server refuses to start; the message says what to change."""


def check_checkpoints(cfg: ServerConfig) -> None:
    """Every configured guidance weights file must exist before the server starts."""
    for name, path in cfg.clip_checkpoints.items():
        if not Path(path).is_file():
            raise ConfigError(f"--clip-checkpoint {name}={path}: no such file. Give the path of an "
                              f"open_clip weights file for the '{name.split(':')[0]}' architecture.")


def check_security(cfg: ServerConfig) -> str:
    """-> "curve" | "insecure" | "loopback"; raises ConfigError when the bind is
    exposed without CURVE and without --insecure, or a CURVE file is missing or unsafe."""
    if cfg.curve_secret_key or cfg.curve_authorized_dir:
        if not (cfg.curve_secret_key and cfg.curve_authorized_dir):
            raise ConfigError("CURVE needs both --curve-secret-key FILE and "
                              "--curve-authorized-dir DIR (create keys with `metamorph keys generate`).")
        if not Path(cfg.curve_secret_key).is_file():
            raise ConfigError(f"CURVE secret key file {cfg.curve_secret_key} does not exist.")
        if not Path(cfg.curve_authorized_dir).is_dir():
            raise ConfigError(f"CURVE authorized-keys directory {cfg.curve_authorized_dir} does not exist.")
        check_secret_key_mode(cfg.curve_secret_key, cfg.insecure_keys)
        return "curve"
    if is_loopback(cfg.bind):
        return "loopback"
    if cfg.insecure:
        return "insecure"
    raise ConfigError(
        f"Refusing to listen on {cfg.bind} without encryption: anyone who can reach it could "
        f"run jobs. Configure CURVE (--curve-secret-key FILE --curve-authorized-dir DIR; create "
        f"keys with `metamorph keys generate`), bind to tcp://127.0.0.1, or pass --insecure on a "
        f"network you trust.")


def check_secret_key_mode(path: str, allow: bool) -> None:
    """A secret key file others can read is refused (``allow``: warned about)."""
    mode = Path(path).stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        msg = (f"The server's secret key file {path} can be read by other users (mode "
               f"{stat.S_IMODE(mode):o}); run `chmod 600 {path}`")
        if not allow:
            raise ConfigError(msg + ", or pass --insecure-keys to start anyway.")
        log.warning("%s (started anyway: --insecure-keys).", msg)


def check_cache_dir(cfg: ServerConfig) -> Path:
    """The server's cache root (``backend.cache.cache_root(cfg.cache_dir)``), created and
    proven writable; raises :class:`shared.errors.CacheUnavailable` with the path and
    what to do, so ``serve`` refuses to start rather than fail every job later."""
    return ensure_writable_dir(cache_root(cfg.cache_dir))


def versions() -> dict:
    """Versions ``hello`` reports (torch and open_clip without importing them)."""
    out = {"server": SERVER_VERSION, "protocol": PROTOCOL_VERSION,
           "python": ".".join(map(str, sys.version_info[:3])), "numpy": np.__version__,
           "pyzmq": zmq.__version__, "libzmq": zmq.zmq_version()}
    for pkg in ("torch", "open_clip_torch"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out
