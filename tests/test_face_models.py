"""backend.face on a real photo and on renders: MediaPipe detection, 478 landmarks, region
masks and colours, dlib descriptors, tracking over frames, and the photo checks."""

import mediapipe as mp
import numpy as np
import pytest

from backend.face import analysis, identity, regions
from backend.face import landmarks as L
from shared.errors import InvalidParams
from tests._photo import astronaut


def _edges(loop):
    return {tuple(sorted((loop[i], loop[(i + 1) % len(loop)]))) for i in range(len(loop))}


def test_outline_loops_are_mediapipes_connection_sets():
    c = mp.solutions.face_mesh_connections
    for loop, ref in ((L.FACE_OVAL, c.FACEMESH_FACE_OVAL), (L.EYE_LEFT, c.FACEMESH_LEFT_EYE),
                      (L.EYE_RIGHT, c.FACEMESH_RIGHT_EYE), (L.IRIS_LEFT, c.FACEMESH_LEFT_IRIS),
                      (L.IRIS_RIGHT, c.FACEMESH_RIGHT_IRIS)):
        assert _edges(loop) == {tuple(sorted(e)) for e in ref}
    lips = {tuple(sorted(e)) for e in c.FACEMESH_LIPS}
    assert _edges(L.LIPS_OUTER) | _edges(L.LIPS_INNER) == lips
    for loop, ref in ((L.BROW_LEFT, c.FACEMESH_LEFT_EYEBROW), (L.BROW_RIGHT, c.FACEMESH_RIGHT_EYEBROW)):
        assert {tuple(sorted(e)) for e in ref} <= _edges(loop)


def test_astronaut_landmarks_regions_and_colors():
    img = astronaut()
    boxes = L.detect_faces(img)
    assert len(boxes) == 1
    lm = L.face_landmarks(img, boxes[0])
    assert lm.shape == (478, 3) and np.isfinite(lm).all()
    b = boxes[0]
    c = lm[:, :2].mean(0)
    assert b.x0 < c[0] < b.x1 and b.y0 < c[1] < b.y1
    # the person's left eye is on the image's right; the face is frontal
    assert lm[L.EYE_OUTER[0], 0] > lm[L.EYE_OUTER[1], 0]
    assert abs(L.yaw_degrees(lm)) < 5
    assert 100 < L.eye_corner_distance(lm) < 150
    m = regions.region_masks(img, lm)
    for k in ("skin", "lips", "eyes", "hair", "oval", "iris"):
        assert m[k].sum() > 50, k
    assert not (m["skin"] & m["lips"]).any() and not (m["skin"] & m["eyes"]).any()
    assert m["skin"].sum() > 10 * m["lips"].sum()
    # hair sits above the eyes; lips below
    ys = np.nonzero(m["hair"])[0].mean(), np.nonzero(m["lips"])[0].mean()
    assert ys[0] < lm[L.IRIS_CENTERS[0], 1] < ys[1]
    col = regions.region_colors(img, m)
    assert col["skin"].mean() > col["hair"].mean() + 0.15        # light skin, brown hair
    assert col["lips"][0] > col["lips"][2]                         # lips are red-ish


def test_dlib_descriptor_same_person_and_missing_face():
    img = astronaut()
    d = identity.descriptor(img)
    assert d.shape == (128,) and np.isfinite(d).all()
    flipped = np.ascontiguousarray(img[:, ::-1])
    assert identity.distance(d, identity.descriptor(flipped)) < identity.SAME_PERSON
    grey = np.full((200, 200, 3), 128, np.uint8)
    assert identity.descriptor(grey) is None and identity.distance(d, None) is None
    assert identity.dlib_faces(img) and not identity.dlib_faces(grey)


def test_tracking_a_sequence_marks_missing_frames():
    img = np.ascontiguousarray(astronaut(1.0)[40:300, 120:380])
    grey = np.full_like(img, 90)
    seq = L.landmarks_sequence([img, img, grey])
    assert seq.shape == (3, 478, 3)
    assert np.isfinite(seq[:2]).all() and np.isnan(seq[2]).all()


def test_photo_checks():
    a = analysis.analyze_photo(astronaut())
    assert a.num_faces == 1 and a.notes == [] and a.face_index == 0
    with pytest.raises(InvalidParams) as e:
        analysis.analyze_photo(astronaut(1.0))
    assert e.value.details["reason"] == "face_too_small" and "80" in e.value.message
    with pytest.raises(InvalidParams) as e:
        analysis.analyze_photo(np.full((300, 300, 3), 200, np.uint8))
    assert e.value.details["reason"] == "no_face"
    with pytest.raises(InvalidParams) as e:
        analysis.analyze_photo(astronaut(), face_index=3)
    assert e.value.details["reason"] == "face_index"


def test_several_faces_use_the_largest_and_face_n_picks_another():
    big = astronaut()[:560, 200:760]
    small = np.asarray(__import__("PIL.Image", fromlist=["Image"]).fromarray(big).resize((476, 476)))
    canvas = np.full((560, 1100, 3), 230, np.uint8)
    canvas[:, :560] = big
    canvas[40:516, 600:1076] = small
    a = analysis.analyze_photo(canvas)
    assert a.num_faces == 2 and "2 faces found" in a.notes[0]
    assert a.landmarks[:, 0].mean() < 560
    b = analysis.analyze_photo(canvas, face_index=1)
    assert b.landmarks[:, 0].mean() > 600 and b.face_index == 1


def test_jittered_landmarks_map_back_onto_the_face_and_repeat():
    """face_landmarks(jitters=8) averages the mesh over warped copies: each copy's landmarks must
    be mapped back into the photo's pixels (else the mean smears), and the warps are fixed."""
    img = astronaut()
    one = L.face_landmarks(img)
    avg = L.face_landmarks(img, jitters=8)
    again = L.face_landmarks(img, jitters=8)
    iod = L.interocular(one)
    err = np.linalg.norm(avg[:, :2] - one[:, :2], axis=1) / iod
    assert err.mean() < 0.02 and err.max() < 0.08, (err.mean(), err.max())
    assert np.array_equal(avg, again)
    # depth is scaled back like x: the averaged z agrees with one pass
    assert abs(np.median(avg[:, 2] - one[:, 2])) < 0.02 * iod
