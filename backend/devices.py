"""Devices: which one a command or the server runs on, and housekeeping after an
out-of-memory error (shared by the CLIs, the server, its guidance cache and the Ray workers)."""

from __future__ import annotations

import sys

from shared.errors import InvalidParams


def resolve_device(requested: str) -> str:
    """``auto | cpu | cuda | cuda:N`` -> a device; "cpu" without touching torch.
    Raises InvalidParams for a device that is not there."""
    if requested == "cpu":
        return "cpu"
    try:
        import torch  # heavy and optional for a CPU-only server: only when a device is asked for
    except ImportError:
        if requested == "auto":
            return "cpu"
        raise InvalidParams(f"--device {requested} needs torch, which is not installed.") from None
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidParams(f"--device {requested} was asked for but CUDA is not available here: use cpu or auto.")
    return requested


def free_device_memory() -> None:
    """Give cached GPU memory back after an out-of-memory error or an evicted model."""
    torch = sys.modules.get("torch")  # only if a job loaded it: never import torch just for this
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
