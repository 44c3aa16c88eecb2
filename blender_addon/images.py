"""Every conversion between Blender images and numpy arrays.

Arrays follow the wire's convention: ``[H,W,C]``, row 0 = the top row, colour as
sRGB ``uint8`` (or float when said so). Blender's pixel buffers start at the
bottom row and hold ``image.channels`` floats per pixel: byte images as stored
(sRGB-encoded for colour), float images scene-linear, except "Non-Color" data
which is never colour-converted.
"""

from __future__ import annotations

import bpy
import numpy as np

from ._shared import avatar as mm_avatar
from ._shared import errors

_LUT = np.arange(256, dtype=np.float32) / 255.0


def pixels(image, error=errors.InvalidAvatar) -> np.ndarray:
    """The image's buffer as ``[H,W,image.channels]`` float32, row 0 = top.
    Raises ``error`` (a MetamorphError class) for an image without pixels."""
    w, h = image.size
    if w == 0 or h == 0:
        raise error(f"Image '{image.name}' has no pixels (is its file missing? "
                    f"{image.filepath!r}); reload or repack it.")
    c = image.channels
    px = np.empty(w * h * c, np.float32)
    image.pixels.foreach_get(px)
    return px.reshape(h, w, c)[::-1]


def to_srgb_u8(image, channels: int = 3, error=errors.InvalidAvatar) -> np.ndarray:
    """``[H,W,channels]`` uint8 sRGB (channels 3 or 4), row 0 = top, from any image:
    grey is repeated to RGB, missing alpha is opaque, float buffers are converted
    from linear unless the image is Non-Color data."""
    px = pixels(image, error)
    c = px.shape[2]
    rgb = px[..., :3] if c >= 3 else np.repeat(px[..., :1], 3, -1)
    if image.is_float and image.colorspace_settings.name != "Non-Color":
        rgb = mm_avatar.linear_to_srgb(rgb)
    out = np.clip(rgb, 0.0, 1.0)
    if channels == 4:
        alpha = px[..., 3:4] if c == 4 else (px[..., 1:2] if c == 2 else np.ones_like(px[..., :1]))
        out = np.concatenate([out, np.clip(alpha, 0.0, 1.0)], -1)
    return np.round(out * 255.0).astype(np.uint8)


def from_array(name: str, img: np.ndarray, colorspace: str = "sRGB", pack: bool = True):
    """A new image datablock from ``img`` [H,W] or [H,W,C] (C 1..4; uint8 as stored,
    float as linear / raw data), row 0 = top. Packed into the .blend by default so
    nothing depends on a temporary file."""
    a = np.asarray(img)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or 0 in a.shape:
        raise ValueError(f"An image must be [H,W,1..4], got {list(a.shape)}.")
    h, w, c = a.shape
    im = bpy.data.images.new(name, width=w, height=h, alpha=c in (2, 4),
                             float_buffer=a.dtype != np.uint8)
    try:
        im.colorspace_settings.name = colorspace
        write(im, a)
        if pack:
            im.pack()
    except Exception:
        bpy.data.images.remove(im)
        raise
    return im


def write(image, img: np.ndarray) -> None:
    """Overwrite ``image``'s pixels (same size) with ``img`` [H,W,C], row 0 = top."""
    a = np.asarray(img)
    if a.ndim == 2:
        a = a[..., None]
    h, w, c = a.shape
    rgba = np.ones((h, w, 4), np.float32)
    src = np.take(_LUT, a[::-1]) if a.dtype == np.uint8 else a[::-1].astype(np.float32)
    if c in (1, 2):  # grey (+ alpha)
        rgba[..., :3] = src[..., :1]
        if c == 2:
            rgba[..., 3] = src[..., 1]
    else:
        rgba[..., :c] = src
    image.pixels.foreach_set(rgba.ravel())
    image.update()


def load_srgb_u8(path: str) -> np.ndarray:
    """An image file read through Blender as ``[H,W,3]`` uint8, row 0 = top; the
    temporary datablock is removed again."""
    im = bpy.data.images.load(path, check_existing=False)
    try:
        return to_srgb_u8(im, error=errors.InvalidParams)
    finally:
        bpy.data.images.remove(im)
