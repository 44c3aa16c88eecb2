"""Rendered passes from a result: files under the output folder and image datablocks.

Layout: ``<output>/<style>/<camera>/<pass>/<frame:04d>.png``. Colour passes
(color, albedo, original) are 8-bit sRGB RGB, alpha 8-bit grey, normals 8-bit
RGB encoding ``0.5 * n + 0.5`` (world space), depth 16-bit grey in millimetres
(Blender's Z pass: distance along the view axis; 0 = background / beyond 65.535 m).
"""

from __future__ import annotations

import os
import re

import numpy as np

from .pngio import write_png

COLOUR_PASSES = ("color", "albedo", "original")


def safe_name(name: str) -> str:
    """A file-system-safe folder name for a style or camera name."""
    s = re.sub(r"[^A-Za-z0-9._ -]+", "_", str(name)).strip(" .")
    return s or "unnamed"


def encode_pass(name: str, img: np.ndarray) -> np.ndarray:
    """One pass image [h,w,c] as it is stored in the PNG (uint8 or uint16)."""
    a = np.asarray(img)
    if name == "normal":
        n = np.nan_to_num(a.astype(np.float32))
        return np.round(np.clip(n * 0.5 + 0.5, 0, 1) * 255).astype(np.uint8)
    if name == "depth":
        d = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=0.0)
        mm = np.round(d * 1000.0)
        mm[(mm < 0) | (mm > 65535)] = 0
        return mm.astype(np.uint16)[..., :1]
    if a.dtype != np.uint8:
        a = np.round(np.clip(a.astype(np.float32), 0, 1) * 255).astype(np.uint8)
    return a


def save_passes(passes: dict, camera_names: list[str], frames: list[float], folder: str) -> dict:
    """Write every pass image ``passes[name]`` [C,N,h,w,c] under ``folder`` (an
    absolute path: ``<output>/<style>``). Returns ``{(camera, pass): [paths in frame order]}``.
    Raises ValueError when a pass's shape does not match the cameras and frames."""
    out: dict = {}
    C, N = len(camera_names), len(frames)
    for pname, arr in passes.items():
        arr = np.asarray(arr)
        if arr.ndim != 5 or arr.shape[:2] != (C, N):
            raise ValueError(f"Pass '{pname}' has shape {list(arr.shape)}, expected "
                             f"[{C} cameras, {N} frames, h, w, c].")
        for ci, cam in enumerate(camera_names):
            d = os.path.join(folder, safe_name(cam), safe_name(pname))
            os.makedirs(d, exist_ok=True)
            paths = []
            for fi, fr in enumerate(frames):
                p = os.path.join(d, f"{int(round(float(fr))):04d}.png")
                write_png(p, encode_pass(pname, arr[ci, fi]))
                paths.append(p)
            out[(cam, pname)] = paths
    return out


def load_pass_images(saved: dict, style: str) -> list:
    """Load saved passes as image datablocks named ``MM <style> <camera> <pass>``:
    a single file per camera/pass, or an image sequence when there are several
    frames (frame numbers = file names). Non-colour passes use Non-Color."""
    import bpy
    images = []
    for (cam, pname), paths in saved.items():
        if not paths:
            continue
        name = f"MM {style} {cam} {pname}"
        old = bpy.data.images.get(name)
        if old is not None:
            bpy.data.images.remove(old)
        im = bpy.data.images.load(paths[0], check_existing=False)
        im.name = name
        im["metamorph_size"] = list(im.size)  # read now: a sequence reports 0x0 until viewed
        im["metamorph_frames"] = len(paths)
        if len(paths) > 1:
            im.source = "SEQUENCE"
        im.colorspace_settings.name = "sRGB" if pname in COLOUR_PASSES else "Non-Color"
        im["metamorph_pass"] = pname
        images.append(im)
    return images
