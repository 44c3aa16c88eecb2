"""Cache files that heal themselves: written atomically with a checksum beside them,
verified on load, moved aside when damaged so the caller rebuilds them.

    save_atomic(path, obj)          torch.save ``obj`` to ``path`` (+ ``path.sha256``)
    load_verified(path, map_location="cpu") -> obj | None
                                    None when missing *or damaged* (then moved aside
                                    as ``path.bad-<time>`` and logged): rebuild it
    ensure_writable_dir(path) -> Path  a cache folder, created and proven writable
    write_bytes_atomic(path, data)  the same for raw bytes (any cache format)
    read_verified_bytes(path) -> bytes | None

A write goes to a temporary file in the same folder and is renamed into place, so a
reader never sees half a file; a failed write (disk full, read-only folder) removes
the temporary file and raises :class:`shared.errors.CacheUnavailable` with the path
and what to do. The sidecar ``<file>.sha256`` holds ``{"size", "sha256", "format"}``;
a file without one, of the wrong size or checksum, or that the loader refuses is
damaged.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import tempfile
import time
from pathlib import Path

from shared.errors import CacheUnavailable

log = logging.getLogger("metamorph.checkpoints")

SIDECAR_SUFFIX = ".sha256"
FORMAT = 1  # version of the sidecar format


def sidecar_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def cache_write_error(path: str | os.PathLike, e: OSError) -> CacheUnavailable:
    """The typed error for a failed cache write: the path, the reason and what to do."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        todo = "free some disk space there (or point --cache-dir / METAMORPH_CACHE at a larger disk)"
    else:
        todo = "make it writable (or point --cache-dir / METAMORPH_CACHE at a writable folder)"
    return CacheUnavailable(f"Cannot write the cache file {path} ({e.strerror or e}): {todo}, then try again.",
                            details={"path": str(path), "errno": e.errno})


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and prove it writable (a temporary file is written and
    removed) -> the resolved path. Raises :class:`CacheUnavailable` naming the folder
    and what to do (read-only, full, a file in the way, no permission)."""
    p = Path(path).expanduser().resolve()
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".write-test-"):
            pass
    except OSError as e:
        raise CacheUnavailable(f"The cache folder {p} cannot be created or written ({e.strerror or e}): give a "
                               f"writable folder with --cache-dir (or METAMORPH_CACHE), or free space there.",
                               details={"path": str(p), "errno": e.errno}) from None
    return p


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` with its checksum sidecar; all or nothing."""
    path = Path(path)
    side = sidecar_path(path)
    meta = json.dumps({"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "format": FORMAT})
    tmps = [path.with_name(f"{path.name}.tmp{os.getpid()}"), side.with_name(f"{side.name}.tmp{os.getpid()}")]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for tmp, payload in zip(tmps, (data, meta.encode())):
            with open(tmp, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
        # The sidecar first: a crash between the renames leaves a file whose checksum
        # does not match (healed on load), never a stale file that looks verified.
        os.replace(tmps[1], side)
        os.replace(tmps[0], path)
    except OSError as e:
        for tmp in tmps:
            try:
                tmp.unlink()
            except OSError:
                pass
        raise cache_write_error(path, e) from e


def read_verified_bytes(path: str | os.PathLike) -> bytes | None:
    """The bytes of ``path`` if present and matching its sidecar; None if missing;
    None after moving it aside if damaged."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        meta = json.loads(sidecar_path(path).read_text())
        data = path.read_bytes()
    except (OSError, ValueError) as e:
        quarantine(path, f"no readable checksum file ({type(e).__name__})")
        return None
    if not isinstance(meta, dict) or meta.get("size") != len(data):
        quarantine(path, f"size {len(data)} bytes, expected {meta.get('size') if isinstance(meta, dict) else '?'}")
        return None
    if meta.get("sha256") != hashlib.sha256(data).hexdigest():
        quarantine(path, "checksum mismatch")
        return None
    return data


def quarantine(path: str | os.PathLike, why: str) -> Path | None:
    """Move a damaged cache file (and its sidecar) aside as ``<name>.bad-<unix time>``
    so it is rebuilt, keeping it for inspection; -> where it went (None if it could
    not be moved: then it is deleted, or left if even that fails)."""
    path = Path(path)
    dest = path.with_name(f"{path.name}.bad-{int(time.time())}")
    log.warning("cache file %s is damaged (%s): moving it aside to %s and rebuilding it", path, why, dest.name)
    try:
        os.replace(path, dest)
    except OSError:
        dest = None
        try:
            path.unlink()
        except OSError as e:
            log.error("cannot remove the damaged cache file %s: %s", path, e)
    try:
        sidecar_path(path).unlink()
    except OSError:
        pass
    return dest


def save_atomic(path: str | os.PathLike, obj) -> None:
    """``torch.save(obj)`` to ``path`` atomically, with its checksum sidecar.
    Raises :class:`CacheUnavailable` when the folder cannot be written."""
    import torch  # heavy: only the callers that save checkpoints pay for it

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes_atomic(path, buf.getvalue())


def load_verified(path: str | os.PathLike, map_location="cpu"):
    """The object :func:`save_atomic` wrote to ``path`` (tensors only: ``weights_only``),
    or None when the file is missing or damaged (moved aside): rebuild it then."""
    import torch  # heavy: only the callers that load checkpoints pay for it

    data = read_verified_bytes(path)
    if data is None:
        return None
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - whatever the loader says, the file is unusable
        quarantine(path, f"the loader refused it: {type(e).__name__}: {e}")
        return None
