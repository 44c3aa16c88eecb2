"""``metamorph keys generate``: CURVE key pairs for the server and its clients.

Writes ``NAME.key`` (public, safe to share) and ``NAME.key_secret`` (keep it
private) in zmq.auth's certificate format. The server uses its
``.key_secret`` (``--curve-secret-key``) and a folder of the clients' ``.key``
files (``--curve-authorized-dir``); a client uses its own ``.key_secret`` and
the server's ``.key``.

Key folders are created 0700 whatever the umask, secret files 0600. The server
loads its authorized folder with :func:`load_authorized_keys`, which skips a
malformed ``*.key`` file loudly instead of locking every client out.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import zmq.auth
from zmq.utils import z85

log = logging.getLogger("metamorph.keys")

Z85_KEY_LENGTH = 40


def make_private_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) if missing; a folder this creates is 0700 whatever the umask."""
    p = Path(path)
    if not p.is_dir():
        p.mkdir(parents=True, exist_ok=True)
        os.chmod(p, 0o700)
    return p


def load_authorized_keys(folder: str | os.PathLike) -> tuple[set[bytes], list[tuple[Path, str]]]:
    """The Z85 public keys of the ``*.key`` files in ``folder`` -> (keys, [(bad file, why)]).
    A file that is not a valid zmq.auth public key is reported, never fatal for the others."""
    keys, bad = set(), []
    for f in sorted(Path(folder).glob("*.key")):
        try:
            public, _ = zmq.auth.load_certificate(str(f))
        except Exception as e:  # noqa: BLE001 - zmq.auth raises ValueError, OSError, KeyError...
            bad.append((f, f"{type(e).__name__}: {e}"))
            continue
        try:
            if len(public or b"") != Z85_KEY_LENGTH or len(z85.decode(public)) != 32:
                raise ValueError
        except ValueError:
            bad.append((f, "its public-key entry is not a 40-character Z85 key"))
            continue
        keys.add(public)
    return keys, bad


def generate(out_dir: str | os.PathLike, name: str, force: bool = False) -> tuple[Path, Path]:
    """Create one key pair -> (public file, secret file). Refuses to overwrite
    unless ``force`` (a lost secret key locks clients out)."""
    out = make_private_dir(out_dir)
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
        return 2
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
