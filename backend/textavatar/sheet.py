"""The avatar-from-text contact sheet: columns anchor | chosen codebook entry | final
(sculpted + textured) avatar, rows = views x expressions (neutral and the strongest
expression of each avatar's track), under a caption strip that is red, and says so,
when a test guidance model made it (sheets travel without their metadata).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from shared.avatar import AvatarData

from backend.style.color import to_srgb_uint8

from . import views

HEADER = 18     # pixels, the column-label strip
CAPTION = 28    # pixels, the caption strip


def _caption(text: str, width: int, test: bool) -> np.ndarray:
    img = Image.new("RGB", (width, CAPTION), (150, 20, 20) if test else (30, 30, 30))
    if test:
        text = "TEST GUIDANCE MODEL: not a real avatar from text  |  " + text
    ImageDraw.Draw(img).text((6, 8), text, fill=(255, 255, 255))
    return np.asarray(img)


def _labels(labels: list[str], cell: int) -> np.ndarray:
    img = Image.new("RGB", (cell * len(labels), HEADER), (60, 60, 60))
    d = ImageDraw.Draw(img)
    for i, lab in enumerate(labels):
        d.text((i * cell + 4, 3), lab, fill=(255, 255, 255))
    return np.asarray(img)


def contact_sheet(columns: list[tuple[str, AvatarData]], cameras, cell: int = 160, caption: str = "",
                  test_model: bool = False, background=(0.5, 0.5, 0.5)) -> np.ndarray:
    """``[h,w,3]`` uint8 sRGB. ``columns``: (label, avatar) pairs; ``cameras``: the views
    (rendered at ``cell`` pixels; the same cameras for every column so sizes compare)."""
    tiles = []  # per column: [rows, cell, cell, 3]
    for _, av in columns:
        col = []
        for w in (np.zeros((1, len(av.blendshape_names)), np.float32),
                  views.track_weights(av, [views.expressive_frame(av)])):
            W = np.repeat(w, len(cameras), 0)
            out = views.render_avatar(av, cameras, cell, weights=W, passes=("color",), background=background)
            col.append(to_srgb_uint8(out["color"]))
        # rows: view-major, neutral then expression
        c = np.stack(col, 1).reshape(-1, cell, cell, 3)
        tiles.append(c)
    rows = [np.concatenate([t[r] for t in tiles], 1) for r in range(tiles[0].shape[0])]
    grid = np.concatenate(rows, 0)
    return np.concatenate([_caption(caption, grid.shape[1], test_model),
                           _labels([lab for lab, _ in columns], cell), grid], 0)
