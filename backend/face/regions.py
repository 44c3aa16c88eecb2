"""Region masks (skin, lips, eyes, brows, glasses, hair) from landmark polygons, and the
colours sampled in them. Pure functions on arrays except :func:`person_mask` (a model).

The same analysis runs on photos and on true renders of the avatar, so the fit and the
search compare like with like. Masks are ``[H,W]`` bool at the image's resolution; colours
are sRGB in 0..1.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from . import landmarks as L
from .models import selfie_segmenter

REGIONS = ("skin", "lips", "eyes", "brows", "glasses", "hair")
COLOR_REGIONS = ("skin", "hair", "lips", "iris", "brows")
# CIE L* / delta-E thresholds against the face's own skin colour (why relative: lighting varies).
DARK_DELTA_L = 18.0          # brows and glasses frames are this much darker than the skin
HAIR_DELTA_E = 16.0          # hair differs from the skin colour by at least this


def person_mask(img) -> np.ndarray:
    """Selfie segmentation: ``[H,W]`` bool, True on the person."""
    model, lock = selfie_segmenter()
    with lock:
        res = model.process(np.ascontiguousarray(img))
    return np.asarray(res.segmentation_mask) > 0.5


def polygon_mask(shape, pts) -> np.ndarray:
    """Filled polygon ``pts`` [N,2] (pixels, x right, y down) as an [H,W] bool mask."""
    h, w = shape[:2]
    im = Image.new("L", (w, h), 0)
    ImageDraw.Draw(im).polygon([tuple(map(float, p)) for p in np.asarray(pts)[:, :2]], fill=1)
    return np.asarray(im, bool)


def _lab(img) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(np.asarray(img, np.float32) / 255.0)


def _disk(r: float) -> np.ndarray:
    r = max(1, int(round(r)))
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return x * x + y * y <= r * r


def region_masks(img, lm: np.ndarray, person: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Masks of :data:`REGIONS` (+ "oval", "iris", "person") for one face.

    img [H,W,3] uint8; lm [478,3] landmarks of that face (pixels); person [H,W] bool from
    :func:`person_mask` (None: computed here). Rules (why: only landmarks and colour are
    reliable on both photos and renders):
      eyes = eye outlines; lips = outer minus inner lip outline; iris = iris outlines;
      brows = pixels darker than the skin in a band round the brow outlines;
      glasses = darker pixels round the eyes, outside eyes and brows (frames);
      hair = person pixels above the chin, near the head, outside the face oval below the
      brows, whose colour is far from the skin colour; skin = oval minus all of the above.
    """
    img = np.asarray(img)
    shape = img.shape[:2]
    if person is None:
        person = person_mask(img)
    iod = max(L.interocular(lm), 4.0)
    lab = _lab(img)
    oval = polygon_mask(shape, lm[list(L.FACE_OVAL)])
    eyes = polygon_mask(shape, lm[list(L.EYE_LEFT)]) | polygon_mask(shape, lm[list(L.EYE_RIGHT)])
    iris = polygon_mask(shape, lm[list(L.IRIS_LEFT)]) | polygon_mask(shape, lm[list(L.IRIS_RIGHT)])
    lips = polygon_mask(shape, lm[list(L.LIPS_OUTER)]) & ~polygon_mask(shape, lm[list(L.LIPS_INNER)])
    brow_poly = polygon_mask(shape, lm[list(L.BROW_LEFT)]) | polygon_mask(shape, lm[list(L.BROW_RIGHT)])

    # skin reference: the cheeks (oval between eye and mouth level, away from the features)
    ey = lm[list(L.IRIS_CENTERS), 1].mean()
    my = lm[list(L.MOUTH_CORNERS), 1].mean()
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    feats = ndimage.binary_dilation(eyes | lips | brow_poly, _disk(0.12 * iod))
    nose_x = lm[L.NOSE_TIP, 0]
    cheeks = oval & ~feats & (yy > ey + 0.15 * iod) & (yy < my) & (np.abs(xx - nose_x) > 0.35 * iod)
    if cheeks.sum() < 10:
        cheeks = oval & ~feats
    skin_lab = np.median(lab[cheeks], 0) if cheeks.any() else np.array([60.0, 15.0, 20.0])
    dark = lab[..., 0] < skin_lab[0] - DARK_DELTA_L

    brow_band = ndimage.binary_dilation(brow_poly, _disk(0.10 * iod))
    brows = brow_band & (dark | brow_poly & (lab[..., 0] < skin_lab[0] - DARK_DELTA_L / 2))
    eye_zone = np.zeros(shape, bool)
    for ring in (L.EYE_LEFT, L.EYE_RIGHT):
        p = lm[list(ring), :2]
        c, half = p.mean(0), np.array([0.42, 0.36]) * iod
        eye_zone |= (np.abs(xx - c[0]) < half[0]) & (np.abs(yy - c[1]) < half[1])
    bridge = (np.abs(xx - lm[168, 0]) < 0.2 * iod) & (np.abs(yy - lm[168, 1]) < 0.12 * iod)
    glasses = (eye_zone | bridge) & dark & ~ndimage.binary_dilation(eyes, _disk(0.06 * iod)) & ~brow_band

    chin_y = lm[L.CHIN, 1]
    cx = lm[list(L.FACE_OVAL), 0].mean()
    half_w = 0.5 * np.ptp(lm[list(L.FACE_OVAL), 0])
    brow_y = lm[list(L.BROW_LEFT + L.BROW_RIGHT), 1].min()
    near_head = (yy < chin_y) & (np.abs(xx - cx) < 1.5 * half_w)
    face_below_brows = oval & (yy > brow_y - 0.05 * iod)
    far_from_skin = np.linalg.norm(lab - skin_lab, axis=-1) > HAIR_DELTA_E
    hair = person & near_head & ~face_below_brows & far_from_skin
    hair = ndimage.binary_opening(hair, _disk(0.03 * iod))
    skin = oval & ~eyes & ~lips & ~brows & ~glasses & ~hair
    return {"skin": skin, "lips": lips, "eyes": eyes, "brows": brows, "glasses": glasses, "hair": hair,
            "oval": oval, "iris": iris, "person": person}


def region_colors(img, masks: dict[str, np.ndarray]) -> dict[str, np.ndarray | None]:
    """Median sRGB colour (0..1, [3]) per region of :data:`COLOR_REGIONS`; None where the
    region has fewer than 5 pixels (e.g. no hair)."""
    img = np.asarray(img, np.float32) / 255.0
    out = {}
    for k in COLOR_REGIONS:
        m = masks.get(k)
        out[k] = np.median(img[m], 0).astype(np.float32) if m is not None and m.sum() >= 5 else None
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float | None:
    """Intersection over union of two bool masks; None when both are empty."""
    u = np.logical_or(a, b).sum()
    return None if u == 0 else float(np.logical_and(a, b).sum() / u)


GLASSES_MIN_AREA_IOD2 = 0.05     # a real frame covers ~0.15 IOD^2; shadows and lashes far less


def clean_glasses(mask: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Drop a glasses mask that is too small to be a frame (dark lashes, eye shadows): empty when
    its area is under :data:`GLASSES_MIN_AREA_IOD2` squared inter-ocular distances."""
    iod = max(L.interocular(lm), 4.0)
    return mask if mask.sum() >= GLASSES_MIN_AREA_IOD2 * iod * iod else np.zeros_like(mask)
