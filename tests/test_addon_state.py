"""Issue 9 in the real bpy: the add-on's properties follow the contract's constants,
transient state lives on the window manager (never saved), the panel describes
the scene once per redraw, and the add-on's bpy-free rules live in ``shared``."""

from __future__ import annotations

import types

import pytest

bpy = pytest.importorskip("bpy")

from addon_scene import fresh, make_avatar  # noqa: E402

import blender_addon  # noqa: E402
from blender_addon import connection, panel, properties, state  # noqa: E402
from shared import stylize  # noqa: E402

pytestmark = pytest.mark.blender


def test_properties_follow_the_contract_constants(monkeypatch):
    fresh()
    monkeypatch.setattr(stylize, "MAX_TEXTURE_SIZE", 2048)
    monkeypatch.setattr(stylize, "DEFAULT_IDENTITY", 0.25)
    monkeypatch.setattr(stylize, "MAX_PROMPT_LENGTH", 77)
    monkeypatch.setattr(stylize, "PRESET_DESCRIPTIONS", {"draft": "d", "quality": "q", "film": "f"})
    blender_addon.register()
    try:
        rna = bpy.types.Scene.bl_rna.properties["metamorph"].fixed_type.properties
        assert rna["texture_size"].hard_max == 2048
        assert rna["identity"].default == pytest.approx(0.25)
        assert [i.identifier for i in rna["preset"].enum_items] == ["draft", "quality", "film"]
        s = bpy.context.scene.metamorph
        t = s.terms.add()
        t.text = "x" * 200
        assert len(t.text) == 77
        s.texture_size = 4096
        assert s.texture_size == 2048  # clamped where the backend would refuse
    finally:
        blender_addon.unregister()
    monkeypatch.undo()
    blender_addon.register()
    try:
        rna = bpy.types.Scene.bl_rna.properties["metamorph"].fixed_type.properties
        assert rna["texture_size"].hard_max == stylize.MAX_TEXTURE_SIZE
        assert rna["pass_resolution"].hard_min == stylize.MIN_PASS_RESOLUTION
        assert rna["iterations"].hard_max == stylize.MAX_ITERATIONS
        assert rna["guidance"].default == stylize.DEFAULT_GUIDANCE
    finally:
        blender_addon.unregister()


def test_connection_and_progress_live_on_the_window_manager_and_are_not_saved(scene, tmp_path):
    connection.set_connected(bpy.context, {"device": "cuda"}, "tcp://127.0.0.1:5557")
    state.get().job_message = "halfway"
    assert connection.is_connected() and state.get().device == "cuda"
    s_props = set(scene.metamorph.bl_rna.properties.keys())
    assert not s_props & {"connection", "device", "job_stage", "job_message", "job_preview"}
    path = str(tmp_path / "s.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.open_mainfile(filepath=path)
    assert not connection.is_connected() and state.get().device == ""
    assert b"halfway" not in open(path, "rb").read()  # nothing of it is in the file


def test_panel_describes_once_per_redraw(scene, monkeypatch):
    from test_addon_blender import RecordingLayout
    make_avatar()
    calls = []
    real = panel.describe
    monkeypatch.setattr(panel, "describe", lambda ctx: calls.append(1) or real(ctx))
    log = []
    panel.MM_PT_main.draw(types.SimpleNamespace(layout=RecordingLayout(log)), bpy.context)
    assert len(calls) == 1
    assert ("panel", "MM_style") in log and ("operator", "metamorph.stylize") in log
    assert ("prop", "iterations") in log  # Prepare has its own field


def test_every_setting_says_what_it_does(scene):
    rna = bpy.types.Scene.bl_rna.properties["metamorph"].fixed_type.properties
    internal = {"rna_type", "name", "active_term", "active_result", "terms", "results"}
    silent = [p.identifier for p in rna if p.identifier not in internal and not p.description]
    assert silent == []
    term = rna["terms"].fixed_type.properties
    assert all(term[k].description for k in ("kind", "text", "image", "weight"))
    from blender_addon.ops_scene import MM_OT_term_add
    text = MM_OT_term_add.description(bpy.context, types.SimpleNamespace(kind="TEXT"))
    image = MM_OT_term_add.description(bpy.context, types.SimpleNamespace(kind="IMAGE"))
    assert "text" in text and "image" in image


def test_guidance_items_without_connection_offer_the_current_choice(scene):
    items = properties.guidance_items(scene.metamorph, bpy.context)
    assert [i[0] for i in items] == [stylize.DEFAULT_GUIDANCE]


def test_addon_has_one_home_for_image_and_fcurve_conversions():
    """No add-on module but ``images`` reads or writes pixel buffers; none but
    ``animation`` walks action F-curves; nothing keeps a connection global."""
    import pathlib
    root = pathlib.Path(blender_addon.__file__).parent
    for f in root.glob("*.py"):
        text = f.read_text()
        if f.name != "images.py":
            assert ".pixels.foreach" not in text, f.name
        if f.name != "animation.py":
            assert "channelbag" not in text, f.name
        assert "importlib" not in text, f.name
    assert not isinstance(getattr(connection, "state", None), dict)  # no mirrored module global
