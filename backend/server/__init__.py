"""``metamorph serve``: the ZeroMQ ROUTER server that caches avatars and runs jobs.

    config          ServerConfig (every default), the start-up checks (security, keys,
                    cache folder, device), versions
    cli             the ``serve`` subcommand (its defaults come from ServerConfig)
    avatars         the in-memory avatar cache (LRU by count and bytes, frozen)
    job_queue       the job queue: FIFO, one worker, cancel, quota, sweep, progress
    runner          one job in the worker: context, progress frames, typed failures
    router          the sockets, the poll loop, the dispatch table, job ownership
    auth            CURVE: authorized keys, the ZAP thread

The server only writes under its own cache folder and refuses to start when it
cannot (see README, "The server").
"""

from shared.endpoints import is_loopback

from .avatars import AvatarCache, avatar_arrays, avatar_nbytes, freeze_avatar
from .cli import add_parser, config_from_args, serve
from .config import (DEFAULT_BIND, SERVER_VERSION, ConfigError, ServerConfig, check_cache_dir,
                     check_security, resolve_device)
from backend.style.guidance_cache import GuidanceCache
from .router import Server

__all__ = ["AvatarCache", "ConfigError", "DEFAULT_BIND", "GuidanceCache", "SERVER_VERSION", "Server",
           "ServerConfig", "add_parser", "avatar_arrays", "avatar_nbytes", "check_cache_dir",
           "check_security", "config_from_args", "freeze_avatar", "is_loopback", "resolve_device", "serve"]
