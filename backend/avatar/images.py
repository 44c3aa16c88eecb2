"""Reading images a user hands us (selfies, style references, avatar textures), safely.

Every image is opened lazily (PIL reads only the header), its size is checked
against :class:`shared.protocol.Limits` *before* any pixel is decoded, and only
then is it decoded, turned upright (EXIF orientation), converted to sRGB RGB and
downscaled. A 30000x30000 PNG is therefore a :class:`TooLarge` error naming the
file and its size after reading a few bytes, never a ``DecompressionBombError``
traceback or gigabytes of memory.

Purposes pick the limit: :data:`TEXTURE` images (avatar textures) may be up to
``max_texture_size`` pixels on their longest side, every other image up to
``max_image_side``.
"""

from __future__ import annotations

import io
import os
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps

from shared.errors import InvalidAvatar, InvalidParams, MetamorphError, TooLarge
from shared.protocol import Limits

TEXTURE = "texture"        # the purpose of avatar textures (glTF/OBJ): limit max_texture_size
STYLE = "style image"      # purposes name the image in error messages
SELFIE = "selfie"

# what PIL's decoders and its EXIF parser raise on damaged data (a user's file, not our bug)
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError, struct.error)


def limit_for(purpose: str, limits: Limits | None = None) -> int:
    """Longest side (pixels) an image of ``purpose`` may have before decoding."""
    lim = limits or Limits()
    return lim.max_texture_size if purpose == TEXTURE else lim.max_image_side


def _error_type(purpose: str) -> type[MetamorphError]:
    # an unreadable texture makes the avatar invalid; any other image is a bad request parameter
    return InvalidAvatar if purpose == TEXTURE else InvalidParams


def open_checked(fp, label: str, max_side: int, *, purpose: str = TEXTURE) -> Image.Image:
    """Open ``fp`` (path or binary file object) lazily and check its header size.

    label: how error messages name the image (e.g. "model.gltf: texture file 'skin.png'").
    Returns the still-undecoded PIL image. Raises TooLarge when either side is
    over ``max_side`` (or PIL's own pixel-count bound trips first), InvalidAvatar /
    InvalidParams (by purpose) when it is not a readable image.
    """
    err = _error_type(purpose)
    try:
        with warnings.catch_warnings():
            # our limits are far below PIL's bomb threshold: the size check below decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            pil = Image.open(fp)
    except Image.DecompressionBombError as e:
        # PIL refuses before telling us the size: say what we know (over twice its pixel bound)
        bound = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise TooLarge(f"{label}: the {purpose} has more than {bound} pixels, far over the limit of "
                       f"{max_side} pixels per side; scale it down before using it.",
                       details={"max_side": max_side}) from e
    except FileNotFoundError as e:
        raise err(f"{label}: the file does not exist.") from e
    except _DECODE_ERRORS as e:      # includes PIL.UnidentifiedImageError
        raise err(f"{label}: not a readable image ({type(e).__name__}: {e}).") from e
    w, h = pil.size
    if w <= 0 or h <= 0:
        pil.close()
        raise err(f"{label}: the image has no pixels ({w}x{h}).")
    if max(w, h) > max_side:
        pil.close()
        raise TooLarge(f"{label}: the {purpose} is {w}x{h} pixels, more than the limit of {max_side} "
                       f"pixels per side; scale it down before using it.",
                       details={"width": w, "height": h, "max_side": max_side})
    return pil


def to_srgb_rgb(pil: Image.Image, label: str, *, purpose: str = TEXTURE, icc: bool = False) -> np.ndarray:
    """Decode a (header-checked) PIL image to ``[H,W,3]`` uint8 sRGB.

    16-bit greyscale is scaled to 8 bits (not clipped); palette/greyscale/CMYK are
    expanded; alpha is dropped. With ``icc``, an embedded ICC profile is converted to
    sRGB when PIL's colour management is available (photos); textures keep their stored
    values (``icc=False``), as Blender reads them, so content hashes agree.
    """
    err = _error_type(purpose)
    try:
        pil.load()
        if pil.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(pil, np.float64)
            arr = np.round(arr / (65535.0 if arr.max() > 255 else 255.0) * 255).astype(np.uint8)
            return np.repeat(arr[..., None], 3, -1)
        if pil.mode == "P" and "transparency" in pil.info:
            pil = pil.convert("RGBA")      # PIL's own advice for palette transparency; same RGB
        if icc:
            pil = _icc_to_srgb(pil)
        return np.asarray(pil.convert("RGB"), np.uint8).copy()
    except _DECODE_ERRORS as e:     # truncated or corrupt pixel data
        raise err(f"{label}: the image cannot be decoded ({type(e).__name__}: {e}).") from e


def _icc_to_srgb(pil: Image.Image) -> Image.Image:
    icc = pil.info.get("icc_profile")
    if not icc or pil.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return pil
    try:
        from PIL import ImageCms     # optional part of Pillow (littlecms); without it pixels stay as stored
    except ImportError:
        return pil
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        dst = ImageCms.createProfile("sRGB")
        return ImageCms.profileToProfile(pil.convert("RGB") if pil.mode != "CMYK" else pil, src, dst,
                                         outputMode="RGB")
    except Exception:               # a broken profile: the stored values are the best guess
        return pil


def decode_image_bytes(raw: bytes, label: str, limits: Limits | None = None, *,
                       purpose: str = TEXTURE) -> np.ndarray:
    """In-memory image bytes (a glTF buffer view, a data URI) -> ``[H,W,3]`` uint8 sRGB,
    size-checked from the header first. Textures are not downscaled: their pixels
    are the avatar's identity (content hash)."""
    pil = open_checked(io.BytesIO(raw), label, limit_for(purpose, limits), purpose=purpose)
    return to_srgb_rgb(pil, label, purpose=purpose)


def read_image(path, max_side: int, *, purpose: str, limits: Limits | None = None) -> np.ndarray:
    """Read a user's image file as ``[H,W,3]`` uint8 sRGB, upright and at most ``max_side``
    pixels on its longest side.

    path: the image file (PNG, JPEG, WebP, ... anything PIL reads).
    max_side: downscale target in pixels (aspect ratio kept; smaller images are not enlarged).
    purpose: names the image in errors (``"selfie"``, ``"style image"``, :data:`TEXTURE` ...) and
      picks the size limit checked before decoding (``limits.max_texture_size`` for
      :data:`TEXTURE`, else ``limits.max_image_side``; ``limits`` default ``Limits()``).
    EXIF orientation is applied (``PIL.ImageOps.exif_transpose``), so a phone photo is upright.
    Raises TooLarge (over the limit), InvalidParams (InvalidAvatar for textures) when the file
    is missing, unreadable or corrupt; each message names the file.
    """
    if int(max_side) < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    path = os.fspath(path)
    label = str(path)
    err = _error_type(purpose)
    if os.path.isdir(path):
        raise err(f"{label}: is a folder, not an image file.")
    pil = open_checked(path, label, limit_for(purpose, limits), purpose=purpose)
    with pil:
        try:
            if max(pil.size) > max_side and pil.format == "JPEG":
                pil.draft("RGB", (max_side, max_side))     # JPEG decodes at 1/2..1/8 scale directly
            up = ImageOps.exif_transpose(pil)
        except _DECODE_ERRORS as e:
            raise err(f"{label}: the image cannot be decoded ({type(e).__name__}: {e}).") from e
        arr = to_srgb_rgb(up, label, purpose=purpose, icc=purpose != TEXTURE)
    h, w = arr.shape[:2]
    if max(h, w) > max_side:
        s = max_side / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        arr = np.asarray(Image.fromarray(arr, "RGB").resize(size, Image.LANCZOS, reducing_gap=3.0), np.uint8)
    return np.ascontiguousarray(arr)
