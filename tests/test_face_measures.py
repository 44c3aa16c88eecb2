"""The independent quality measures (dlib identity distance, MediaPipe landmark-motion
agreement) on true renders of the sample avatar."""

import numpy as np
import pytest

from backend.avatar.blendshapes import ARKIT_NAMES
from backend.avatar.params import AvatarParams, random_params
from backend.face.measures import frontal_camera_index, independent_measures, measures_from_passes
from backend.photo import synth


# (jawOpen is left out: MediaPipe does not follow the open jaw of every sample avatar)
def _frames(P, names=("mouthSmileLeft", "eyeBlinkRight", "browInnerUp")):
    out = [synth.render_avatar(P, None, labels=False)["image"]]
    for n in names:
        e = np.zeros(len(ARKIT_NAMES), np.float32)
        e[ARKIT_NAMES.index(n)] = 1.0
        out.append(synth.render_avatar(P, e, labels=False)["image"])
    return out


@pytest.fixture(scope="module")
def frames():
    return _frames(AvatarParams())


def test_same_renders_agree_fully(frames):
    m = independent_measures(frames, frames)
    assert m["identity_distance"] == pytest.approx(0.0, abs=1e-4) and m["identity_kept"]
    assert m["expression_agreement"] == pytest.approx(1.0, abs=1e-4)
    assert m["expression_motion_ratio"] == pytest.approx(1.0, abs=1e-4)
    assert m["faces_found"] == {"original": 4, "stylized": 4} and m["notes"] == []


def test_other_avatar_same_motion_vs_wrong_motion(frames):
    other = _frames(random_params(3))
    same_motion = independent_measures(frames, other)
    assert same_motion["identity_distance"] > 0.05
    wrong = independent_measures(frames, [other[0], other[2], other[3], other[1]])
    assert same_motion["expression_agreement"] > 0.6
    assert wrong["expression_agreement"] < same_motion["expression_agreement"] - 0.3


def test_no_face_on_the_stylized_render_is_said_not_numbered(frames):
    grey = [np.full_like(f, 128) for f in frames]
    m = independent_measures(frames, grey)
    assert m["identity_distance"] is None and m["expression_agreement"] is None
    assert any("No face found on the stylized" in n for n in m["notes"])
    with pytest.raises(ValueError):
        independent_measures(frames, frames[:2])


def test_measures_from_stylize_passes_pick_the_frontal_camera(frames):
    from backend.style.rig import default_rig

    av_v = np.random.default_rng(0).normal(size=(50, 3)) * 0.1 + [0, 0, 0.4]
    cams = default_rig(av_v)
    c = frontal_camera_index(cams)
    fwd = -np.asarray(cams[c].matrix_world)[:3, 2]
    assert fwd[1] > 0.9
    arr = np.stack([np.stack(frames)] * len(cams))
    m = measures_from_passes({"original": arr, "color": arr}, cams)
    assert m["camera_index"] == c and m["expression_agreement"] == pytest.approx(1.0, abs=1e-4)
    assert measures_from_passes({"color": arr}, cams)["identity_distance"] is None
