"""Shared test inputs for the face and photo tests (not a test module).

The real photo is scikit-image's public-domain ``astronaut()`` (512x512; its face has 61 px
between the eyes' outer corners, under the 80 px minimum), so tests upscale it 2x.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image


@functools.lru_cache(maxsize=None)
def astronaut(scale: float = 2.0) -> np.ndarray:
    import skimage.data

    img = skimage.data.astronaut()
    if scale != 1.0:
        img = np.asarray(Image.fromarray(img).resize((round(512 * scale),) * 2, Image.LANCZOS))
    img.setflags(write=False)
    return img


def photo_cache(tmp_path_factory):
    """One cache root for the whole session (the tiny imitator is trained once into it)."""
    d = tmp_path_factory.getbasetemp() / "photo_cache"
    d.mkdir(exist_ok=True)
    return d
