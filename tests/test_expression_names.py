"""ARKit names and the mapping from an avatar's shape-key names (shared/arkit.py), and the
result contract's mapping onto an avatar (ExpressionResult.to_track)."""

from __future__ import annotations

import numpy as np
import pytest

from shared.arkit import ARKIT_NAMES, apply_mapping, arkit_name, match_names, mirror, symmetric_pairs
from shared.errors import InvalidParams
from shared.expression import ExpressionResult


@pytest.mark.parametrize("name,expected", [
    ("eyeBlinkLeft", "eyeBlinkLeft"), ("EyeBlinkLeft", "eyeBlinkLeft"), ("eye_blink_left", "eyeBlinkLeft"),
    ("eyeBlink_L", "eyeBlinkLeft"), ("eyeBlink_R", "eyeBlinkRight"), ("eyeBlink.L", "eyeBlinkLeft"),
    ("mouthSmile_Left", "mouthSmileLeft"), ("Face.eyeBlinkLeft", "eyeBlinkLeft"),
    ("blendShape1.eyeBlinkLeft", "eyeBlinkLeft"), ("blendShape1.mouthSmile_R", "mouthSmileRight"),
    ("Head|browInnerUp", "browInnerUp"), ("arkit_jawOpen", "jawOpen"), ("ARKit:tongueOut", "tongueOut"),
    ("jawOpen", "jawOpen"), ("mouthLeft", "mouthLeft"), ("Basis", None), ("smile_big", None), ("", None),
])
def test_arkit_name_understands_common_spellings(name, expected):
    assert arkit_name(name) == expected


def test_the_52_names_and_their_pairs():
    assert len(ARKIT_NAMES) == 52 and all(arkit_name(n) == n for n in ARKIT_NAMES)
    assert mirror("eyeBlinkLeft") == "eyeBlinkRight" and mirror("jawOpen") == "jawOpen"
    pairs = symmetric_pairs(ARKIT_NAMES)
    assert ("mouthSmileLeft", "mouthSmileRight") in pairs and ("jawLeft", "jawRight") in pairs
    assert all(a.endswith("Left") and b.endswith("Right") for a, b in pairs)


def test_match_names_prefers_exact_spellings_and_reports_the_rest():
    mapping, unmatched = match_names(["Basis", "Face.jawOpen", "jawOpen", "eyeBlink_L", "eyeBlink_R", "hat_up"])
    assert mapping == {"eyeBlinkLeft": "eyeBlink_L", "eyeBlinkRight": "eyeBlink_R", "jawOpen": "jawOpen"}
    assert unmatched == ["Face.jawOpen", "hat_up"]
    assert list(mapping) == [n for n in ARKIT_NAMES if n in mapping]  # ARKit order
    pairs, skipped = apply_mapping(["jawOpen", "mouthSmileLeft"], mapping)
    assert pairs == [("jawOpen", "jawOpen")] and skipped == ["mouthSmileLeft"]


def test_result_maps_onto_an_avatar_with_suffix_names_and_checks_itself():
    w = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], np.float32)
    res = ExpressionResult(names=["eyeBlinkLeft", "jawOpen", "cheekPuff"], weights=w, fps=30.0, start_frame=10)
    track, skipped = res.to_track(["Basis", "jawOpen", "eyeBlink_L", "browInnerUp"])
    assert track.names == ["eyeBlink_L", "jawOpen"] and skipped == ["cheekPuff"]
    np.testing.assert_array_equal(track.weights, w[:, :2])
    np.testing.assert_array_equal(track.frames, [10.0, 11.0])
    back = ExpressionResult.from_json(res.to_json())
    np.testing.assert_allclose(back.weights, w, atol=1e-5)
    with pytest.raises(InvalidParams):
        ExpressionResult(names=["notAName"], weights=np.zeros((2, 1), np.float32), fps=24, start_frame=1).check()
    with pytest.raises(InvalidParams):
        ExpressionResult(names=["jawOpen"], weights=np.full((2, 1), 1.5, np.float32), fps=24, start_frame=1).check()
    with pytest.raises(InvalidParams):
        ExpressionResult.from_wire({"names": ["jawOpen"]}, {})
