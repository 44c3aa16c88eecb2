"""``metamorph expression-from-text`` / ``expression-from-video`` end to end in-process: track
JSON, animated GLB (read back) and strip, on an avatar whose shape keys use ``_L``/``_R``
and prefixed names; the test guidance model and the test regressor, labelled."""

from __future__ import annotations

import json

import numpy as np
import pytest

from backend.avatar import load_avatar, sample_avatar, save_glb
from backend.cli import main

RENAME = {"eyeBlinkLeft": "eyeBlink_L", "eyeBlinkRight": "eyeBlink_R", "mouthSmileLeft": "mouthSmile_L",
          "mouthSmileRight": "mouthSmile_R", "jawOpen": "Face.jawOpen"}


@pytest.fixture(scope="module")
def suffix_avatar(tmp_path_factory):
    av = sample_avatar(texture_size=128, with_track=False)
    av.blendshape_names = [RENAME.get(n, n) for n in av.blendshape_names]
    path = tmp_path_factory.mktemp("avatar") / "suffixed.glb"
    save_glb(av, str(path), track=None)
    return str(path)


def test_text_cli_writes_track_glb_and_strip_on_suffix_named_avatar(suffix_avatar, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["expression-from-text", "laughing, then surprised", "--avatar", suffix_avatar, "--out", str(out),
               "--guidance", "test-tiny", "--steps", "3", "--render-size", "48", "--views", "1", "--duration", "1.5",
               "--fps", "8", "--start-frame", "3", "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads((out / "track.json").read_text())
    assert doc["metadata"]["guidance_is_test_model"] is True and "jawOpen" in doc["names"]
    assert doc["frames"][0] == 3.0 and len(doc["frames"]) == 12 and len(doc["candidates"]) == 5
    assert doc["avatar_skipped_names"] == []
    av = load_avatar(str(out / "expression.glb"))
    assert av.track is not None and "eyeBlink_L" in av.track.names and "Face.jawOpen" in av.track.names
    np.testing.assert_allclose(av.track.frames, doc["frames"], atol=1e-3)
    col = av.track.names.index("Face.jawOpen")
    np.testing.assert_allclose(av.track.weights[:, col], doc["weights"]["jawOpen"], atol=1e-4)
    assert (out / "strip.png").stat().st_size > 1000
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["expression-from-text", "smiling", "--avatar", "sample", "--out", str(out), "--duration", "0",
                 "--guidance", "test-tiny"]) == 2
    assert "duration_s" in capsys.readouterr().err and not out.exists()
    assert main(["expression-from-video", str(tmp_path / "missing.mp4"), "--out", str(out)]) == 2
    assert not out.exists()


def test_video_cli_on_a_photo(suffix_avatar, tmp_path, tmp_path_factory, capsys):
    from PIL import Image
    from skimage import data

    Image.fromarray(data.astronaut()).save(tmp_path / "astronaut.png")
    out = tmp_path / "cap"
    rc = main(["expression-from-video", str(tmp_path / "astronaut.png"), "--avatar", suffix_avatar, "--out", str(out),
               "--regressor", "test", "--cache-dir", str(tmp_path_factory.getbasetemp() / "expression-cache")])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads((out / "track.json").read_text())
    assert len(doc["frames"]) == 1 and doc["detected"] == [True] and len(doc["head_rotation_deg"]) == 1
    assert doc["weights"]["jawOpen"][0] < 0.3
    av = load_avatar(str(out / "expression.glb"))
    assert av.track is not None and "mouthSmile_L" in av.track.names
    import pygltflib as gl

    g = gl.GLTF2().load(str(out / "expression.glb"))       # the head turn is the node's rotation channel
    assert [c.target.path for c in g.animations[0].channels] == ["weights", "rotation"]
