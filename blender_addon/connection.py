"""The add-on's connection settings and client factory.

The client object is created and used only inside one worker thread per job
(ZeroMQ sockets are not thread-safe); the main thread never blocks on the
network. What the panel shows (connected, device) is copied into scene
properties by the main thread when the worker reports it.
"""

from __future__ import annotations

import importlib
import ipaddress
from urllib.parse import urlparse

import bpy

from .preferences import get_prefs

# Set by the main thread from worker events; read by polls and the panel.
state = {"connected": False, "address": "", "hello": {}}


def client_module():
    """``shared.client`` (bundled copy inside the extension, else the checkout's)."""
    base = __package__
    try:
        return importlib.import_module(f"{base}.shared.client")
    except ImportError:
        return importlib.import_module("shared.client")


def is_loopback(address: str) -> bool:
    """True for tcp://127.x / [::1] / localhost and for ipc:// / inproc:// addresses."""
    u = urlparse(address)
    if u.scheme in ("ipc", "inproc"):
        return True
    host = (u.hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def address_problem(address: str) -> str | None:
    """Why ``address`` cannot be used right now, or None."""
    u = urlparse(address)
    if u.scheme not in ("tcp", "ipc", "inproc") or (u.scheme == "tcp" and not u.port):
        return f"Backend address '{address}' is not valid: use tcp://HOST:PORT."
    if not is_loopback(address) and not bpy.app.online_access:
        return ("Online access is disabled in Blender's preferences (System > Network); "
                "enable it to reach a remote backend, or use a local one on 127.0.0.1.")
    return None


def client_options(context=None) -> dict:
    """Keyword arguments for ``shared.client.Client`` from the preferences
    (read on the main thread, handed to the worker as plain values)."""
    p = get_prefs(context)
    hb = float(p.heartbeat_timeout_s)
    opts = {"address": p.backend_address, "timeout_s": float(p.timeout_s),
            "server_timeout_s": hb, "heartbeat_s": min(1.0, hb / 4)}
    if p.server_public_key:
        opts.update(server_public_key=p.server_public_key,
                    client_public_key=p.client_public_key or None,
                    client_secret_key=p.client_secret_key)
    return opts


def set_connected(context, hello: dict | None, address: str = "") -> None:
    """Main thread: record the connection state for polls and the panel."""
    state["connected"] = hello is not None
    state["hello"] = dict(hello or {})
    state["address"] = address
    s = context.scene.metamorph
    if hello is None:
        s.connection, s.device = "not connected", ""
    else:
        s.connection = f"connected to {address}"
        s.device = str(hello.get("device", ""))


def is_connected() -> bool:
    return bool(state["connected"])
