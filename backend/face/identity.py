"""Identity: dlib's 128-D ResNet face descriptor (5-point alignment; never the 68-point model).

dlib's own threshold: two descriptors of the same person are usually under 0.6 apart.
"""

from __future__ import annotations

import numpy as np

from .models import dlib_models

SAME_PERSON = 0.6


def _rect_from_points(dlib, pts: np.ndarray, shape):
    x0, y0 = pts[:, 0].min(), pts[:, 1].min()
    x1, y1 = pts[:, 0].max(), pts[:, 1].max()
    h, w = shape[:2]
    return dlib.rectangle(int(max(0, x0)), int(max(0, y0)), int(min(w - 1, x1)), int(min(h - 1, y1)))


def dlib_faces(img, upsample: int = 1) -> list[tuple[int, int, int, int]]:
    """dlib frontal-detector boxes (x0, y0, x1, y1) in pixels, largest first."""
    (det, _, _), lock = dlib_models()
    with lock:
        rects = det(np.ascontiguousarray(img), upsample)
    boxes = [(r.left(), r.top(), r.right(), r.bottom()) for r in rects]
    return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))


def descriptor(img, landmarks: np.ndarray | None = None, upsample: int = 1) -> np.ndarray | None:
    """The 128-D descriptor [128] float32 of the face in ``img`` [H,W,3] uint8, or None.

    The face box is dlib's detector's (the one nearest ``landmarks``' centre when several);
    when the detector finds none and MediaPipe ``landmarks`` [478,3] are given, their
    bounding box stands in (renders of stylized or small faces), since dlib's aligner only
    needs a rough box.
    """
    import dlib  # heavy, optional

    img = np.ascontiguousarray(img)
    (det, aligner, net), lock = dlib_models()
    with lock:
        rects = list(det(img, upsample))
        if rects and landmarks is not None:
            c = np.nanmean(landmarks[:, :2], 0)
            rects.sort(key=lambda r: np.hypot((r.left() + r.right()) / 2 - c[0], (r.top() + r.bottom()) / 2 - c[1]))
        elif rects:
            rects.sort(key=lambda r: -r.area())
        if rects:
            rect = rects[0]
        elif landmarks is not None and np.isfinite(landmarks).all():
            # the landmark box is tighter than dlib's (forehead to chin): grow it a little
            pts = landmarks[:, :2]
            c, half = pts.mean(0), (pts.max(0) - pts.min(0)) / 2 * 0.9
            rect = _rect_from_points(dlib, np.stack([c - half, c + half]), img.shape)
        else:
            return None
        shape = aligner(img, rect)
        d = net.compute_face_descriptor(img, shape, 0)
    return np.asarray(d, np.float32)


def distance(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    """Euclidean distance of two descriptors; None when either is missing."""
    if a is None or b is None:
        return None
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))
