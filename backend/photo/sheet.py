"""``fit_sheet.png``: photo | landmarks overlay | fitted avatar render | region masks, with the
figures printed under them."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from backend.face.landmarks import face_landmarks

TILE = 256
REGION_COLORS = {"skin": (255, 200, 0), "lips": (255, 0, 0), "eyes": (0, 255, 0), "brows": (0, 0, 255),
                 "glasses": (255, 0, 255), "hair": (0, 255, 255)}


def _crop_box(lm: np.ndarray, shape) -> tuple[int, int, int, int]:
    lo, hi = lm[:, :2].min(0), lm[:, :2].max(0)
    c, half = (lo + hi) / 2, 0.8 * float((hi - lo).max())
    return int(c[0] - half), int(c[1] - half), int(c[0] + half), int(c[1] + half)


def _tile(img: np.ndarray, box) -> Image.Image:
    return Image.fromarray(img).crop(box).resize((TILE, TILE), Image.BILINEAR)


def fit_sheet(fit) -> np.ndarray:
    """The sheet of a :class:`backend.photo.pipeline.PhotoFit` as [H,W,3] uint8."""
    a = fit.photo
    box = _crop_box(a.landmarks, a.image.shape)
    photo = _tile(a.image, box)
    over = photo.copy()
    d = ImageDraw.Draw(over)
    sx = TILE / (box[2] - box[0])
    for x, y in (a.landmarks[:, :2] - np.array(box[:2])) * sx:
        d.ellipse([x - 1, y - 1, x + 1, y + 1], fill=(0, 255, 0))
    vis = a.image.astype(np.float32).copy()
    for k, c in REGION_COLORS.items():
        m = a.masks[k]
        vis[m] = 0.45 * vis[m] + 0.55 * np.array(c)
    masks = _tile(vis.astype(np.uint8), box)
    rl = face_landmarks(fit.render)
    render = (_tile(fit.render, _crop_box(rl, fit.render.shape)) if rl is not None
              else Image.fromarray(fit.render).resize((TILE, TILE), Image.BILINEAR))
    f = fit.figures
    lines = [
        f"landmark error {f['landmark_error_iod']} IOD   mean IoU {f['mean_iou']}   dlib {f['dlib_distance']}   "
        f"colour {f['color_error']}   score {f['score']} (rounded {f['rounded_score']})",
        "searched: " + ", ".join(f"{k}={v}" for k, v in fit.searched.items())
        + "    rounded: " + ", ".join(f"{k}={v}" for k, v in fit.rounded.items()),
        "expression (dropped): " + ", ".join(f"{k} {v:.2f}" for k, v in fit.expression.items() if v >= 0.05),
        f"imitator {fit.imitator.get('config')}  seconds {f['seconds']}",
    ] + list(fit.notes)
    if fit.imitator.get("config") == "test":
        lines.append("NOTE: made with the small TEST imitator configuration (coarse).")
    sheet = Image.new("RGB", (4 * TILE, TILE + 16 + 14 * len(lines)), (255, 255, 255))
    for i, t in enumerate((photo, over, render, masks)):
        sheet.paste(t, (i * TILE, 0))
    d = ImageDraw.Draw(sheet)
    for i, cap in enumerate(("photo", "landmarks", "fitted avatar", "regions")):
        d.text((i * TILE + 4, 4), cap, fill=(255, 255, 255))
    for i, line in enumerate(lines):
        d.text((4, TILE + 6 + 14 * i), line, fill=(0, 0, 0))
    return np.asarray(sheet)
