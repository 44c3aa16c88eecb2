"""Blender parity: the sample GLB imported by Blender's own glTF importer and
extracted by ``blender_addon.scene_io`` equals the backend's loading of the
same file (same content hash). Real bpy wheel, run in a subprocess.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from backend.avatar import load_avatar, sample_avatar, save_glb
from backend.avatar.blendshapes import ARKIT_NAMES
from shared.avatar import content_hash

pytestmark = pytest.mark.blender

HERE = os.path.dirname(os.path.abspath(__file__))
# a captured head turn: Blender XYZ Euler degrees per frame of the sample's 72-frame track
TURN = np.stack([np.linspace(-10, 20, 72), np.linspace(0, 8, 72), 30 * np.sin(np.arange(72) / 9.0)], -1)


@pytest.fixture(scope="module")
def blender_run(tmp_path_factory):
    # bpy runs in the subprocess only: loading it here beside torch crashes (see scripts/run_tests.sh).
    d = tmp_path_factory.mktemp("blender")
    glb = str(d / "sample.glb")
    save_glb(sample_avatar(), glb)
    from test_avatar_io import _multi_node_glb, _skinned_glb
    multi = _multi_node_glb(d / "multi.glb")
    skinned = _skinned_glb(d / "skinned.glb")
    turn = str(d / "turn.glb")
    save_glb(sample_avatar(), turn, rotation=TURN)
    r = subprocess.run([sys.executable, os.path.join(HERE, "_avatar_blender_job.py"), glb, str(d), multi, skinned,
                        turn],
                       capture_output=True, text=True, timeout=300)
    rep_path = d / "report.json"
    assert rep_path.exists(), r.stderr[-3000:]
    rep = json.loads(rep_path.read_text())
    assert "traceback" not in rep, rep.get("traceback")
    return glb, d, rep, multi, skinned


def test_blender_imports_sample_glb_with_shape_keys_and_keyframes(blender_run):
    glb, d, rep, _, _ = blender_run
    imp = rep["imported"]
    names = list(ARKIT_NAMES)
    assert imp["shape_keys"] == ["Basis"] + names
    assert len(imp["objects"]) == 1
    # one F-curve per shape key, one key per frame of the 72-frame track, at frames 1..72
    assert set(imp["fcurves"]) == {f'key_blocks["{n}"].value' for n in names}
    assert set(imp["fcurves"].values()) == {72}
    assert imp["key_frames"][0] == pytest.approx(1.0, abs=1e-4)
    assert imp["key_frames"][-1] == pytest.approx(72.0, abs=1e-4)


def test_blender_keys_the_head_rotation_written_in_the_glb(blender_run):
    from shared.avatar import euler_xyz_matrix

    turn = blender_run[2]["turn"]
    assert turn["has_shape_key_action"]
    for f, m in turn["matrices"].items():
        # frame f of the track is row f - 1 (the track starts at frame 1)
        assert np.abs(np.array(m) - euler_xyz_matrix(TURN[int(f) - 1])).max() < 1e-4, f


def test_blender_extraction_equals_backend_loading(blender_run):
    glb, d, rep, _, _ = blender_run
    ours = load_avatar(glb)
    theirs = np.load(d / "sample.npz")
    for k in ("vertices", "faces", "uvs", "uv_faces", "face_material", "blendshapes"):
        a, b = getattr(ours, k), theirs[k]
        assert a.shape == b.shape, k
        assert np.abs(a.astype(np.float64) - b).max() <= 1e-5, k
    assert np.array_equal(ours.texture_sets[0].image, theirs["texture_0"])
    assert rep["sample"]["names"] == ours.blendshape_names
    assert rep["sample"]["track_names"] == ours.track.names
    assert np.array_equal(theirs["track_frames"], ours.track.frames)
    assert np.abs(theirs["track_weights"] - ours.track.weights).max() <= 1e-5
    assert rep["sample"]["hash"] == content_hash(ours)
    assert rep["sample_unchanged"]


def test_multi_node_file_parity(blender_run):
    """Two mesh nodes (child of a translated parent, scaled), two primitives, a shared
    textured material and a flat one, a strip primitive, a morph target on one node."""
    _, d, rep, multi, _ = blender_run
    ours = load_avatar(multi)
    theirs = np.load(d / "multi.npz")
    for k in ("vertices", "faces", "uvs", "uv_faces", "face_material", "blendshapes"):
        a, b = getattr(ours, k), theirs[k]
        assert a.shape == b.shape, k
        assert np.abs(a.astype(np.float64) - b).max() <= 1e-5, k
    assert [t.name for t in ours.texture_sets] == rep["multi"]["texture_names"]
    for i, t in enumerate(ours.texture_sets):
        assert np.array_equal(t.image, theirs[f"texture_{i}"])
    assert rep["multi"]["names"] == ours.blendshape_names == ["smile"]
    assert np.abs(theirs["track_weights"] - ours.track.weights).max() <= 1e-5
    assert rep["multi"]["hash"] == content_hash(ours)


def test_skinned_file_matches_blender_rest_pose(blender_run):
    """Blender skins the mesh into its bind pose under an armature; the backend applies
    the joint matrices itself. Equal within float tolerance (not bit-identical)."""
    _, d, rep, _, skinned = blender_run
    ours = load_avatar(skinned)
    theirs = np.load(d / "skinned.npz")
    assert "ARMATURE" in rep["skinned_objects"].values()
    assert np.abs(ours.vertices - theirs["vertices"]).max() <= 1e-5
    assert np.abs(ours.blendshapes - theirs["blendshapes"]).max() <= 1e-5
    assert np.array_equal(ours.faces, theirs["faces"])


def test_extraction_applies_transform_relative_keys_materials_and_evaluates_fcurves(blender_run):
    _, d, rep, _, _ = blender_run
    h = np.load(d / "handmade.npz")
    # world matrix: scale 2, 90 degrees about Z, then translate (1,2,3)
    local = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float64)
    world = np.stack([-2 * local[:, 1], 2 * local[:, 0], 2 * local[:, 2]], -1) + [1, 2, 3]
    assert np.allclose(h["vertices"], world, atol=1e-5)
    assert h["faces"].tolist() == [[0, 1, 2], [0, 2, 3]]
    assert np.allclose(h["uvs"][h["uv_faces"]], [[[0, 0], [1, 0], [1, 1]], [[0, 0], [1, 1], [0, 1]]])
    # shape keys in world space, relative to their own relative key
    assert rep["handmade"]["names"] == ["up", "more"]
    assert np.allclose(h["blendshapes"][0][2], [0, 0, 1.0], atol=1e-5)      # 0.5 local x scale 2
    assert np.allclose(h["blendshapes"][1][2], [0, 0, 0.5], atol=1e-5)      # relative to "up"
    assert np.abs(np.delete(h["blendshapes"], 2, axis=1)).max() == 0
    # flat material colour -> flat sRGB texture
    assert rep["handmade"]["base_color"] == pytest.approx([0.2, 0.4, 0.6], abs=1e-6)
    assert tuple(h["texture_0"][0, 0]) == (124, 170, 203)
    # the F-curve is evaluated at every frame of the scene range, not only at its two keys
    assert h["track_frames"].tolist() == list(range(1, 12))
    assert rep["handmade"]["track_names"] == ["up"]
    assert np.allclose(h["track_weights"][:, 0], np.arange(11) / 10, atol=1e-6)
    assert rep["handmade_unchanged"]


def test_extraction_evaluates_modifiers_without_touching_the_mesh(blender_run):
    m = blender_run[2]["modifier"]
    assert m == {"vertices": 9, "faces": 8, "original_vertices": 4}


def test_image_textures_are_read_as_srgb_bytes(blender_run):
    rep = blender_run[2]
    assert rep["image_float_True"] == [127, 127, 127]      # linear 0.214 -> sRGB 0.5
    assert rep["image_float_False"] == [55, 55, 55]        # the stored byte (0.214 * 255 rounded)


def test_extraction_errors_name_the_object(blender_run):
    errs = blender_run[2]["errors"]
    assert errs["no_uv"][0] == "InvalidAvatar" and "'nouv' has no UV map" in errs["no_uv"][1]
    assert errs["camera"][0] == "InvalidAvatar" and "'cam' is a camera, not a mesh" in errs["camera"][1]
    assert errs["nothing"][0] == "InvalidAvatar"
