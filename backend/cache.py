"""Where Metamorph keeps what it trains and caches (style-network meta
initializations, imitators, regressors, codebooks): the one home of that rule.

    cache_root()            $METAMORPH_CACHE, else $XDG_CACHE_HOME/metamorph, else ~/.cache/metamorph
    cache_dir("style")      cache_root() / "style", created on demand

The server's ``--cache-dir`` and the CLI's ``--cache-dir`` override the root.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "METAMORPH_CACHE"


def cache_root(override: str | os.PathLike | None = None) -> Path:
    """The cache root: ``override`` if given, else the environment, else ~/.cache/metamorph."""
    if override:
        return Path(override).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "metamorph"


def cache_dir(kind: str, root: str | os.PathLike | None = None) -> Path:
    """``cache_root(root) / kind`` (not created: writers create it atomically as they write)."""
    return cache_root(root) / kind
