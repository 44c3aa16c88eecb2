"""Expression from Text / Video inside the real bpy: weights by ARKit name become a new
action on a new NLA track whose keys evaluate (through Blender's own animation system) to
the returned weights at their frames, on the sample avatar (glTF import) and on an avatar
with ``_L``/``_R`` names; the original action keeps every key; skipped blendshapes are
reported; a malformed result changes nothing; capture input (image folder, video, EXIF)
is read through Blender; and both operators run against a live ``metamorph serve``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from addon_scene import counts, make_avatar  # noqa: E402

import blender_addon  # noqa: E402
from blender_addon import animation, ops_expression  # noqa: E402
from shared import errors  # noqa: E402
from shared.expression import ExpressionResult  # noqa: E402

pytestmark = pytest.mark.blender
ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def sample_glb(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "sample.glb"
    subprocess.run([str(VENV_BIN / "metamorph"), "sample-avatar", "--out", str(out)], check=True, cwd=ROOT,
                   capture_output=True)
    return str(out)


def _import(path):
    bpy.ops.import_scene.gltf(filepath=path)
    obj = next(o for o in bpy.context.scene.objects if o.type == "MESH" and o.data.shape_keys)
    for o in bpy.context.scene.objects:
        o.select_set(o is obj)
    bpy.context.view_layer.objects.active = obj
    return obj


def _keys_snapshot(action) -> dict:
    """Every key of every F-curve of ``action`` (all slots)."""
    out = {}
    for fc in _all_fcurves(action):
        co = np.empty(2 * len(fc.keyframe_points), np.float32)
        fc.keyframe_points.foreach_get("co", co)
        out[fc.data_path] = co
    return out


def _same_keys(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(np.array_equal(a[p], b[p]) for p in a)


def _all_fcurves(action):
    if hasattr(action, "layers"):
        return [fc for layer in action.layers for strip in layer.strips for bag in strip.channelbags
                for fc in bag.fcurves]
    return list(action.fcurves)


def _result(names, n=12, start=30, seed=0, **md):
    rng = np.random.default_rng(seed)
    w = rng.uniform(0, 1, (n, len(names))).astype(np.float32)
    return ExpressionResult(names=list(names), weights=w, fps=24.0, start_frame=start,
                            metadata={"guidance": "test-tiny", "guidance_is_test_model": True, **md})


def _evaluated(obj, key, frame):
    bpy.context.scene.frame_set(frame)
    return obj.data.shape_keys.key_blocks[key].value


def test_sample_avatar_gets_a_new_action_that_evaluates_to_the_weights(scene, sample_glb):
    obj = _import(sample_glb)
    key = obj.data.shape_keys
    orig = key.animation_data.action
    before = _keys_snapshot(orig)
    orig_jaw = animation.shape_key_fcurves(obj)["jawOpen"].evaluate(5.0)
    scene.frame_current = 30
    res = _result(["jawOpen", "mouthSmileLeft", "eyeBlinkRight", "tongueOut", "cheekPuff"])
    body, arrays = res.to_wire()
    msg = ops_expression.apply_wire(bpy.context, [obj.name], body, arrays, "MM smile", "FRAMES", 0.01)
    lacks = [n for n in ("tongueOut", "cheekPuff") if n not in key.key_blocks]
    assert lacks and all(n in msg for n in lacks) and "TEST" in msg
    assert scene.metamorph.expression_report == msg  # the panel shows it
    top = key.animation_data.nla_tracks[-1]
    act = top.strips[0].action
    assert act != orig and act[ops_expression.TEST_LABEL] is True
    assert act["metamorph_skipped_blendshapes"] == ", ".join(lacks)
    assert top.strips[0].frame_start == 30
    for i, f in enumerate(res.frames):
        for k, name in enumerate(res.names):
            if name in key.key_blocks:
                assert _evaluated(obj, name, int(f)) == pytest.approx(float(res.weights[i, k]), abs=1e-5)
    # The original action: every key as it was, still playing outside the new strip.
    assert _same_keys(before, _keys_snapshot(orig))
    assert _evaluated(obj, "jawOpen", 5) == pytest.approx(orig_jaw, abs=1e-5)
    # Revert: mute the new track and the original plays again at those frames.
    top.mute = True
    want = [fc for fc in _all_fcurves(orig) if fc.data_path == animation.key_path("jawOpen")][0]
    assert _evaluated(obj, "jawOpen", 35) == pytest.approx(want.evaluate(35.0), abs=1e-5)


def test_panel_shows_the_operators_and_what_was_skipped(scene):
    import types

    from test_addon_blender import RecordingLayout

    from blender_addon import panel
    obj = make_avatar("P", shape_keys=("jawOpen", "eyeBlink_L"))
    ops_expression.apply_wire(bpy.context, [obj.name], *_result(["jawOpen", "cheekPuff"]).to_wire(), "MM p",
                              "FRAMES", 0.01)
    log = []
    panel.MM_PT_main.draw(types.SimpleNamespace(layout=RecordingLayout(log)), bpy.context)
    for op in ("avatar_from_photo", "avatar_from_text", "expression_from_text", "expression_from_video"):
        assert ("operator", f"metamorph.{op}") in log
    text = " ".join(e[1] for e in log if e[0] == "label")
    assert "2 ARKit shape keys" in text and "cheekPuff" in text and "TEST" in text
    assert not bpy.ops.metamorph.expression_from_text.poll()  # not connected: the button says why
    assert "Not connected" in ops_expression.MM_OT_expression_from_video.problem(bpy.context)


def test_left_right_suffix_names_map_and_thinned_keys_stay_within_tolerance(scene):
    obj = make_avatar("LR", shape_keys=("jawOpen", "eyeBlink_L", "eyeBlink_R", "mouthSmile_L"))
    orig = obj.data.shape_keys.animation_data.action
    before = _keys_snapshot(orig)
    n = 48
    t = np.linspace(0, 1, n)
    names = ["eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "mouthSmileRight", "jawOpen"]
    w = np.stack([0.5 + 0.5 * np.sin(6 * t), t, np.clip(2 * t - 0.5, 0, 1), t, (t > 0.5) * 0.8], -1)
    res = ExpressionResult(names=names, weights=w.astype(np.float32), fps=24.0, start_frame=5, metadata={})
    tol = 0.01
    msg = ops_expression.apply_wire(bpy.context, [obj.name], *res.to_wire(), "MM lr", "THINNED", tol)
    assert "mouthSmileRight" in msg and "TEST" not in msg
    act = obj.data.shape_keys.animation_data.nla_tracks[-1].strips[0].action
    curves = {animation.key_name(fc.data_path): fc for fc in _all_fcurves(act)}
    assert set(curves) == {"eyeBlink_L", "eyeBlink_R", "mouthSmile_L", "jawOpen"}
    assert len(curves["eyeBlink_R"].keyframe_points) < n / 4  # a straight line needs few keys
    assert sum(len(fc.keyframe_points) for fc in curves.values()) < 4 * n / 2
    assert curves["eyeBlink_L"].keyframe_points[0].interpolation == "BEZIER"
    for avatar_name, k in (("eyeBlink_L", 0), ("eyeBlink_R", 1), ("mouthSmile_L", 2), ("jawOpen", 4)):
        for i in range(0, n, 5):
            got = _evaluated(obj, avatar_name, 5 + i)
            assert abs(got - w[i, k]) <= tol + 1e-5, (avatar_name, i, got, w[i, k])
    assert _same_keys(before, _keys_snapshot(orig))


def test_head_rotation_is_a_delta_rotation_track_on_the_head(scene):
    from addon_scene import make_rigged_avatar
    obj = make_avatar("Turn", shape_keys=("jawOpen",))
    obj.rotation_euler = (0.1, 0.0, 0.2)
    res = _result(["jawOpen"], n=6, start=10)
    res.head_rotation = np.stack([np.linspace(0, 20, 6), np.zeros(6), np.linspace(0, -30, 6)], -1).astype(np.float32)
    msg = ops_expression.apply_wire(bpy.context, [obj.name], *res.to_wire(), "MM turn", "FRAMES", 0.01, True)
    assert "Head rotation on 'Turn'" in msg
    for i in (0, 3, 5):
        bpy.context.scene.frame_set(10 + i)
        assert np.allclose(obj.delta_rotation_euler, np.radians(res.head_rotation[i]), atol=1e-5)
        assert np.allclose(obj.rotation_euler, (0.1, 0.0, 0.2))  # the object's own rotation stays
    bpy.context.scene.frame_set(30)
    assert np.allclose(obj.delta_rotation_euler, 0.0)  # outside the strip nothing turns
    head, eye, arm = make_rigged_avatar("Rig")
    target, why = ops_expression.head_target([head, eye])
    assert target is None and "armature" in why


def test_malformed_or_unusable_results_change_nothing(scene):
    obj = make_avatar("Bad", shape_keys=("jawOpen",))
    ad = obj.data.shape_keys.animation_data
    state = (counts(), ad.action.name, len(ad.nla_tracks))
    res = _result(["jawOpen"])
    body, arrays = res.to_wire()
    bad = dict(arrays, weights=arrays["weights"][:, :0])  # weights disagree with the names
    with pytest.raises(errors.InvalidParams):
        ops_expression.apply_wire(bpy.context, [obj.name], body, bad, "MM x", "FRAMES", 0.01)
    with pytest.raises(errors.InvalidParams):  # names outside ARKit
        ops_expression.apply_wire(bpy.context, [obj.name], dict(body, names=["smirk"]), arrays, "x", "FRAMES", .01)
    with pytest.raises(errors.InvalidParams):  # none of the blendshapes on this avatar
        ops_expression.apply_wire(bpy.context, [obj.name], *_result(["cheekPuff"]).to_wire(), "x", "FRAMES", .01)
    assert (counts(), ad.action.name, len(ad.nla_tracks)) == state


def test_second_expression_stacks_another_track(scene):
    obj = make_avatar("Two", shape_keys=("jawOpen",))
    ad = obj.data.shape_keys.animation_data
    orig = ad.action
    for seed in (1, 2):
        res = _result(["jawOpen"], n=4, start=20, seed=seed)
        ops_expression.apply_wire(bpy.context, [obj.name], *res.to_wire(), f"MM {seed}", "FRAMES", 0.01)
    names = [t.name for t in ad.nla_tracks]
    assert names[-2:] == ["MM 1 [TEST MODEL] (Two)", "MM 2 [TEST MODEL] (Two)"] and orig.name in names
    assert _evaluated(obj, "jawOpen", 21) == pytest.approx(float(res.weights[1, 0]), abs=1e-5)


def test_capture_input_image_folder_video_and_exif(scene, tmp_path):
    from PIL import Image
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        a = np.zeros((40, 60, 3), np.uint8)
        a[..., 0] = 60 * i
        Image.fromarray(a).resize((60 + 2 * i, 40)).save(folder / f"{i:02d}.png")
    fr = ops_expression.read_frames(str(folder), 24.0, 10)
    assert fr.shape == (3, 40, 60, 3) and [int(fr[i, 20, 30, 0]) for i in range(3)] == [0, 60, 120]
    with pytest.raises(errors.TooLarge):
        ops_expression.read_frames(str(folder), 24.0, 2)
    a = np.zeros((40, 80, 3), np.uint8)
    a[:10] = 255  # a white top band
    im = Image.fromarray(a)
    ex = im.getexif()
    ex[0x0112] = 6  # "rotate 90 clockwise to display"
    im.save(tmp_path / "o6.jpg", exif=ex.tobytes(), quality=95)
    one = ops_expression.read_frames(str(tmp_path / "o6.jpg"), 24.0, 10)
    assert one.shape == (1, 80, 40, 3)
    assert one[0, 40, 35].mean() > 200 and one[0, 40, 5].mean() < 50  # the band is now on the right
    video = tmp_path / "clip.mp4"
    code = ("import av, numpy as np, sys\n"
            "c = av.open(sys.argv[1], 'w'); s = c.add_stream('mpeg4', rate=12); s.width, s.height = 64, 48\n"
            "s.pix_fmt = 'yuv420p'\n"
            "for i in range(12):\n"
            "    a = np.zeros((48, 64, 3), np.uint8); a[..., 0] = 20 * i\n"
            "    [c.mux(p) for p in s.encode(av.VideoFrame.from_ndarray(a, format='rgb24'))]\n"
            "[c.mux(p) for p in s.encode()]; c.close()\n")
    subprocess.run([str(VENV_BIN / "python"), "-c", code, str(video)], check=True)
    before = counts()
    vf = ops_expression.read_frames(str(video), 24.0, 100)  # 12 fps clip sampled at 24 fps
    assert vf.shape == (23, 48, 64, 3) and counts() == before  # temporary scene and images removed
    red = vf[:, 24, 32, 0].astype(int)
    assert abs(red[0] - 0) < 12 and abs(red[2] - 20) < 12 and abs(red[22] - 220) < 12
    with pytest.raises(errors.InvalidParams):
        ops_expression.read_frames(str(tmp_path / "nothing.mp4"), 24.0, 10)


# ------------------------------------------------------------------ against a live backend
@pytest.fixture
def live(server, scene, sample_glb):
    import addon_utils
    from shared.client import connect
    with connect(server.endpoint) as c:
        kinds = c.server_info.get("job_kinds", [])
    if "expression_from_video" not in kinds:
        pytest.skip("the backend has no expression jobs yet")
    blender_addon.unregister()
    addon_utils.enable("blender_addon", default_set=True, handle_error=None)
    prefs = bpy.context.preferences.addons["blender_addon"].preferences
    prefs.backend_address, prefs.timeout_s = server.endpoint, 120.0
    obj = _import(sample_glb)
    assert bpy.ops.metamorph.connect() == {"FINISHED"}
    yield obj
    addon_utils.disable("blender_addon", default_set=True)
    blender_addon.register()  # the scene fixture unregisters


@pytest.mark.slow
def test_expression_from_video_operator_on_a_real_photo(live, tmp_path):
    from PIL import Image
    from skimage import data
    Image.fromarray(data.astronaut()).resize((256, 256)).save(tmp_path / "astronaut.png")
    sc = bpy.context.scene
    sc.frame_current = 7
    sc.metamorph.expression_source = str(tmp_path / "astronaut.png")
    sc.metamorph.expression_head_rotation = True
    orig = live.data.shape_keys.animation_data.action
    before = _keys_snapshot(orig)
    assert bpy.ops.metamorph.expression_from_video(settings=json.dumps({"regressor": "test"})) == {"FINISHED"}
    from blender_addon import jobs
    body, arrays = jobs.last.result
    res = ExpressionResult.from_wire(body, arrays)
    assert res.start_frame == 7 and res.weights.shape[0] == 1 and res.head_rotation.shape == (1, 3)
    assert "Head rotation on" in sc.metamorph.expression_report
    sc.frame_set(7)
    assert np.allclose(live.delta_rotation_euler, np.radians(res.head_rotation[0]), atol=1e-5)
    key = live.data.shape_keys
    for k, name in enumerate(res.names):
        if name in key.key_blocks:
            assert _evaluated(live, name, 7) == pytest.approx(float(res.weights[0, k]), abs=1e-5)
    assert _same_keys(before, _keys_snapshot(orig))


@pytest.mark.slow
def test_expression_from_text_operator_with_the_test_model(live):
    sc = bpy.context.scene
    sc.render.fps = 8
    sc.frame_current = 3
    s = sc.metamorph
    s.expression_text, s.expression_duration, s.guidance = "smiling", 1.0, "test-tiny"
    s.expression_keys = "THINNED"
    over = {"steps": 2, "settings": {"render_size": 48, "views": 1, "intensities": 1}}
    assert bpy.ops.metamorph.expression_from_text(settings=json.dumps(over)) == {"FINISHED"}
    from blender_addon import jobs
    res = ExpressionResult.from_wire(*jobs.last.result)
    assert res.metadata["guidance_is_test_model"] is True and res.weights.shape[0] == 8
    act = live.data.shape_keys.animation_data.nla_tracks[-1].strips[0].action
    assert act[ops_expression.TEST_LABEL] is True and "TEST" in s.expression_report
    k = res.names.index("jawOpen")
    for i in range(8):
        assert abs(_evaluated(live, "jawOpen", 3 + i) - res.weights[i, k]) <= s.expression_tolerance + 1e-5

