"""Rendered passes and baked textures as files: names, encodings and layout.

One home for the CLI (``backend/style``) and the Blender extension, so a result
folder reads the same whoever wrote it. Layout under a result folder ``root``::

    <root>/passes/<camera>/<pass>/<frame:04d>.png     one file per camera x pass x frame
    <root>/textures/<NN>_<texture set>.png            stylized base colour per texture set

Encodings (row 0 = top in every file):

    color, albedo, original   8-bit RGB, sRGB                       (colour space "sRGB")
    alpha                     8-bit grey, 0..255 coverage           ("Non-Color")
    normal                    8-bit RGB, round(255 * (0.5 n + 0.5)), world space ("Non-Color")
    depth                     16-bit grey, millimetres along the view axis
                              (Blender's Z pass); 0 = background or beyond 65.535 m ("Non-Color")

Every file carries ``tEXt`` chunks from :func:`provenance_text` (style name, guidance
model and ``metamorph:guidance_is_test_model``), so a PNG copied out of the folder
still says whether the test guidance model made it.

Use: ``write_passes(passes, camera_names, frames, root, text=provenance_text(md))``
and ``write_texture(root, i, set_name, img, text=...)``; ``decode(name, stored)``
inverts ``encode`` (normal -> float32 [-1,1], depth -> float32 metres).
"""

from __future__ import annotations

import os
import re

import numpy as np

from .png import write_png
from .stylize import PASS_NAMES

COLOUR_PASSES = ("color", "albedo", "original")
DEFAULT_PASSES = ("color", "alpha")  # what a client asks for unless told otherwise
DEPTH_UNITS_PER_METRE = 1000.0  # depth PNGs store millimetres
PASSES_DIR = "passes"
TEXTURES_DIR = "textures"
TEST_MODEL_KEY = "metamorph:guidance_is_test_model"


def safe_name(name: str) -> str:
    """A file-system-safe file or folder name for a style, camera or texture set name."""
    s = re.sub(r"[^A-Za-z0-9._ -]+", "_", str(name)).strip(" .")
    return s or "unnamed"


def colorspace(pass_name: str) -> str:
    """Blender colour space of a pass file: "sRGB" for colour passes, else "Non-Color"."""
    return "sRGB" if pass_name in COLOUR_PASSES else "Non-Color"


def frame_stem(frame: float) -> str:
    """File stem of a frame: ``0012``; fractional frames keep their fraction (``0012.500``)."""
    f = float(frame)
    return f"{int(round(f)):04d}" if abs(f - round(f)) < 1e-6 else f"{f:08.3f}"


def pass_path(root: str, camera: str, pass_name: str, frame: float) -> str:
    return os.path.join(root, PASSES_DIR, safe_name(camera), safe_name(pass_name),
                        frame_stem(frame) + ".png")


def texture_path(root: str, index: int, set_name: str) -> str:
    return os.path.join(root, TEXTURES_DIR, f"{int(index):02d}_{safe_name(set_name)}.png")


def camera_names(cameras, count: int | None = None) -> list[str]:
    """Names for the cameras of a result body (dicts with ``name``, or names);
    unnamed ones become ``camNN``. ``count`` pads to that many."""
    out = [str(c.get("name") or f"cam{i:02d}") if isinstance(c, dict) else str(c or f"cam{i:02d}")
           for i, c in enumerate(cameras or [])]
    for i in range(len(out), count or 0):
        out.append(f"cam{i:02d}")
    return out


def provenance_text(metadata: dict | None, style: str = "") -> dict[str, str]:
    """PNG text chunks that say where a file came from (see the module docstring)."""
    md = metadata or {}
    text = {"Software": "Metamorph",
            "metamorph:guidance": str(md.get("guidance", "")),
            TEST_MODEL_KEY: "true" if md.get("guidance_is_test_model") else "false"}
    if style:
        text["metamorph:style"] = str(style)
    return text


def check_passes(passes: dict, n_cameras: int, n_frames: int) -> None:
    """Raise ValueError with a sentence when a pass is unknown or not
    ``[n_cameras, n_frames, h, w, c]`` with the channels of its encoding."""
    for name, arr in passes.items():
        a = np.asarray(arr)
        if name not in PASS_NAMES:
            raise ValueError(f"Unknown pass '{name}'; passes are {list(PASS_NAMES)}.")
        c = (1,) if name in ("alpha", "depth") else (3, 4)  # grey, or RGB(A)
        if a.ndim != 5 or a.shape[:2] != (n_cameras, n_frames) or a.shape[4] not in c \
                or a.shape[2] < 1 or a.shape[3] < 1:
            raise ValueError(f"Pass '{name}' has shape {list(a.shape)}, expected "
                             f"[{n_cameras} cameras, {n_frames} frames, h, w, {c[0]}].")


def encode(name: str, img: np.ndarray) -> np.ndarray:
    """One pass image [h,w,c] as it is stored in its PNG (uint8, or uint16 for depth)."""
    a = np.asarray(img)
    if name == "normal":
        n = np.nan_to_num(a[..., :3].astype(np.float32))
        return np.round(np.clip(n * 0.5 + 0.5, 0, 1) * 255).astype(np.uint8)
    if name == "depth":
        d = np.nan_to_num(a[..., :1].astype(np.float32), nan=0.0, posinf=0.0)
        mm = np.round(d * DEPTH_UNITS_PER_METRE)
        mm[(mm < 0) | (mm > 65535)] = 0
        return mm.astype(np.uint16)
    if a.dtype != np.uint8:
        a = np.round(np.clip(a.astype(np.float32), 0, 1) * 255).astype(np.uint8)
    return a


def decode(name: str, stored: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode` (up to its quantisation)."""
    a = np.asarray(stored)
    if name == "normal":
        return a[..., :3].astype(np.float32) / 255.0 * 2.0 - 1.0
    if name == "depth":
        return a[..., :1].astype(np.float32) / DEPTH_UNITS_PER_METRE
    return a


def write_passes(passes: dict, camera_names: list[str], frames: list[float], root: str,
                 text: dict | None = None) -> dict:
    """Write every pass ``passes[name]`` [C,N,h,w,c] under ``root`` (layout above).
    Returns ``{(camera, pass): [paths in frame order]}``. Checks every shape before
    writing anything (ValueError)."""
    check_passes(passes, len(camera_names), len(frames))
    out: dict = {}
    for pname, arr in passes.items():
        arr = np.asarray(arr)
        for ci, cam in enumerate(camera_names):
            paths = []
            for fi, fr in enumerate(frames):
                p = pass_path(root, cam, pname, fr)
                os.makedirs(os.path.dirname(p), exist_ok=True)
                write_png(p, encode(pname, arr[ci, fi]), text=text)
                paths.append(p)
            out[(cam, pname)] = paths
    return out


def write_texture(root: str, index: int, set_name: str, img: np.ndarray,
                  text: dict | None = None) -> str:
    """A baked texture [H,W,3|4] uint8 sRGB to its place in the layout; -> path."""
    p = texture_path(root, index, set_name)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    write_png(p, np.ascontiguousarray(img, np.uint8), text=text)
    return p
