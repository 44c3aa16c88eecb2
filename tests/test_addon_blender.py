"""Blender-side behaviour of the extension with the real bpy 5.0.1 wheel:
registration, panel, rig and camera extraction, applying results, passes,
glTF export, turntable renders, and bad selections that must send nothing."""

from __future__ import annotations

import os

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from addon_scene import datablock_hash, fake_result, fresh, make_avatar  # noqa: E402

import blender_addon  # noqa: E402
from blender_addon import panel, passes, results, rig, selection  # noqa: E402
from shared import passes as mm_passes  # noqa: E402
from shared import png as pngio  # noqa: E402
from shared.errors import InvalidAvatar  # noqa: E402

pytestmark = pytest.mark.blender


# -- registration and panel ------------------------------------------------------

def test_register_unregister_twice_leaves_nothing_behind():
    fresh()
    for _ in range(2):
        blender_addon.register()
        assert hasattr(bpy.types.Scene, "metamorph")
        assert bpy.ops.metamorph.stylize.idname() == "METAMORPH_OT_stylize"
        assert "MM_PT_main" in dir(bpy.types)
        blender_addon.unregister()
        assert not hasattr(bpy.types.Scene, "metamorph")
        assert "MM_PT_main" not in dir(bpy.types)


class RecordingLayout:
    """Records what a draw function lays out and checks it against Blender's RNA:
    every prop exists on its data, every operator (and its set properties) is
    registered. Anything a real UILayout would reject fails here too."""

    def __init__(self, log):
        self.log = log
        self.scale_y = 1.0
        self.enabled = True

    def _sub(self, *a, **k):
        return RecordingLayout(self.log)

    row = column = box = split = _sub

    def panel(self, idname, default_closed=False, **k):
        self.log.append(("panel", idname))
        return RecordingLayout(self.log), RecordingLayout(self.log)

    def label(self, text="", icon="NONE", **k):
        assert isinstance(text, str)
        self.log.append(("label", text))

    def separator(self, **k):
        pass

    def prop(self, data, name, **k):
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name}"
        self.log.append(("prop", name))

    def operator(self, idname, **k):
        mod, op = idname.split(".")
        rna = getattr(getattr(bpy.ops, mod), op).get_rna_type()
        self.log.append(("operator", idname))
        log = self.log

        class Props:
            def __setattr__(self, key, value):
                assert key in rna.properties, f"{idname} has no property {key}"
                log.append(("set", idname, key, value))

        return Props()

    def template_list(self, list_type, list_id, data, prop, active_data, active_prop, **k):
        assert list_type in dir(bpy.types), list_type
        assert prop in data.bl_rna.properties and active_prop in active_data.bl_rna.properties
        self.log.append(("list", prop, len(getattr(data, prop))))

    def progress(self, factor=0.0, text="", **k):
        assert 0.0 <= factor <= 1.0

    def template_icon(self, **k):
        pass

    def icon(self, data):
        return 0


def _draw_all(context):
    log = []
    info = panel.describe(context)
    for fn in panel.DRAW_FUNCTIONS:
        fn(RecordingLayout(log), context, info)
    return info, log


def test_panel_draws_for_empty_scene(scene):
    info, log = _draw_all(bpy.context)
    assert info["avatar"] == [] and "No mesh selected" in info["avatar_problem"]
    assert info["connection"] == "not connected"
    assert ("operator", "metamorph.stylize") in log
    # Buttons that cannot run say why.
    assert not bpy.ops.metamorph.stylize.poll()
    assert not bpy.ops.metamorph.bake_export.poll()


def test_panel_draws_for_prepared_scene(scene):
    obj = make_avatar()
    s = scene.metamorph
    s.rig_count, s.rig_elevations = 4, "0, 30"
    assert bpy.ops.metamorph.rig_create() == {"FINISHED"}
    bpy.ops.metamorph.term_add(kind="TEXT")
    s.terms[0].text = "a bronze statue"
    scene.frame_start, scene.frame_end = 1, 10
    s.frame_step = 3
    results.record_result(scene, "bronze", [obj])
    info, log = _draw_all(bpy.context)
    assert info["avatar"] == ["Head"] and info["avatar_problem"] is None
    assert info["texture_sets"] == ["Head skin"]
    assert len(info["cameras"]) == 8 and info["orbit"] == rig.ORBIT_NAME
    assert info["animated_keys"] == ["jawOpen", "smile"]
    assert info["frames"] == (1, 10, 4)
    assert ("list", "terms", 1) in log and ("list", "results", 1) in log
    assert ("set", "metamorph.term_add", "kind", "IMAGE") in log


# -- rig and cameras ---------------------------------------------------------------

def test_turntable_rig_rings_look_at_the_head(scene):
    obj = make_avatar()
    scene.frame_start, scene.frame_end = 1, 24
    coll = rig.create_turntable_rig(scene, [obj], count=6, elevations=(0.0, 30.0, -20.0))
    cams = sorted([o for o in coll.objects if o.type == "CAMERA" and not o.get("metamorph_orbit")],
                  key=lambda o: o.name)
    assert len(cams) == 18
    centre, _ = rig.head_frame([obj])
    assert np.allclose(centre, (0, 0, 1.6), atol=1e-3)  # the sphere's centre
    elevs = set()
    for c in cams:
        mw = np.array(c.matrix_world)
        fwd = -mw[:3, 2]  # camera looks down -Z
        to_c = np.array(centre) - mw[:3, 3]
        assert np.dot(fwd, to_c / np.linalg.norm(to_c)) > 0.9999
        assert mw[2, 1] >= 0  # +Y (up) never points down: no rolled cameras
        elevs.add(round(float(np.degrees(np.arcsin(-fwd[2]))), 3))
    assert elevs == {0.0, 30.0, -20.0}
    # The orbit camera turns around the head over the timeline.
    orbit = next(o for o in coll.objects if o.get("metamorph_orbit"))
    scene.frame_set(1)
    p1 = np.array(orbit.matrix_world.translation)
    scene.frame_set(7)  # a quarter turn after 6 of 24 frames
    p7 = np.array(orbit.matrix_world.translation)
    a = np.degrees(np.arctan2(p7[1] - centre[1], p7[0] - centre[0]) -
                   np.arctan2(p1[1] - centre[1], p1[0] - centre[0]))
    assert abs(((a + 180) % 360) - 180 - 90) < 1e-3


def test_camera_extraction_reads_blender_settings_per_frame(scene):
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    scene.collection.objects.link(cam)
    d = cam.data
    d.type, d.ortho_scale = "ORTHO", 2.5
    d.sensor_fit, d.sensor_width, d.sensor_height = "VERTICAL", 30.0, 20.0
    d.shift_x, d.shift_y, d.clip_start, d.clip_end = 0.1, -0.2, 0.05, 50.0
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = 640, 480, 50
    r.pixel_aspect_x, r.pixel_aspect_y = 2.0, 1.0
    cam.location = (0, 0, 0)
    cam.keyframe_insert("location", frame=1)
    cam.location = (1, 2, 3)
    cam.keyframe_insert("location", frame=11)
    scene.frame_set(1)
    c = rig.camera_from_object(scene, cam, frame=11)
    assert scene.frame_current == 1  # restored
    assert np.allclose(c.matrix_world[:3, 3], (1, 2, 3))
    assert (c.type, c.ortho_scale, c.sensor_fit, c.shift_x, c.shift_y) == \
        ("ORTHO", 2.5, "VERTICAL", pytest.approx(0.1), pytest.approx(-0.2))
    assert (c.resolution_x, c.resolution_y, c.pixel_aspect_x) == (320, 240, 2.0)
    assert (c.clip_start, c.clip_end, c.sensor_height) == (pytest.approx(0.05), 50.0, 20.0)
    c6 = rig.camera_from_object(scene, cam, frame=6)
    assert np.allclose(c6.matrix_world[:3, 3], (0.5, 1, 1.5), atol=0.2)  # eased, in between
    with pytest.raises(ValueError):
        rig.camera_from_object(scene, bpy.data.objects.new("E", None))


# -- results ----------------------------------------------------------------------

def _fcurve_values(key, name, frames):
    out = []
    for f in frames:
        bpy.context.scene.frame_set(f)
        out.append(key.key_blocks[name].value)
    return out


def test_apply_creates_stylized_copy_and_never_touches_the_original(scene):
    obj = make_avatar()
    before = datablock_hash(obj)
    n = len(obj.data.vertices)
    rest = np.empty(n * 3, np.float32)
    obj.data.vertices.foreach_get("co", rest)
    rest = rest.reshape(n, 3)
    jaw = np.empty(n * 3, np.float32)
    obj.data.shape_keys.key_blocks["jawOpen"].data.foreach_get("co", jaw)
    jaw = jaw.reshape(n, 3)
    res = fake_result([obj], name="bronze", tex_size=8)
    copies = results.apply_result(scene, [obj], res, copy_action=True)

    assert datablock_hash(obj) == before
    assert len(copies) == 1
    c = copies[0]
    assert c.name == "bronze" and c.users_collection[0].name == "Metamorph Results"
    assert c.data != obj.data and c.data.shape_keys != obj.data.shape_keys
    got = np.empty(n * 3, np.float32)
    c.data.vertices.foreach_get("co", got)
    assert np.allclose(got.reshape(n, 3), rest + res.neutral_offsets, atol=1e-6)
    kb = c.data.shape_keys.key_blocks
    assert [k.name for k in kb] == ["Basis", "jawOpen", "smile"]
    kb["jawOpen"].data.foreach_get("co", got)
    k = res.body["blendshape_names"].index("jawOpen")
    assert np.allclose(got.reshape(n, 3), jaw + res.neutral_offsets + res.blendshape_offsets[k],
                       atol=1e-6)
    # The copied action drives the copy exactly like the original.
    ad = c.data.shape_keys.animation_data
    assert ad.action is not None and ad.action != obj.data.shape_keys.animation_data.action
    assert ad.action_slot is not None
    frames = [1, 3, 5, 8, 10]
    assert _fcurve_values(c.data.shape_keys, "jawOpen", frames) == \
        pytest.approx(_fcurve_values(obj.data.shape_keys, "jawOpen", frames))
    assert max(_fcurve_values(c.data.shape_keys, "jawOpen", frames)) == pytest.approx(1.0)
    # Material copy with the stylized image: packed, sRGB, row 0 of the array = top row.
    m = c.data.materials[0]
    assert m != obj.data.materials[0] and m.name == "bronze Head skin"
    node = m.node_tree.nodes["Principled BSDF"].inputs["Base Color"].links[0].from_node
    im = node.image
    assert im.colorspace_settings.name == "sRGB" and im.packed_file is not None
    px = np.empty(8 * 8 * 4, np.float32)
    im.pixels.foreach_get(px)
    px = px.reshape(8, 8, 4)
    assert np.allclose(px[::-1, :, :3] * 255, res.textures[0], atol=0.6)
    scene.frame_set(1)  # shape-key values are animated; compare at the frame hashed first
    assert datablock_hash(obj) == before


def test_apply_with_wrong_vertex_count_creates_nothing(scene):
    obj = make_avatar()
    res = fake_result([obj])
    res.neutral_offsets = res.neutral_offsets[:-1]
    n_before = (len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.images),
                len(bpy.data.materials))
    with pytest.raises(InvalidAvatar, match="changed since"):
        results.apply_result(scene, [obj], res)
    assert (len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.images),
            len(bpy.data.materials)) == n_before


def test_apply_splits_offsets_over_several_meshes(scene):
    head = make_avatar("Head", subdiv=2)
    eyes = make_avatar("Eyes", subdiv=1, shape_keys=("smile",), animate=False)
    objs = sorted([head, eyes], key=lambda o: o.name)
    res = fake_result(objs, name="clay")
    copies = results.apply_result(scene, objs, res)
    assert [c.name for c in copies] == ["clay Eyes", "clay Head"]
    start = 0
    for src, c in zip(objs, copies):
        n = len(src.data.vertices)
        a, b = np.empty(n * 3, np.float32), np.empty(n * 3, np.float32)
        src.data.vertices.foreach_get("co", a)
        c.data.vertices.foreach_get("co", b)
        assert np.allclose(b.reshape(n, 3) - a.reshape(n, 3), res.neutral_offsets[start:start + n],
                           atol=1e-6)
        start += n
    assert [m.name for m in copies[0].data.materials] == ["clay Eyes skin"]


def test_apply_maps_world_space_offsets_into_object_space(scene):
    # The avatar travels in world space; a rotated, scaled object must still move
    # by exactly the world-space offsets.
    obj = make_avatar()
    obj.scale = (2.0, 2.0, 0.5)
    obj.rotation_euler = (0.3, 0.0, 1.2)
    bpy.context.view_layer.update()
    res = fake_result([obj])
    n = len(obj.data.vertices)
    res.neutral_offsets = np.tile(np.float32([0.01, -0.02, 0.03]), (n, 1))
    res.blendshape_offsets[:] = 0
    res.blendshape_offsets[0, :, 0] = 0.004
    c = results.apply_result(scene, [obj], res)[0]
    bpy.context.view_layer.update()
    M = np.array(obj.matrix_world)

    def world(ob, co):
        return co @ M[:3, :3].T + M[:3, 3]

    def coords(seq):
        a = np.empty(n * 3, np.float32)
        seq.foreach_get("co", a)
        return a.reshape(n, 3).astype(np.float64)

    assert np.allclose(world(c, coords(c.data.vertices)) - world(obj, coords(obj.data.vertices)),
                       [0.01, -0.02, 0.03], atol=1e-5)
    k0 = res.body["blendshape_names"][0]
    d_new = world(c, coords(c.data.shape_keys.key_blocks[k0].data)) - \
        world(c, coords(c.data.shape_keys.key_blocks["Basis"].data))
    d_old = world(obj, coords(obj.data.shape_keys.key_blocks[k0].data)) - \
        world(obj, coords(obj.data.shape_keys.key_blocks["Basis"].data))
    assert np.allclose(d_new - d_old, [0.004, 0, 0], atol=1e-5)


# -- passes, export, turntables ----------------------------------------------------

def test_pass_images_saved_and_loaded(scene, tmp_path):
    C, N, h, w = 2, 3, 6, 5
    rng = np.random.default_rng(0)
    color = rng.integers(0, 256, (C, N, h, w, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 3.0, (C, N, h, w, 1)).astype(np.float32)
    normal = rng.uniform(-1, 1, (C, N, h, w, 3)).astype(np.float16)
    saved = mm_passes.write_passes({"color": color, "depth": depth, "normal": normal},
                                   ["Cam A", "Cam/B"], [1.0, 11.0, 21.0], str(tmp_path / "bronze"))
    p = saved[("Cam A", "color")][1]
    assert p == str(tmp_path / "bronze" / "passes" / "Cam A" / "color" / "0011.png")
    assert np.array_equal(pngio.read_png(p), color[0, 1])
    d = pngio.read_png(saved[("Cam/B", "depth")][2])
    assert d.dtype == np.uint16 and np.allclose(d[..., 0] / 1000.0, depth[1, 2, ..., 0], atol=6e-4)
    nrm = pngio.read_png(saved[("Cam A", "normal")][0]).astype(np.float32) / 255 * 2 - 1
    assert np.allclose(nrm, normal[0, 0], atol=0.01)
    assert np.allclose(mm_passes.decode("normal", pngio.read_png(saved[("Cam A", "normal")][0])),
                       normal[0, 0], atol=0.01)
    assert np.allclose(mm_passes.decode("depth", d)[..., 0], depth[1, 2, ..., 0], atol=6e-4)
    images = passes.load_pass_images(saved, "bronze")
    assert len(images) == 6
    im = bpy.data.images["MM bronze Cam A color"]
    assert im.source == "SEQUENCE" and im["metamorph_frames"] == 3
    assert list(im["metamorph_size"]) == [w, h]
    assert os.path.samefile(bpy.path.abspath(im.filepath), saved[("Cam A", "color")][0])
    assert bpy.data.images["MM bronze Cam/B depth"].colorspace_settings.name == "Non-Color"
    with pytest.raises(ValueError, match="expected"):
        mm_passes.write_passes({"color": color}, ["one"], [1.0], str(tmp_path))


def test_gltf_export_reimports_with_shape_keys_and_animation(scene, tmp_path):
    from blender_addon import export
    obj = make_avatar()
    copies = results.apply_result(scene, [obj], fake_result([obj], name="bronze"))
    out = export.bake_and_export(copies, "bronze", str(tmp_path))
    assert os.path.getsize(out["model"]) > 1000
    tex = pngio.read_png(out["textures"][0]) if out["textures"] else None
    assert tex is not None or os.path.exists(out["textures"][0])
    fresh()
    bpy.ops.import_scene.gltf(filepath=out["model"])
    mesh_objs = [o for o in bpy.context.scene.objects if o.type == "MESH"]
    assert len(mesh_objs) == 1
    key = mesh_objs[0].data.shape_keys
    assert [k.name for k in key.key_blocks][1:] == ["jawOpen", "smile"]
    assert key.animation_data is not None and key.animation_data.action is not None
    img = mesh_objs[0].data.materials[0].node_tree.nodes["Principled BSDF"] \
        .inputs["Base Color"].links[0].from_node.image
    assert tuple(img.size) == (8, 8)


def test_turntable_renders_every_camera_and_frame(scene, tmp_path):
    obj = make_avatar()
    copies = results.apply_result(scene, [obj], fake_result([obj], name="bronze"))
    coll = rig.create_turntable_rig(scene, [obj], count=2, elevations=(0.0,))
    cams = sorted([o for o in coll.objects if o.type == "CAMERA" and not o.get("metamorph_orbit")],
                  key=lambda o: o.name)
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.resolution_x = scene.render.resolution_y = 32
    scene.frame_start, scene.frame_end = 1, 2
    from blender_addon.turntable import TurntableJob
    hide_before = obj.hide_render
    job = TurntableJob(scene, [("bronze", copies)], cams, str(tmp_path), side_by_side=True,
                       originals=[obj])
    while job.step():
        pass
    files = job.finish()
    assert obj.hide_render == hide_before and copies[0].hide_render is False
    expect = [tmp_path / "renders" / "bronze" / c.name / f"{f:04d}.png" for c in cams for f in (1, 2)]
    assert all(p.exists() for p in expect)
    sbs = tmp_path / "renders" / "bronze" / cams[0].name / "side_by_side" / "0001.png"
    assert str(sbs) in files
    # Blender's own PNG has the avatar in the middle: not an empty frame.
    im = bpy.data.images.load(str(expect[0]))
    px = np.empty(32 * 32 * 4, np.float32)
    im.pixels.foreach_get(px)
    px = px.reshape(32, 32, 4)
    assert px[..., :3].std() > 0.01


# -- bad selections send nothing ---------------------------------------------------

@pytest.fixture
def listening_router():
    """A real ZeroMQ ROUTER on loopback standing where a backend would: anything
    the add-on sends arrives here."""
    import zmq
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.ROUTER)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    yield sock, f"tcp://127.0.0.1:{port}"
    sock.close(linger=0)


@pytest.mark.parametrize("case,expect", [
    ("no_mesh", "No mesh selected"),
    ("no_uvs", "has no UVs"),
    ("no_cameras", "No cameras"),
    ("no_terms", "Add a style term"),
])
def test_bad_selection_reports_and_sends_nothing(scene, listening_router, case, expect):
    import zmq
    sock, address = listening_router
    scene.metamorph.output_dir = ""
    obj = make_avatar(uv=case != "no_uvs")
    if case == "no_mesh":
        obj.select_set(False)
    if case != "no_cameras":
        scene.metamorph.rig_collection = rig.create_turntable_rig(scene, [obj], 2, (0.0,))
    if case != "no_terms":
        t = scene.metamorph.terms.add()
        t.text = "a bronze statue"
    before = datablock_hash(obj)
    bpy.context.window_manager.metamorph.connected = True  # as if Connect had succeeded
    try:
        assert not bpy.ops.metamorph.stylize.poll()
        reports = []
        why = selection.why_not(bpy.context, "stylize", True)
        reports.append(why)
        with pytest.raises(RuntimeError, match=expect):
            bpy.ops.metamorph.stylize()  # scripts get the same sentence as an error
    finally:
        bpy.context.window_manager.metamorph.connected = False
    assert expect in reports[0]
    assert sock.poll(200, zmq.POLLIN) == 0
    assert datablock_hash(obj) == before
    assert bpy.data.collections.get("Metamorph Results") is None


def test_online_access_is_required_for_remote_addresses():
    from blender_addon import connection
    from shared.endpoints import is_loopback
    assert is_loopback("tcp://127.0.0.1:5557")
    assert is_loopback("tcp://localhost:5557")
    assert not is_loopback("tcp://10.0.0.7:5557")
    assert connection.address_problem("tcp://127.0.0.1:5557") is None
    assert bpy.app.online_access is False  # the wheel runs offline
    assert "Online access is disabled" in connection.address_problem("tcp://gpu.example.com:5557")
    assert "not valid" in connection.address_problem("http://127.0.0.1")


def test_png_roundtrip():
    rng = np.random.default_rng(1)
    for img in (rng.integers(0, 256, (7, 9, 3), dtype=np.uint8),
                rng.integers(0, 256, (4, 5, 4), dtype=np.uint8),
                rng.integers(0, 65536, (3, 6, 1), dtype=np.uint16)):
        data = pngio.encode_png(img)
        p = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"mm_rt_{os.getpid()}.png")
        open(p, "wb").write(data)
        assert np.array_equal(pngio.read_png(p), img)
        os.remove(p)


def test_request_carries_image_terms_top_row_first_and_panel_settings(scene):
    from blender_addon import request_build
    obj = make_avatar()
    s = scene.metamorph
    s.rig_collection = rig.create_turntable_rig(scene, [obj], 3, (0.0,))
    img = bpy.data.images.new("ref", 8, 8)
    px = np.zeros((8, 8, 4), np.float32)
    px[-1, :, 0] = 1.0  # Blender's last row is the image's top row
    px[..., 3] = 1.0
    img.pixels.foreach_set(px.ravel())
    t = s.terms.add()
    t.kind, t.image, t.weight = "IMAGE", img, 0.7
    t = s.terms.add()
    t.kind, t.text, t.weight = "TEXT", "  ", 1.0  # empty prompt: skipped
    s.identity, s.steps, s.seed, s.pass_resolution = 0.25, 7, 3, 48
    scene.frame_start, scene.frame_end, s.frame_step = 1, 9, 4
    s.frame_source = "TIMELINE"
    req, arrays = request_build.build_request(bpy.context, [obj], "a" * 64)
    assert list(arrays) == ["style_image_0"]
    a = arrays["style_image_0"]
    assert a.dtype == np.uint8 and a.shape == (8, 8, 3)
    assert (a[0, :, 0] == 255).all() and (a[1:, :, 0] == 0).all()
    assert [(x.kind, x.image_index, x.weight) for x in req.terms] == [("image", 0, pytest.approx(0.7))]
    assert req.name == "Image style" and req.frames == [1.0, 5.0, 9.0]
    assert (req.identity, req.steps, req.seed) == (0.25, 7, 3)
    assert len(req.cameras) == 3 and all(c.resolution_x == 48 for c in req.cameras)
    assert req.cameras[0].name == "MM Cam r0 00"


def test_extraction_matches_apply_layout_and_rejects_vertex_changing_modifiers(scene):
    from blender_addon import request_build
    head = make_avatar("Head", subdiv=2)
    eyes = make_avatar("Eyes", subdiv=1, shape_keys=(), animate=False)
    objs = [eyes, head]  # the order avatar_objects() gives: by name
    av = request_build.extract(bpy.context, objs)
    assert av.num_vertices == len(eyes.data.vertices) + len(head.data.vertices)
    # World-space positions in the same order apply() splits them.
    co = np.empty(len(eyes.data.vertices) * 3, np.float32)
    eyes.data.vertices.foreach_get("co", co)
    assert np.allclose(av.vertices[:len(eyes.data.vertices)], co.reshape(-1, 3) + (0, 0, 1.6),
                       atol=1e-5)
    eyes.modifiers.new("subsurf", "SUBSURF")
    with pytest.raises(InvalidAvatar, match="modifier changes the avatar's vertex count"):
        request_build.extract(bpy.context, objs)
