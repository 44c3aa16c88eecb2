"""Face detection and the 478 MediaPipe face-mesh landmarks, plus the landmark index sets.

Coordinates: pixels of the image given, x right, y down; landmark z is MediaPipe's relative
depth scaled like x (pixels), smaller = nearer the camera. "Left"/"right" name the
*person's* sides (MediaPipe's LEFT_* sets are the person's left, on the image's right).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .models import face_detector, face_mesh, face_mesh_tracker

NUM_LANDMARKS = 478

# Closed outlines (ordered loops) taken from MediaPipe's face-mesh connection sets.
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
             148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
EYE_LEFT = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
EYE_RIGHT = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
BROW_LEFT = (276, 283, 282, 295, 285, 336, 296, 334, 293, 300)
BROW_RIGHT = (46, 53, 52, 65, 55, 107, 66, 105, 63, 70)
IRIS_LEFT = (474, 475, 476, 477)
IRIS_RIGHT = (469, 470, 471, 472)
IRIS_CENTERS = (473, 468)                  # person's left, right
EYE_OUTER = (263, 33)                      # outer corners: person's left, right
EYE_INNER = (362, 133)
NOSE_TIP = 1
CHIN = 152
FOREHEAD = 10
MOUTH_CORNERS = (291, 61)                  # person's left, right

# The landmark groups the fit and the benchmarks score on (eyes, brows, mouth, jaw line).
GROUPS = {
    "eyes": EYE_LEFT + EYE_RIGHT + IRIS_CENTERS,
    "brows": BROW_LEFT + BROW_RIGHT,
    "mouth": LIPS_OUTER + LIPS_INNER,
    "jaw": FACE_OVAL[9:28],                # the oval from ear level down round the chin
    "nose": (1, 2, 4, 5, 6, 19, 94, 98, 327, 168, 197, 195),
}


@dataclass(frozen=True)
class FaceBox:
    """One detected face: box in pixels (x0, y0, x1, y1), detector score, and the detector's
    6 keypoints [6,2] (eyes, nose tip, mouth, ears; pixels)."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float
    keypoints: np.ndarray

    @property
    def area(self) -> float:
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)


def _rgb(img) -> np.ndarray:
    a = np.ascontiguousarray(img)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an [H,W,3] uint8 image, got {a.dtype} {list(a.shape)}")
    return a


def detect_faces(img) -> list[FaceBox]:
    """All faces MediaPipe's face detector finds in ``img`` [H,W,3] uint8, largest first."""
    img = _rgb(img)
    h, w = img.shape[:2]
    model, lock = face_detector()
    with lock:
        res = model.process(img)
    boxes = []
    for det in res.detections or []:
        bb = det.location_data.relative_bounding_box
        kp = np.array([[k.x * w, k.y * h] for k in det.location_data.relative_keypoints], np.float32)
        boxes.append(FaceBox(bb.xmin * w, bb.ymin * h, (bb.xmin + bb.width) * w, (bb.ymin + bb.height) * h,
                             float(det.score[0]), kp))
    return sorted(boxes, key=lambda b: -b.area)


def _mesh(img: np.ndarray, model, lock=None) -> np.ndarray | None:
    h, w = img.shape[:2]
    if lock is not None:
        with lock:
            res = model.process(img)
    else:
        res = model.process(img)
    if not res.multi_face_landmarks:
        return None
    pts = res.multi_face_landmarks[0].landmark
    return np.array([[p.x * w, p.y * h, p.z * w] for p in pts], np.float32)


def _jitters(n: int) -> np.ndarray:
    """[n,2,3] small similarity warps about the image centre (the first is the identity): scale
    x0.92..1.08, rotation +-5 degrees, shift +-3% of the side. Fixed, so results repeat."""
    rng = np.random.default_rng(0)
    out = [np.array([[1, 0, 0], [0, 1, 0]], np.float64)]
    for _ in range(n - 1):
        s, a = rng.uniform(0.92, 1.08), np.radians(rng.uniform(-5, 5))
        c, si = s * np.cos(a), s * np.sin(a)
        out.append(np.array([[c, -si, rng.uniform(-0.03, 0.03)], [si, c, rng.uniform(-0.03, 0.03)]]))
    return np.stack(out)


def _mesh_averaged(img: np.ndarray, model, lock, jitters: int) -> np.ndarray | None:
    """The mesh averaged over ``jitters`` warped copies of ``img``, mapped back to its pixels.

    Why: MediaPipe's landmarks move by ~0.01 of the inter-ocular distance with the crop its
    detector picks, which is as much as a whole parameter range of the avatar moves them;
    averaging 8 copies takes a third of that jitter off (same avatar under 4 lightings:
    0.0128 -> 0.0093 IOD mean pairwise error)."""
    import cv2  # opencv ships with mediapipe

    if jitters <= 1:
        return _mesh(img, model, lock)
    h, w = img.shape[:2]
    centre = np.array([w / 2, h / 2])
    acc, n = np.zeros((NUM_LANDMARKS, 3), np.float64), 0
    for i, J in enumerate(_jitters(jitters)):
        A = J[:, :2]
        t = centre - A @ centre + J[:, 2] * np.array([w, h])          # about the centre, shift in pixels
        M = np.concatenate([A, t[:, None]], 1)
        warped = img if i == 0 else cv2.warpAffine(img, M, (w, h), flags=cv2.INTER_LINEAR,
                                                   borderMode=cv2.BORDER_REFLECT)   # the first is the identity
        lm = _mesh(warped, model, lock)
        if lm is None:
            continue
        Ai = np.linalg.inv(A)
        xy = (lm[:, :2] - t) @ Ai.T
        acc[:, :2] += xy
        acc[:, 2] += lm[:, 2] / np.sqrt(abs(np.linalg.det(A)))      # depth scaled like x
        n += 1
    return None if n == 0 else (acc / n).astype(np.float32)


def face_landmarks(img, box: FaceBox | None = None, margin: float = 0.6, jitters: int = 1) -> np.ndarray | None:
    """The 478 landmarks [478,3] (pixels of ``img``) of one face, or None when none is found.

    box: which face (from :func:`detect_faces`); the image is cropped to the box grown by
    ``margin`` of its size on every side first, so in a group photo the mesh lands on the
    chosen face. None runs the mesh on the whole image (its own detector picks a face).
    jitters: > 1 averages the mesh over that many slightly warped copies (steadier, slower).
    """
    img = _rgb(img)
    model, lock = face_mesh()
    if box is None:
        return _mesh_averaged(img, model, lock, jitters)
    h, w = img.shape[:2]
    bw, bh = box.x1 - box.x0, box.y1 - box.y0
    x0, y0 = int(max(0, np.floor(box.x0 - margin * bw))), int(max(0, np.floor(box.y0 - margin * bh)))
    x1, y1 = int(min(w, np.ceil(box.x1 + margin * bw))), int(min(h, np.ceil(box.y1 + margin * bh)))
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    lm = _mesh_averaged(np.ascontiguousarray(img[y0:y1, x0:x1]), model, lock, jitters)
    if lm is None:
        return None
    lm[:, 0] += x0
    lm[:, 1] += y0
    return lm


def landmarks_sequence(frames) -> np.ndarray:
    """Landmarks of a video's frames (iterable of [H,W,3] uint8, same size) with MediaPipe's
    tracking mode: ``[N,478,3]`` float32 pixels, rows of NaN where no face was found."""
    tracker = face_mesh_tracker()
    out = []
    try:
        for f in frames:
            lm = _mesh(_rgb(f), tracker)
            out.append(np.full((NUM_LANDMARKS, 3), np.nan, np.float32) if lm is None else lm)
    finally:
        tracker.close()
    return np.stack(out) if out else np.zeros((0, NUM_LANDMARKS, 3), np.float32)


def eye_corner_distance(lm: np.ndarray) -> float:
    """Pixels between the two eyes' outer corners (the size measure for "face too small")."""
    return float(np.linalg.norm(lm[EYE_OUTER[0], :2] - lm[EYE_OUTER[1], :2]))


def interocular(lm: np.ndarray) -> float:
    """Pixels between the iris centres (the unit of landmark errors)."""
    return float(np.linalg.norm(lm[IRIS_CENTERS[0], :2] - lm[IRIS_CENTERS[1], :2]))


def yaw_degrees(lm: np.ndarray) -> float:
    """Head turn (degrees, 0 frontal, sign = MediaPipe's depth convention) from the 3-D landmarks:
    the angle of the line between the face oval's cheek points (454, 234) out of the image plane.
    Measured on renders of the sample avatar it tracks the true yaw within ~5 degrees up to 45."""
    d = lm[454] - lm[234]
    return float(np.degrees(np.arctan2(d[2], d[0])))


def similarity_align(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None):
    """Least-squares similarity (scale, rotation, translation) taking 2-D points ``src`` [N,2]
    onto ``dst`` [N,2] (Umeyama). Returns (aligned src [N,2], (s, R [2,2], t [2]))."""
    src = np.asarray(src, np.float64)[:, :2]
    dst = np.asarray(dst, np.float64)[:, :2]
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    ms, md = (w[:, None] * src).sum(0), (w[:, None] * dst).sum(0)
    a, b = src - ms, dst - md
    cov = (w[:, None] * b).T @ a
    u, sv, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    D = np.diag([1.0, d])
    R = u @ D @ vt
    var = (w * (a ** 2).sum(1)).sum()
    s = float((sv * np.diag(D)).sum() / max(var, 1e-12))
    t = md - s * R @ ms
    return (s * (R @ src.T)).T + t, (s, R, t)
