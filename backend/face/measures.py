"""Independent quality measures of a stylization (not from the guidance model).

    m = independent_measures(original_frames, stylized_frames)

Both arguments are sequences of ``[H,W,3]`` uint8 renders from the same frontal camera,
frame i of both at the same expression; frame 0 is the reference (ideally neutral).

Returned dict (JSON-ready):
    identity_distance       dlib descriptor distance between frame 0 of original and stylized
                            (dlib: < 0.6 usually the same person), or None
    identity_kept           identity_distance < 0.6, or None
    expression_agreement    cosine similarity of the MediaPipe landmark motions (frame i minus
                            frame 0 after a similarity alignment on points expressions barely move,
                            eyes/brows/mouth/jaw points, units of the inter-ocular distance, all
                            frames together)
                            of original vs stylized; 1 = the same motion; None with < 2 frames or
                            when faces are missing
    expression_motion_ratio |stylized motion| / |original motion| (1 = same amplitude)
    faces_found             {"original": n, "stylized": n} frames where MediaPipe found a face
    notes                   sentences, e.g. "No face found on the stylized render (a very abstract
                            style): identity distance not measured."
"""

from __future__ import annotations

import numpy as np

from shared.errors import MetamorphError

from . import identity, landmarks as L


def _landmarks_all(frames) -> list:
    return [L.face_landmarks(np.ascontiguousarray(f)) for f in frames]


# points expressions hardly move: each frame is aligned onto frame 0 on them first, so a small
# shift or scale of the whole face mesh does not count as motion
STABLE = tuple(L.EYE_INNER + L.EYE_OUTER + (168, 6, 197, 195, 10, 151, 9, 8))
MOVING = tuple(sorted({i for g in ("eyes", "brows", "mouth", "jaw") for i in L.GROUPS[g]}))


def _motion(lms: list) -> np.ndarray | None:
    if len(lms) < 2 or any(m is None for m in lms):
        return None
    ref = lms[0][:, :2]
    iod = max(L.interocular(lms[0]), 1e-6)
    out = []
    for m in lms[1:]:
        _, (s, R, t) = L.similarity_align(m[list(STABLE), :2], ref[list(STABLE)])
        aligned = (s * (R @ m[:, :2].T)).T + t
        out.append(((aligned - ref) / iod)[list(MOVING)].ravel())
    return np.concatenate(out)


def independent_measures(original_frames, stylized_frames) -> dict:
    """See the module docstring. Raises ValueError when the two sequences differ in length."""
    original_frames, stylized_frames = list(original_frames), list(stylized_frames)
    if len(original_frames) != len(stylized_frames) or not original_frames:
        raise ValueError("independent_measures needs the same number (>= 1) of original and stylized frames")
    lo, ls = _landmarks_all(original_frames), _landmarks_all(stylized_frames)
    notes = []
    out = {"faces_found": {"original": sum(m is not None for m in lo), "stylized": sum(m is not None for m in ls)},
           "identity_distance": None, "identity_kept": None, "expression_agreement": None,
           "expression_motion_ratio": None}
    d0 = identity.descriptor(original_frames[0], lo[0])
    d1 = identity.descriptor(stylized_frames[0], ls[0]) if ls[0] is not None else None
    if d0 is None:
        notes.append("No face found on the original frontal render: identity distance not measured.")
    elif d1 is None:
        notes.append("No face found on the stylized frontal render (a very abstract style?): identity "
                     "distance not measured.")
    else:
        dist = identity.distance(d0, d1)
        out["identity_distance"] = round(dist, 4)
        out["identity_kept"] = bool(dist < identity.SAME_PERSON)
    if len(original_frames) < 2:
        notes.append("Only one frame: expression agreement needs at least two.")
    else:
        mo, ms = _motion(lo), _motion(ls)
        if mo is None or ms is None:
            notes.append("No face found on some " + ("original" if mo is None else "stylized")
                         + " expression frames: expression agreement not measured.")
        else:
            no, ns = np.linalg.norm(mo), np.linalg.norm(ms)
            if no < 1e-6:
                notes.append("The original frames do not move: expression agreement not measured.")
            else:
                out["expression_agreement"] = round(float(mo @ ms / max(no * ns, 1e-12)), 4)
                out["expression_motion_ratio"] = round(float(ns / no), 4)
    out["notes"] = notes
    return out


def frontal_camera_index(cameras) -> int:
    """Index of the camera looking most directly at the face (Blender camera -Z closest to +Y:
    the avatars face -Y)."""
    best, idx = -2.0, 0
    for i, cam in enumerate(cameras):
        fwd = -np.asarray(cam.matrix_world, np.float64)[:3, 2]
        c = float(fwd[1] / max(np.linalg.norm(fwd), 1e-12))
        if c > best:
            best, idx = c, i
    return idx


def measures_from_passes(passes: dict, cameras) -> dict:
    """:func:`independent_measures` on a stylize result's passes: ``passes["original"]`` and
    ``passes["color"]`` [C,N,h,w,3] uint8, from the most frontal of ``cameras``, over the N frames.
    Says so (in ``notes``, numbers None) when those passes were not rendered."""
    if "original" not in passes or "color" not in passes:
        return {"identity_distance": None, "identity_kept": None, "expression_agreement": None,
                "expression_motion_ratio": None, "faces_found": None,
                "notes": ["The 'original' and 'color' passes were not rendered: independent measures not taken."]}
    c = frontal_camera_index(cameras)
    try:
        m = independent_measures(list(passes["original"][c]), list(passes["color"][c]))
    except (ImportError, MetamorphError) as e:     # face models not installed: say so, never fail the run
        return {"identity_distance": None, "identity_kept": None, "expression_agreement": None,
                "expression_motion_ratio": None, "faces_found": None,
                "notes": [f"Face models unavailable ({e}): independent measures not taken."]}
    m["camera_index"] = c
    return m
