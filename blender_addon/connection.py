"""The add-on's connection: settings, address checks, and the connection state.

The client object is created and used only inside one worker thread per job
(ZeroMQ sockets are not thread-safe); the main thread never blocks on the
network. What the panel shows (connected, device, the backend's models) is
written into :mod:`state` (window manager, never saved) by the main thread when
the worker reports it: that is the only copy.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import bpy

from . import state
from ._shared import endpoints
from .preferences import get_prefs


def address_problem(address: str) -> str | None:
    """Why ``address`` cannot be used right now, or None. Never raises."""
    try:
        u = urlsplit(str(address))
        port = u.port if u.scheme == "tcp" else None  # raises ValueError past 65535
        host = u.hostname if u.scheme == "tcp" else "x"
    except ValueError:
        port, host, u = None, None, None
    if u is None or u.scheme not in ("tcp", "ipc", "inproc") or (u.scheme == "tcp" and not (port and host)):
        return (f"Backend address '{address}' is not valid: use tcp://HOST:PORT with a port "
                "from 1 to 65535 (e.g. tcp://127.0.0.1:5557).")
    if u.scheme == "tcp" and host[0].isdigit() and host.count(".") == 3:
        if any(not p.isdigit() or int(p) > 255 for p in host.split(".")):
            return f"Backend address '{address}' is not valid: '{host}' is not an IP address."
    if not endpoints.is_loopback(address) and not bpy.app.online_access:
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
    st = state.get(context)
    st.connected = hello is not None
    st.address = address if hello is not None else ""
    st.hello_json = json.dumps(hello or {}, default=str)
    if hello is None:
        st.connection, st.device = state.NOT_CONNECTED, ""
    else:
        st.connection = f"connected to {address}"
        st.device = str(hello.get("device", ""))


def is_connected(context=None) -> bool:
    try:
        return bool(state.get(context).connected)
    except AttributeError:  # not registered
        return False
