"""``metamorph serve``: the command line of the server. Every default comes from
:class:`backend.server.config.ServerConfig`."""

from __future__ import annotations

import argparse
import logging
import os
import sys

import zmq

from shared import protocol
from shared.errors import MetamorphError

from backend.jobs import HandlerImportError

from .config import ConfigError, ServerConfig
from .router import Server

log = logging.getLogger("metamorph.server")

DEFAULTS = ServerConfig()


def _parse_limit(text: str) -> tuple[str, int]:
    key, _, value = text.partition("=")
    names = set(protocol.Limits().to_dict())
    if key not in names or not value:
        raise argparse.ArgumentTypeError(f"--limit takes KEY=INT with KEY in {sorted(names)}")
    try:
        return key, int(float(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--limit {key}= needs a whole number, got {value!r}") from None


def _parse_checkpoint(text: str) -> tuple[str, str]:
    name, _, path = text.partition("=")
    if not name or not path:
        raise argparse.ArgumentTypeError("--clip-checkpoint takes NAME=PATH, e.g. ViT-B-32=/models/vit-b-32.bin")
    return name.strip(), os.path.abspath(os.path.expanduser(path.strip()))


def add_parser(subparsers) -> None:
    d = DEFAULTS
    p = subparsers.add_parser("serve", help="run the backend server",
                              description="Serve Metamorph jobs over ZeroMQ (ROUTER).")
    p.add_argument("--bind", default=d.bind,
                   help="ZeroMQ endpoint (default %(default)s; tcp://127.0.0.1:* picks a free port)")
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda | cuda:N (default %(default)s)")
    p.add_argument("--cache-dir", default=d.cache_dir, help="server-owned cache folder "
                   "(default $METAMORPH_CACHE, else $XDG_CACHE_HOME/metamorph or ~/.cache/metamorph)")
    p.add_argument("--client-timeout", type=float, default=d.client_timeout_s, metavar="S",
                   help="cancel the jobs of a client silent for S seconds (default %(default)s)")
    p.add_argument("--heartbeat", type=float, default=d.heartbeat_s, metavar="S",
                   help="ZMTP heartbeat interval (default %(default)s)")
    p.add_argument("--avatar-cache", type=int, default=d.avatar_cache_size, metavar="N",
                   help="avatars kept in memory (default %(default)s)")
    p.add_argument("--avatar-cache-mb", type=int, default=d.avatar_cache_mb, metavar="MB",
                   help="bytes of avatars kept in memory (default %(default)s)")
    p.add_argument("--max-queue", type=int, default=d.max_queue, metavar="N",
                   help="jobs queued or running at most, all clients together (default %(default)s)")
    p.add_argument("--max-jobs-per-client", type=int, default=d.max_jobs_per_client, metavar="N",
                   help="jobs one client may have queued or running (default %(default)s)")
    p.add_argument("--max-guidance-models", type=int, default=d.max_guidance_models, metavar="N",
                   help="guidance models kept loaded, least recently used dropped (default %(default)s)")
    p.add_argument("--limit", type=_parse_limit, action="append", default=[], metavar="KEY=INT",
                   help="override a protocol limit, e.g. --limit max_vertices=1000000")
    p.add_argument("--curve-secret-key", metavar="FILE",
                   help="server secret key (.key_secret from `metamorph keys generate`); turns CURVE on")
    p.add_argument("--curve-authorized-dir", metavar="DIR",
                   help="folder of allowed client public keys (*.key; malformed files are skipped loudly)")
    p.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback bind without CURVE (prints a warning)")
    p.add_argument("--insecure-keys", action="store_true",
                   help="start even though the secret key file is readable by other users (warns)")
    p.add_argument("--clip-checkpoint", type=_parse_checkpoint, action="append", default=[],
                   metavar="NAME=PATH", help="local weights for a guidance model, by architecture "
                   "(ViT-B-32=FILE, any tag) or exact name:tag; repeatable (for servers without "
                   "internet access; clients can never name files)")
    p.add_argument("--ray", default=d.ray, metavar="auto|local|ADDRESS",
                   help="run jobs on a Ray worker pool: one worker per GPU (else per CPU), N jobs at once. "
                   "'auto' joins RAY_ADDRESS or the cluster `ray start` made here, else starts one; 'local' "
                   "starts one; else a cluster address (default: in-process, one job at a time)")
    p.add_argument("--workers", type=int, default=d.ray_workers, metavar="N",
                   help="with --ray: number of workers (default: one per GPU, else one per CPU)")
    p.add_argument("--job-deadline", type=float, default=d.job_deadline_s, metavar="S",
                   help="with --ray: stop a job running longer than S seconds (default %(default)s)")
    p.add_argument("--ready-file", metavar="FILE", help=argparse.SUPPRESS)
    p.set_defaults(func=serve)


def config_from_args(args) -> ServerConfig:
    return ServerConfig(
        bind=args.bind, device=args.device, cache_dir=args.cache_dir,
        client_timeout_s=args.client_timeout, heartbeat_s=args.heartbeat,
        avatar_cache_size=args.avatar_cache, avatar_cache_mb=args.avatar_cache_mb,
        max_queue=args.max_queue, max_jobs_per_client=args.max_jobs_per_client,
        max_guidance_models=args.max_guidance_models,
        limits=protocol.Limits().replace(**dict(args.limit)),
        curve_secret_key=args.curve_secret_key, curve_authorized_dir=args.curve_authorized_dir,
        insecure=args.insecure, insecure_keys=args.insecure_keys, ready_file=args.ready_file,
        clip_checkpoints=dict(args.clip_checkpoint), ray=args.ray, ray_workers=args.workers,
        job_deadline_s=args.job_deadline)


def serve(args) -> int:
    """Run the server -> exit code (2 and one sentence when it cannot start)."""
    try:
        server = Server(config_from_args(args))
    except (ConfigError, MetamorphError, HandlerImportError) as e:
        log.error("%s", e)
        print(f"metamorph serve: {e}", file=sys.stderr)
        return 2
    try:
        return server.run()
    except zmq.ZMQError as e:
        log.error("cannot listen on %s: %s", args.bind, e)
        print(f"metamorph serve: cannot listen on {args.bind}: {e}", file=sys.stderr)
        return 2
