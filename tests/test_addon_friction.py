"""Issue 15's friction list in the real bpy: Prepare's own Iterations, expression
frames from the avatar's animation, separate turntable range, stage + estimate,
results beside the original, the same action by default, optional passes, no
silent texture upscaling, and "Unwrap a copy" for meshes without UVs."""

from __future__ import annotations

import time

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from addon_scene import datablock_hash, fake_result, fresh, glb_json, make_avatar  # noqa: E402

import blender_addon  # noqa: E402
from blender_addon import (export, jobs, progress, request_build, result_apply, results,  # noqa: E402
                           rig, selection)
from shared import stylize  # noqa: E402

pytestmark = pytest.mark.blender


@pytest.fixture
def scene(tmp_path):
    sc = fresh()
    blender_addon.register()
    sc.metamorph.output_dir = str(tmp_path / "out")
    yield sc
    blender_addon.unregister()


def test_prepare_sends_its_own_iterations_not_steps(scene):
    s = scene.metamorph
    s.steps, s.iterations = 7, 300
    s.terms.add().text = "oil painting"
    req, _ = request_build.build_prepare(bpy.context, "a" * 64)
    assert req.iterations == 300 and req.styles == ["oil painting"]
    assert "iterations" in req.to_params() and req.to_params()["iterations"] == 300


def test_expression_frames_default_to_the_avatars_animation_not_the_timeline(scene):
    obj = make_avatar()  # shape keys keyed on frames 1..10
    scene.frame_start, scene.frame_end = 1, 250  # what a glTF import leaves
    s = scene.metamorph
    s.frame_step = 3
    assert s.frame_source == "ACTION"
    assert selection.frames(bpy.context) == [1, 4, 7, 10]
    s.frame_source = "TIMELINE"
    assert len(selection.frames(bpy.context)) == 84
    # Turntables have their own range.
    s.frame_source = "ACTION"
    s.tt_use_scene_range = False
    s.tt_frame_start, s.tt_frame_end = 1, 24
    assert selection.turntable_frames(bpy.context) == list(range(1, 25))
    assert selection.frames(bpy.context, [obj]) == [1, 4, 7, 10]


def test_progress_line_names_the_one_time_preparation_and_an_estimate(scene):
    job = jobs.Job("prepare", None, {})
    job.events.put(("progress", {"stage": "meta", "step": 1, "total": 11}))
    job.tick()
    job.stage_since = ("meta", time.monotonic() - 2.0, 1)
    job.events.put(("progress", {"stage": "meta", "step": 3, "total": 11}))
    job.tick()
    line = progress.line(job)
    assert "one-time preparation" in line and "3/11" in line and "s left" in line
    progress.update(bpy.context, job)
    assert bpy.context.window_manager.metamorph.job_eta_s > 0


def test_copy_is_placed_beside_the_original_and_exported_where_it_stands(scene, tmp_path):
    obj = make_avatar()
    result_apply.apply_stylize_result(bpy.context, [obj], fake_result([obj]))
    copy = results.result_objects(scene.metamorph.results[0])[0]
    bpy.context.view_layer.update()
    dx = copy.matrix_world.translation.x - obj.matrix_world.translation.x
    assert dx == pytest.approx(0.2 * 1.1, rel=0.05)  # the sphere is 0.2 m wide
    j = glb_json(export.export_gltf([copy], str(tmp_path / "c.glb")))
    node = next(n for n in j["nodes"] if n["name"] == copy.name)
    assert node.get("translation", [0, 0, 0])[0] == pytest.approx(0.0, abs=1e-6)
    assert copy.location.x == pytest.approx(dx)  # restored after the export


def test_copy_plays_the_same_action_so_later_edits_carry_over(scene):
    obj = make_avatar()
    copy = results.apply_result(scene, [obj], fake_result([obj]))[0]
    key = obj.data.shape_keys
    assert copy.data.shape_keys.animation_data.action == key.animation_data.action
    from blender_addon import animation
    fc = animation.shape_key_fcurves(obj)["jawOpen"]
    fc.keyframe_points[1].co.y = 0.5  # the artist softens the jaw on the original
    fc.update()
    scene.frame_set(5)
    assert copy.data.shape_keys.key_blocks["jawOpen"].value == pytest.approx(0.5)
    # With the preference, a copy of its own.
    c2 = results.apply_result(scene, [obj], fake_result([obj]), copy_action=True)[0]
    assert c2.data.shape_keys.animation_data.action != key.animation_data.action


def test_passes_are_optional_and_chosen(scene):
    obj = make_avatar()
    s = scene.metamorph
    assert set(s.passes) == {"color", "alpha"}
    assert request_build.requested_passes(s) == ["color", "alpha"]
    s.passes = {"normal", "color"}
    assert request_build.requested_passes(s) == ["color", "normal"]
    s.use_passes = False
    before = len(bpy.data.images)
    res = fake_result([obj], passes={"alpha": np.zeros((1, 1, 4, 4, 1), np.uint8)})
    res.body["cameras"] = [{"name": "c"}]
    msg = result_apply.apply_stylize_result(bpy.context, [obj], res, save_passes=False)
    assert "0 pass(es)" in msg
    assert len(bpy.data.images) == before + 1  # the stylized texture only


def test_textures_are_not_upscaled_unless_asked(scene):
    obj = make_avatar()  # a 16x16 base-colour image
    s = scene.metamorph
    s.rig_collection = rig.create_turntable_rig(scene, [obj], 1, (0.0,))
    s.terms.add().text = "bronze"
    av = request_build.extract(bpy.context, [obj])
    s.texture_size = 1024
    req, _ = request_build.build_request(bpy.context, [obj], "a" * 64, avatar=av)
    assert req.texture_size == stylize.MIN_TEXTURE_SIZE  # 16: the avatar's own size
    s.allow_upscale = True
    req, _ = request_build.build_request(bpy.context, [obj], "a" * 64, avatar=av)
    assert req.texture_size == 1024


def test_meshes_without_uvs_are_stylized_through_an_unwrapped_copy(scene):
    obj = make_avatar(uv=False)
    s = scene.metamorph
    s.rig_collection = rig.create_turntable_rig(scene, [obj], 1, (0.0,))
    s.terms.add().text = "bronze"
    assert "no UVs" in selection.why_not(bpy.context, "stylize", True)
    s.unwrap_copy = True
    assert selection.why_not(bpy.context, "stylize", True) is None
    before = datablock_hash(obj)
    n_objects = len(bpy.data.objects)
    uvs = request_build.uv_overrides(bpy.context, [obj])
    av = request_build.extract(bpy.context, [obj], uvs)
    assert len(obj.data.uv_layers) == 0 and datablock_hash(obj) == before
    assert len(bpy.data.objects) == n_objects  # the temporary copy is gone
    assert av.uvs.min() >= 0 and av.uvs.max() <= 1 and len(av.uvs) > 10
    copy = results.apply_result(scene, [obj], fake_result([obj]), uv_overrides=uvs)[0]
    got = np.empty(len(copy.data.loops) * 2, np.float32)
    copy.data.uv_layers.active.uv.foreach_get("vector", got)
    assert np.allclose(got.reshape(-1, 2), uvs[obj.name])
    assert len(obj.data.uv_layers) == 0
