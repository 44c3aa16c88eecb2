"""What a ZeroMQ endpoint string says about who can reach it: one home for the rule
both the server (``metamorph serve`` refuses an exposed bind without CURVE) and the
add-on (Blender's "online access" setting gates non-local addresses) apply.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback(address: str) -> bool:
    """True for endpoints only this machine can reach: ``ipc://``, ``inproc://`` and
    ``tcp://`` to a loopback address (127.x.y.z, ``[::1]``) or ``localhost``.

    ``tcp://*:5557``, ``tcp://0.0.0.0:5557``, interface names and host names are
    reachable from outside (or may be), so they are not loopback.
    """
    parts = urlsplit(str(address))
    if parts.scheme in ("ipc", "inproc"):
        return True
    if parts.scheme != "tcp":
        return False
    net = parts.netloc
    host = net[1:net.find("]")] if net.startswith("[") else net.rsplit(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", an interface name or a host name: reachable from outside
        return False
