"""``metamorph keys generate``: CURVE key pairs for the server and its clients.

Writes ``NAME.key`` (public, safe to share) and ``NAME.key_secret`` (keep it
private) in zmq.auth's certificate format. The server uses its
``.key_secret`` (``--curve-secret-key``) and a folder of the clients' ``.key``
files (``--curve-authorized-dir``); a client uses its own ``.key_secret`` and
the server's ``.key``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import zmq.auth


def generate(out_dir: str | os.PathLike, name: str, force: bool = False) -> tuple[Path, Path]:
    """Create one key pair -> (public file, secret file). Refuses to overwrite
    unless ``force`` (a lost secret key locks clients out)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pub, sec = out / f"{name}.key", out / f"{name}.key_secret"
    if not force and (pub.exists() or sec.exists()):
        raise FileExistsError(f"{pub} or {sec} already exists; pass --force to replace it.")
    pub_s, sec_s = zmq.auth.create_certificates(str(out), name)
    os.chmod(sec_s, 0o600)
    return Path(pub_s), Path(sec_s)


def _generate(args) -> int:
    if not args.name.replace("-", "").replace("_", "").isalnum():
        print("metamorph keys generate: --name may hold letters, digits, '-' and '_' only.", file=sys.stderr)
        return 2
    try:
        pub, sec = generate(args.out, args.name, args.force)
    except FileExistsError as e:
        print(f"metamorph keys generate: {e}", file=sys.stderr)
        return 1
    print(f"public key: {pub}   (give to the other side)")
    print(f"secret key: {sec}   (keep private)")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("keys", help="manage CURVE keys for remote servers")
    sub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    g = sub.add_parser("generate", help="write a CURVE key pair (NAME.key, NAME.key_secret)")
    g.add_argument("--out", required=True, help="folder to write the key files into")
    g.add_argument("--name", default="metamorph", help="file name stem (default %(default)s)")
    g.add_argument("--force", action="store_true", help="overwrite existing files")
    g.set_defaults(func=_generate)
