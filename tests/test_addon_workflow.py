"""The artist's workflow in the real bpy (issue 15): skinned avatars export with their
skeleton, results never overwrite each other, passes persist, honest labels, one clip
per action, messages that say what happened, Stop vs Disconnect, the guidance menu,
rigs that don't pile up, turntables that show the textures."""

from __future__ import annotations

import os

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from addon_scene import counts, fake_result, fresh, glb_json, make_avatar, make_rigged_avatar  # noqa: E402

import blender_addon  # noqa: E402
from blender_addon import (connection, export, job_operator, jobs, panel, paths,  # noqa: E402
                           result_apply, results, rig, selection, state)
from shared import errors, png  # noqa: E402
from shared import passes as mm_passes  # noqa: E402

pytestmark = pytest.mark.blender
ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.pardir,
                      "shared", "assets", "gltf")


@pytest.fixture
def scene(tmp_path):
    sc = fresh()
    blender_addon.register()
    sc.metamorph.output_dir = str(tmp_path / "out")
    yield sc
    blender_addon.unregister()


def _passes(C=2, N=1, h=4, w=4):
    rng = np.random.default_rng(0)
    return {"color": rng.integers(0, 256, (C, N, h, w, 3), dtype=np.uint8),
            "alpha": np.full((C, N, h, w, 1), 255, np.uint8)}


def _result(objs, name="oil painting", test_model=False, passes=None, frames=(1.0,)):
    res = fake_result(objs, name=name, passes=passes, frames=frames)
    res.body["cameras"] = [{"name": "Cam A"}, {"name": "Cam B"}]
    res.body["metadata"] = {"guidance": "test-tiny" if test_model else "ViT-B-32:openai",
                            "guidance_is_test_model": test_model}
    return res


def _apply(objs, **kw):
    return result_apply.apply_stylize_result(bpy.context, objs, _result(objs, **kw))


# -- 1. skinned avatars export with their armature, parents and animation ------------------

def test_skinned_export_keeps_armature_parents_and_animation(scene, tmp_path):
    head, eye, arm = make_rigged_avatar()
    objs = selection.avatar_objects(bpy.context)
    assert objs == [eye, head]
    _apply(objs)
    item = scene.metamorph.results[0]
    copies = results.result_objects(item)
    out = export.bake_and_export(copies, item.name, str(tmp_path / "exp"))
    j = glb_json(out["model"])
    nodes = {n["name"]: n for n in j["nodes"]}
    copy_head = next(c for c in copies if c["metamorph_source"] == "Head")
    assert len(j.get("skins", [])) == 1 and "skin" in nodes[copy_head.name]
    joints = {j["nodes"][i]["name"] for i in j["skins"][0]["joints"]}
    assert joints == {"root", "head"}
    # The eye hangs from the head bone through its empty: that chain is exported.
    assert "Eye socket" in nodes
    socket_children = [j["nodes"][i]["name"] for i in nodes["Eye socket"].get("children", [])]
    assert any(c["metamorph_source"] == "Eye" and c.name in socket_children for c in copies)
    # The armature's nod and the shape keys play, as one clip.
    assert len(j["animations"]) == 1
    paths_ = {ch["target"]["path"] for ch in j["animations"][0]["channels"]}
    assert {"rotation", "weights"} <= paths_
    # Back in Blender: the stylized head is skinned to an armature again.
    name = copy_head.name
    fresh()
    bpy.ops.import_scene.gltf(filepath=out["model"])
    skinned = [o for o in bpy.data.objects if o.type == "MESH" and o.name.startswith(name) and
               any(m.type == "ARMATURE" and m.object is not None for m in o.modifiers)]
    assert len(skinned) == 1 and skinned[0].data.shape_keys is not None


def test_robot_expressive_head_and_hand_export_skinned(scene, tmp_path):
    """The shared RobotExpressive asset: a head parented (through an empty) to a bone,
    and a hand skinned to the armature."""
    bpy.ops.import_scene.gltf(filepath=os.path.join(ASSETS, "RobotExpressive.glb"))
    objs = sorted([bpy.data.objects["Head_2"], bpy.data.objects["HandR_1"]], key=lambda o: o.name)
    copies = results.apply_result(scene, objs, fake_result(objs, name="bronze"))
    out = export.export_gltf(copies, str(tmp_path / "robot.glb"))
    j = glb_json(out)
    names = [n["name"] for n in j["nodes"]]
    assert len(j["skins"]) == 1 and "Head_1" in names and "RobotArmature" in names
    assert len(j["meshes"]) == 2  # the rest of the robot stays out
    hand = next(n for n in j["nodes"] if n["name"] == "bronze HandR_1")
    assert "skin" in hand
    assert len(j["animations"]) == 1  # not one per action the armature could play


# -- 8. a failed apply leaves nothing ---------------------------------------------------

def test_failed_apply_leaves_nothing_in_the_scene_or_on_disk(scene, tmp_path, monkeypatch):
    obj = make_avatar()
    bad = _result([obj], passes=_passes())
    bad.passes["color"] = bad.passes["color"][:, :, :, :, :2]  # wrong channel count
    before = counts()
    with pytest.raises(errors.InvalidAvatar, match="Pass 'color'"):
        result_apply.apply_stylize_result(bpy.context, [obj], bad)
    assert counts() == before
    # A failure after the copy was made (loading the pass images) removes it all again.
    from blender_addon import passes

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(passes, "load_pass_images", boom)
    with pytest.raises(RuntimeError):
        result_apply.apply_stylize_result(bpy.context, [obj], _result([obj], passes=_passes()))
    assert counts() == before
    assert len(scene.metamorph.results) == 0
    out = tmp_path / "out"
    assert not any(p.is_file() for p in out.rglob("*"))


# -- 2. unique output folders per blend file and per result ------------------------------

def test_results_from_two_blend_files_never_share_files(scene, tmp_path):
    scene.metamorph.output_dir = "//metamorph/"
    folders = []
    for blend in ("a.blend", "b.blend"):
        bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / blend))
        obj = make_avatar()
        _apply([obj], passes=_passes())
        _apply([obj], passes=_passes())  # a second run of the same style in the same file
        folders += [r.folder for r in bpy.context.scene.metamorph.results]
        fresh()
        blender_addon.unregister()
        blender_addon.register()
        bpy.context.scene.metamorph.output_dir = "//metamorph/"
    assert len(set(folders)) == 4
    assert {os.path.basename(os.path.dirname(f)) for f in folders} == {"a", "b"}
    for f in folders:
        assert os.path.basename(f).startswith("oil painting")
        assert os.path.exists(os.path.join(f, "passes", "Cam A", "color", "0001.png"))


# -- 3. pass images survive save and reopen ---------------------------------------------

def test_pass_images_persist_across_save_and_reopen(scene, tmp_path):
    obj = make_avatar()
    _apply([obj], passes=_passes(N=3), frames=(1.0, 2.0, 3.0))
    n = len([im for im in bpy.data.images if im.get("metamorph_pass")])
    assert n == 4
    path = str(tmp_path / "keep.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.open_mainfile(filepath=path)
    kept = [im for im in bpy.data.images if im.get("metamorph_pass")]
    assert len(kept) == n and all(im.use_fake_user for im in kept)
    assert kept[0].source == "SEQUENCE"


# -- 5. the test-model label travels with the result ------------------------------------

def test_test_model_label_on_objects_panel_glb_and_pngs(scene, tmp_path):
    obj = make_avatar()
    msg = _apply([obj], test_model=True, passes=_passes())
    assert "TEST guidance model" in msg
    item = scene.metamorph.results[0]
    copy = results.result_objects(item)[0]
    assert bool(copy["metamorph_guidance_is_test_model"]) and bool(copy.data["metamorph_guidance_is_test_model"])
    info = panel.describe(bpy.context)
    assert info["results"][0]["test_model"] is True
    p = os.path.join(item.folder, "passes", "Cam A", "color", "0001.png")
    assert png.read_png_text(p)[mm_passes.TEST_MODEL_KEY] == "true"
    assert bpy.ops.metamorph.bake_export() == {"FINISHED"}
    node = next(n for n in glb_json(os.path.join(item.folder, f"{item.name}.glb"))["nodes"]
                if n["name"] == copy.name)
    assert node["extras"]["metamorph_guidance_is_test_model"] in (True, 1)
    tex = [f for f in os.listdir(os.path.join(item.folder, "textures"))]
    assert tex and png.read_png_text(os.path.join(item.folder, "textures", tex[0]))[
        mm_passes.TEST_MODEL_KEY] == "true"
    # A real model's result says false everywhere.
    _apply([obj], test_model=False, passes=_passes())
    p = os.path.join(scene.metamorph.results[1].folder, "passes", "Cam A", "alpha", "0001.png")
    assert png.read_png_text(p)[mm_passes.TEST_MODEL_KEY] == "false"


# -- 4. one clip per action --------------------------------------------------------------

@pytest.mark.parametrize("copy_action", [False, True])
def test_export_has_one_clip_per_action(scene, tmp_path, copy_action):
    obj = make_avatar(stash=True)  # the action also on an NLA track, as after a glTF import
    copies = results.apply_result(scene, [obj], fake_result([obj]), copy_action=copy_action)
    j = glb_json(export.export_gltf(copies, str(tmp_path / "one.glb")))
    assert len(j["animations"]) == 1
    assert {c["target"]["path"] for c in j["animations"][0]["channels"]} == {"weights"}


# -- 7. messages that say what happened ----------------------------------------------------

def test_selecting_only_a_copy_says_copies_are_excluded(scene):
    obj = make_avatar()
    copy = results.apply_result(scene, [obj], fake_result([obj]))[0]
    obj.select_set(False)
    copy.select_set(True)
    why = selection.why_not(bpy.context, "stylize", True)
    assert "Only stylized copies are selected" in why and copy.name in why


def test_bake_export_after_deleting_a_result_says_so_and_drops_it(scene):
    obj = make_avatar()
    _apply([obj])
    copy = results.result_objects(scene.metamorph.results[0])[0]
    bpy.data.objects.remove(copy)
    info = panel.describe(bpy.context)
    assert info["results"][0]["missing"]
    assert bpy.ops.metamorph.bake_export.poll()  # runs, to say so and drop the entry
    assert bpy.ops.metamorph.bake_export() == {"CANCELLED"}
    msg = state.get().job_message
    assert "deleted" in msg and "stylize first" not in msg
    assert len(scene.metamorph.results) == 0


def test_a_local_error_replaces_the_previous_message(scene):
    obj = make_avatar()
    scene.metamorph.rig_collection = rig.create_turntable_rig(scene, [obj], 1, (0.0,))
    scene.metamorph.terms.add().text = "bronze"
    state.set_message(bpy.context, "'bronze' applied (1 object(s), 0 pass(es)).")
    state.get().connected = True
    try:
        with pytest.raises(RuntimeError, match="must be JSON"):
            bpy.ops.metamorph.stylize(settings="{not json")
    finally:
        state.get().connected = False
    assert "must be JSON" in state.get().job_message and state.get().job_message_level == "ERROR"


def test_uv_error_names_every_mesh(scene):
    a = make_avatar("Head", uv=False)
    b = make_avatar("Teeth", uv=False)
    for o in (a, b):
        o.select_set(True)
    why = selection.avatar_problem(selection.avatar_objects(bpy.context))
    assert "'Head'" in why and "'Teeth'" in why and "Unwrap a copy" in why
    from blender_addon import scene_io
    with pytest.raises(errors.InvalidAvatar, match="'Head', 'Teeth' have no UV map"):
        scene_io.extract_avatar([a, b])


@pytest.mark.parametrize("address", ["tcp://256.1.1.1:99999", "tcp://127.0.0.1:99999",
                                     "tcp://256.1.1.1:5557", "tcp://:5557", "nonsense"])
def test_bad_address_is_a_sentence_not_a_traceback(scene, address, monkeypatch):
    from blender_addon import preferences
    why = connection.address_problem(address)
    assert why and "not valid" in why
    monkeypatch.setattr(preferences._Defaults, "backend_address", address)
    with pytest.raises(RuntimeError, match="not valid"):
        bpy.ops.metamorph.connect()
    assert "not valid" in state.get().job_message


def test_result_with_wrong_types_is_reported_not_raised(scene):
    obj = make_avatar()
    res = fake_result([obj])
    body, arrays = res.to_wire()
    for bad_body in ({**body, "texture_sets": "skin"}, {**body, "frames": ["one"]},
                     {**body, "metadata": 3}, {k: v for k, v in body.items() if k != "texture_sets"}):
        job = jobs.Job("stylize", None, {})
        job.state, job.result = "done", (bad_body, dict(arrays))

        def apply(context, b, a):
            r = result_apply.from_wire(b, a)
            return result_apply.apply_stylize_result(context, [obj], r)

        before = counts()
        level, msg = job_operator.conclude(bpy.context, job, apply)
        assert level == "ERROR" and msg, (bad_body, level, msg)
        assert counts() == before


def test_offsets_of_the_wrong_width_say_what_is_wrong(scene):
    obj = make_avatar()
    res = fake_result([obj])
    res.neutral_offsets = res.neutral_offsets[:, :2]
    with pytest.raises(errors.InvalidAvatar, match=r"expected float \[\d+, 3\]"):
        results.apply_result(scene, [obj], res)


# -- 9. Stop only stops what Blender started; Disconnect is its own button ---------------

def test_stop_never_disconnects_from_a_server_it_did_not_start(scene):
    make_avatar()
    connection.set_connected(bpy.context, {"device": "cpu"}, "tcp://127.0.0.1:5999")
    assert not bpy.ops.metamorph.backend_stop.poll()
    assert connection.is_connected(bpy.context)
    _, log = _draw()
    assert ("operator", "metamorph.backend_stop") not in log
    assert ("operator", "metamorph.disconnect") in log
    assert bpy.ops.metamorph.disconnect() == {"FINISHED"}
    assert not connection.is_connected(bpy.context)


# -- 10. the guidance menu comes from hello ------------------------------------------------

def test_guidance_menu_lists_the_backends_models_and_marks_the_test_model(scene):
    s = scene.metamorph
    connection.set_connected(bpy.context, {"device": "cpu",
                                           "guidance_models": ["test-tiny", "ViT-B-32:openai"]},
                             "tcp://127.0.0.1:5557")
    items = s.bl_rna.properties["guidance_menu"].enum_items  # static view is empty: use the callback
    assert items is not None
    from blender_addon import properties
    got = properties.guidance_items(s, bpy.context)
    labels = {i[0]: i[1] for i in got}
    assert "test model" in labels["test-tiny"] and labels["ViT-B-32:openai"] == "ViT-B-32:openai"
    s.guidance_menu = "ViT-B-32:openai"
    assert s.guidance == "ViT-B-32:openai"
    info, log = _draw()
    assert ("prop", "guidance_menu") in log and ("prop", "guidance") not in log
    msg = job_operator.blender_hint(errors.GuidanceUnavailable(
        "No weights for ViT-B-32:laion2b_s34b_b79k. Pass --clip-checkpoint PATH or --guidance test-tiny."))
    assert "--" not in msg and "Guidance menu" in msg


# -- 11. rigs are replaced, not piled up ------------------------------------------------------

def test_create_rig_twice_replaces_the_first(scene):
    make_avatar()
    scene.metamorph.rig_count = 3
    for _ in range(2):
        assert bpy.ops.metamorph.rig_create() == {"FINISHED"}
    rigs = [c.name for c in bpy.data.collections if c.name.startswith(rig.RIG_NAME)]
    assert rigs == [rig.RIG_NAME]
    assert len(bpy.data.cameras) == 3 * 3 + 1 and len(selection.rig_cameras(bpy.context)) == 9
    # A collection the artist made is never deleted.
    mine = bpy.data.collections.new("My cameras")
    scene.collection.children.link(mine)
    scene.metamorph.rig_collection = mine
    assert bpy.ops.metamorph.rig_create() == {"FINISHED"}
    assert "My cameras" in bpy.data.collections


# -- 6. turntables show the textures; a black render is warned about ----------------------

def test_workbench_turntable_shows_texture_colour_and_eevee_warns_without_lights(scene, tmp_path):
    from blender_addon.turntable import TurntableJob, lighting_problem
    obj = make_avatar()
    res = fake_result([obj])
    for t in res.textures:
        t[...] = (20, 60, 230)  # blue, far from Workbench's grey material colour
    copies = results.apply_result(scene, [obj], res)
    coll = rig.create_turntable_rig(scene, [obj], count=1, elevations=(0.0,))
    cams = [o for o in coll.objects if o.type == "CAMERA" and not o.get("metamorph_orbit")]
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.resolution_x = scene.render.resolution_y = 24
    obj.hide_render = True
    before = scene.display.shading.color_type
    job = TurntableJob(scene, [("blue", copies, str(tmp_path / "r"))], cams, str(tmp_path),
                       frames=[1])
    while job.step():
        pass
    files = job.finish()
    assert scene.display.shading.color_type == before
    px = png.read_png(files[0]).astype(np.float32)
    centre = px[8:16, 8:16, :3].reshape(-1, 3).mean(0)
    assert centre[2] > centre[0] + 40, centre
    scene.render.engine = "BLENDER_EEVEE_NEXT" if "BLENDER_EEVEE_NEXT" in {
        e.identifier for e in scene.render.bl_rna.properties["engine"].enum_items} else "BLENDER_EEVEE"
    scene.world = None
    assert "no light and no world" in lighting_problem(scene)
    scene.metamorph.rig_lights = True
    obj.select_set(True)
    assert bpy.ops.metamorph.rig_create() == {"FINISHED"}
    assert lighting_problem(scene) is None
    assert len([o for o in scene.metamorph.rig_collection.objects if o.type == "LIGHT"]) == 3


# -- helpers ----------------------------------------------------------------------------------

def _draw():
    from test_addon_blender import RecordingLayout
    log = []
    info = panel.describe(bpy.context)
    for fn in panel.DRAW_FUNCTIONS:
        fn(RecordingLayout(log), bpy.context, info)
    return info, log


def test_paths_name_the_blend_file(scene, tmp_path):
    assert paths.blend_name() == "untitled"
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "my scene.blend"))
    assert paths.blend_name() == "my scene"
