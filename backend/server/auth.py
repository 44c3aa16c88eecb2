"""CURVE authentication for the server: the ZAP handler runs in a thread of its
own and admits the clients whose public keys are in the authorized folder.

The folder is read once at start with :func:`backend.keys.load_authorized_keys`:
a malformed ``*.key`` file is skipped with a warning naming it (the valid keys keep
working); a folder with no valid key at all refuses to start. Each admitted
connection carries its key as the message property ``User-Id``, which the router
binds jobs to.
"""

from __future__ import annotations

import logging

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from backend.keys import load_authorized_keys

from .config import ConfigError

log = logging.getLogger("metamorph.auth")


class _AllowedKeys:
    """pyzmq's credentials provider: ``callback(domain, z85 key) -> bool``."""

    def __init__(self, keys: set[bytes]):
        self.keys = frozenset(keys)

    def callback(self, domain, key: bytes) -> bool:
        return key in self.keys


def authorized_keys(folder: str) -> set[bytes]:
    """The valid keys of ``folder``; logs every bad file; ConfigError if none is valid."""
    keys, bad = load_authorized_keys(folder)
    for path, why in bad:
        log.warning("SKIPPING malformed CURVE key file %s (%s): fix or remove it; the other keys "
                    "still work.", path, why)
    if not keys:
        names = ", ".join(p.name for p, _ in bad) or "no *.key files"
        raise ConfigError(f"The CURVE authorized-keys folder {folder} holds no valid client public key "
                          f"({names}); copy clients' .key files from `metamorph keys generate` there.")
    return keys


def start_curve(ctx: zmq.Context, sock: zmq.Socket, secret_key_file: str, keys: set[bytes]) -> ThreadAuthenticator:
    """Make ``sock`` a CURVE server admitting ``keys``; -> the running authenticator (stop it at exit)."""
    public, secret = zmq.auth.load_certificate(secret_key_file)
    if not secret:
        raise ConfigError(f"{secret_key_file} holds no secret key; pass the '.key_secret' file written by "
                          f"`metamorph keys generate`.")
    auth = ThreadAuthenticator(ctx, log=log)
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=_AllowedKeys(keys))
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True
    return auth
