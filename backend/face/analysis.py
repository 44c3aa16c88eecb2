"""Photo analysis with the input checks of the avatar-from-photo feature.

    a = analyze_photo(img, face_index=None)   # PhotoAnalysis, or a typed error
    r = analyze_render(img)                   # the same analysis without the checks, None if no face

Bad photos raise :class:`shared.errors.InvalidParams` with ``details["reason"]`` one of
"no_face", "face_too_small", "profile", "face_index" and a sentence saying what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shared.errors import InvalidParams
from shared.photo import MAX_YAW_DEGREES, MIN_EYE_CORNER_PX

from . import landmarks as L
from . import regions as R

# Landmark passes averaged on a photo (landmarks.face_landmarks(jitters=)): the fit's targets
# are worth the extra ~0.2 s; the renders the fit compares with take one pass.
PHOTO_JITTERS = 8


@dataclass
class PhotoAnalysis:
    """What the fit needs from one face. landmarks [478,3] pixels; masks {region: [H,W] bool};
    colors {region: [3] sRGB 0..1 or None}; notes: sentences for the user."""

    image: np.ndarray
    landmarks: np.ndarray
    masks: dict
    colors: dict
    box: L.FaceBox | None
    num_faces: int
    face_index: int
    eye_corner_px: float
    yaw: float
    notes: list = field(default_factory=list)
    unseen: tuple = ()          # regions whose masks say nothing (PERSON_MIN_FACE_SHARE)


# The person segmentation must cover this share of the face oval for the masks built on it
# (hair, head) to mean anything: on a plain background near the skin's colour it can miss the
# whole person, and an empty mask would read as "bald" (1 of 30 synthetic photos, seed 50021).
PERSON_MIN_FACE_SHARE = 0.5
PERSON_REGIONS = ("hair", "head")


def _analyze(img, lm, box, n, idx, notes) -> PhotoAnalysis:
    masks = R.region_masks(img, lm)
    colors = R.region_colors(img, masks)
    # after the colours (which the imitator learnt from region_masks as is): specks are no frame
    masks["glasses"] = R.clean_glasses(masks["glasses"], lm)
    # the head's outline with its hair whatever the hair's colour: the person above the chin
    masks["head"] = masks["person"] & (np.arange(img.shape[0]) < lm[L.CHIN, 1])[:, None]
    share = float((masks["person"] & masks["oval"]).sum() / max(int(masks["oval"].sum()), 1))
    unseen = ()
    if share < PERSON_MIN_FACE_SHARE:
        unseen = PERSON_REGIONS
        notes = notes + [f"The person segmentation found only {share:.0%} of the face, so the hair and the head's "
                         f"outline were not used (the hairstyle is a guess): a background that differs from the "
                         f"skin and hair helps."]
    return PhotoAnalysis(img, lm, masks, colors, box, n, idx, L.eye_corner_distance(lm), L.yaw_degrees(lm), notes,
                         unseen)


def analyze_photo(img, face_index: int | None = None, *, min_eye_px: float = MIN_EYE_CORNER_PX,
                  max_yaw: float = MAX_YAW_DEGREES, jitters: int = PHOTO_JITTERS) -> PhotoAnalysis:
    """Detect, pick and analyse one face of a selfie [H,W,3] uint8.

    face_index: None = the largest face; else the index in the largest-first order.
    jitters: the landmarks are averaged over this many slightly warped copies (1 = one pass).
    """
    img = np.ascontiguousarray(img)
    boxes = L.detect_faces(img)
    notes = []
    if face_index is not None and face_index >= 0 and face_index >= max(len(boxes), 1):
        raise InvalidParams(f"--face {face_index} was asked for but the photo has {len(boxes)} face(s) "
                            f"(numbered from 0, largest first).", details={"reason": "face_index"})
    idx = 0 if face_index is None or face_index < 0 else int(face_index)
    box = boxes[idx] if boxes else None
    lm = L.face_landmarks(img, box, jitters=jitters)
    if lm is None:
        raise InvalidParams("No face was found in the photo: use a well-lit frontal selfie with the whole face "
                            "visible.", details={"reason": "no_face"})
    if len(boxes) > 1:
        which = "the largest" if idx == 0 else f"face {idx}"
        notes.append(f"{len(boxes)} faces found; used {which} (--face N picks another, 0 = largest).")
    # the pose first: a profile also looks small between the eye corners
    yaw = L.yaw_degrees(lm)
    if abs(yaw) > max_yaw:
        raise InvalidParams(f"The face is turned {abs(yaw):.0f} degrees to the side (at most {max_yaw:.0f} can be "
                            f"fitted): use a frontal photo, looking into the camera.",
                            details={"reason": "profile", "yaw_degrees": yaw})
    px = L.eye_corner_distance(lm)
    if px < min_eye_px:
        raise InvalidParams(f"The face is too small: {px:.0f} pixels between the eyes' outer corners, at least "
                            f"{min_eye_px:.0f} are needed. Use a closer or larger photo.",
                            details={"reason": "face_too_small", "eye_corner_px": px})
    return _analyze(img, lm, box, len(boxes), idx, notes)


def analyze_render(img) -> PhotoAnalysis | None:
    """The same analysis on a render (no size/pose checks, one landmark pass); None when no face
    is found."""
    img = np.ascontiguousarray(img)
    lm = L.face_landmarks(img)
    if lm is None:
        return None
    return _analyze(img, lm, None, 1, 0, [])
