"""Checks every request contract uses on what a client sent (one home for them).

Each raises :class:`shared.errors.InvalidParams` (or :class:`TooLarge` for sizes)
with a sentence that names the field and says what to send instead. They accept
only real numbers of the right type: a weight of ``"heavy"`` or ``True`` is
refused here, at submit time, not in the worker.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import InvalidParams, TooLarge


def integer(name: str, value: Any, lo: int, hi: int) -> int:
    """``value`` as an int in [lo, hi]; bools and floats are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParams(f"'{name}' must be a whole number between {lo} and {hi}, got {value!r}.")
    if not lo <= value <= hi:
        raise InvalidParams(f"'{name}' must be between {lo} and {hi}, got {value}.")
    return int(value)


def number(name: str, value: Any, lo: float, hi: float) -> float:
    """``value`` as a finite float in [lo, hi]; bools and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidParams(f"'{name}' must be a number between {lo} and {hi}, got {value!r}.")
    v = float(value)
    if not math.isfinite(v) or not lo <= v <= hi:
        raise InvalidParams(f"'{name}' must be a finite number between {lo} and {hi}, got {value!r}.")
    return v


def text(name: str, value: Any, max_length: int, *, allow_empty: bool = False) -> str:
    """``value`` as a str of at most ``max_length`` characters (non-blank unless allowed)."""
    if not isinstance(value, str):
        raise InvalidParams(f"'{name}' must be text, got {type(value).__name__}.")
    if len(value) > max_length:
        raise TooLarge(f"'{name}' is {len(value)} characters long; the limit is {max_length}.")
    if not allow_empty and not value.strip():
        raise InvalidParams(f"'{name}' is empty: write some text.")
    return value


def choice(name: str, value: Any, options) -> str:
    """``value`` as one of ``options``."""
    if not isinstance(value, str) or value not in options:
        raise InvalidParams(f"'{name}' must be one of {list(options)}, got {value!r}.")
    return value


def sequence(name: str, value: Any, min_count: int, max_count: int) -> list:
    """``value`` as a list (or tuple) with between ``min_count`` and ``max_count`` items."""
    if not isinstance(value, (list, tuple)):
        raise InvalidParams(f"'{name}' must be a list, got {type(value).__name__}.")
    if len(value) > max_count:
        raise TooLarge(f"'{name}' has {len(value)} items; the limit is {max_count}.")
    if len(value) < min_count:
        raise InvalidParams(f"'{name}' needs at least {min_count} item(s), got {len(value)}.")
    return list(value)


def text_list(name: str, value: Any, min_count: int, max_count: int, max_length: int) -> list[str]:
    """A list of non-blank texts, each at most ``max_length`` characters."""
    items = sequence(name, value, min_count, max_count)
    return [text(f"{name}[{i}]", v, max_length) for i, v in enumerate(items)]


def numbers(name: str, value: Any, lo: float, hi: float, min_count: int, max_count: int) -> list[float]:
    """A list of finite numbers in [lo, hi]."""
    items = sequence(name, value, min_count, max_count)
    return [number(f"{name}[{i}]", v, lo, hi) for i, v in enumerate(items)]


def image(name: str, arr, max_side: int, *, min_side: int = 8, channels=(3,)):
    """An [H,W,C] uint8 image array (row 0 top) with min_side <= H, W <= max_side."""
    a = np.asarray(arr)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] not in channels:
        raise InvalidParams(f"'{name}' must be an [H,W,{'|'.join(map(str, channels))}] uint8 image (sRGB, row 0 "
                            f"at the top), got {a.dtype} {list(a.shape)}.")
    h, w = a.shape[:2]
    if max(h, w) > max_side:
        raise TooLarge(f"'{name}' is {w}x{h} pixels; the limit is {max_side} on the longest side: downscale it.")
    if min(h, w) < min_side:
        raise InvalidParams(f"'{name}' is {w}x{h} pixels; it must be at least {min_side}x{min_side}.")
    return a
