"""Output folders the CLIs write: checked before any work, written whole or not at all.

    out = check_out(args.out)              # refused at once when it cannot be written
    with staged_dir(out) as work:          # a temporary folder beside ``out``
        ... write files under work ...     # on success it replaces ``out`` in one rename;
                                           # on any failure it is removed, ``out`` untouched
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from shared.errors import InvalidParams


def check_out(path: str | os.PathLike) -> Path:
    """``--out`` as a Path, refused (InvalidParams) before any work when it cannot be written."""
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise InvalidParams(f"--out '{path}' exists and is not a folder: name a folder.")
    probe = out.resolve().parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InvalidParams(f"--out '{path}' cannot be written ('{probe}' is not writable): choose another folder.")
    return out


def replace_dir(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``; an existing ``dst`` is moved aside first and removed after."""
    old = None
    if dst.exists():
        old = dst.parent / f".{dst.name}.old-{os.getpid()}"
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_dir(out: str | os.PathLike) -> Iterator[Path]:
    """A fresh folder beside ``out`` that replaces it when the block ends without error."""
    final = Path(out).resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    os.chmod(work, 0o755)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield work
        replace_dir(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def json_default(o):
    """``json.dumps(default=...)`` for numpy scalars and arrays (anything else as text)."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def write_json(path: str | os.PathLike, obj, indent: int = 2) -> Path:
    p = Path(path)
    p.write_text(json.dumps(obj, indent=indent, default=json_default), encoding="utf-8")
    return p
