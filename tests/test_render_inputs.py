"""Bad input gives a ValueError naming the problem; nothing reaches numba unchecked."""

import numpy as np
import pytest
import torch

from backend.render import render
from backend.render.procedural import checker_texture, look_at, uv_sphere
from shared.camera import Camera, projection



@pytest.fixture(scope="module")
def mesh():
    v, f, uv, uf = uv_sphere(12, 6)
    return dict(vertices=torch.tensor(v)[None], faces=torch.tensor(f), uvs=torch.tensor(uv),
                uv_faces=torch.tensor(uf), textures=[torch.tensor(checker_texture(8, 2))],
                face_material=None, cameras=[Camera(look_at((0, -4, 0)), resolution_x=32, resolution_y=24)])


def call(mesh, **changes):
    args = {**mesh, **changes}
    return render(args.pop("vertices"), args.pop("faces"), args.pop("uvs"), args.pop("uv_faces"),
                  args.pop("textures"), args.pop("face_material"), args.pop("cameras"), **args)


def test_valid_input_renders(mesh):
    out = call(mesh, passes=("color", "alpha"))
    assert out["color"].shape == (1, 24, 32, 3) and out["alpha"].sum() > 50


@pytest.mark.parametrize("change,words", [
    (lambda m: {"faces": m["faces"].clone().index_fill_(0, torch.tensor([3]), 10_000)}, ["faces", "10000"]),
    (lambda m: {"faces": m["faces"].clone().index_fill_(0, torch.tensor([0]), -1)}, ["faces", "-1"]),
    (lambda m: {"uv_faces": m["uv_faces"] + 1_000}, ["uv_faces"]),
    (lambda m: {"face_material": torch.full((m["faces"].shape[0],), 2)}, ["face_material", "textures"]),
    (lambda m: {"vertices": m["vertices"].clone().index_fill_(1, torch.tensor([5]), float("nan"))},
     ["vertices", "NaN"]),
    (lambda m: {"vertices": m["vertices"].clone().index_fill_(1, torch.tensor([5]), float("inf"))}, ["vertices"]),
    (lambda m: {"vertices": torch.zeros(1, 0, 3), "faces": torch.zeros(0, 3, dtype=torch.long)}, ["empty"]),
    (lambda m: {"faces": torch.zeros(0, 3, dtype=torch.long), "uv_faces": torch.zeros(0, 3, dtype=torch.long)},
     ["empty"]),
    (lambda m: {"vertices": m["vertices"][0]}, ["vertices", "[B,V,3]"]),
    (lambda m: {"faces": m["faces"].float()}, ["faces", "integer"]),
    (lambda m: {"uvs": m["uvs"].clone().fill_(float("nan"))}, ["uvs", "NaN"]),
    (lambda m: {"textures": []}, ["textures"]),
    (lambda m: {"textures": [torch.zeros(4, 4)]}, ["textures[0]"]),
    (lambda m: {"textures": [torch.full((4, 4, 3), float("nan"))]}, ["textures[0]", "NaN"]),
    (lambda m: {"cameras": m["cameras"] * 2}, ["2 cameras", "batch of 1"]),
    (lambda m: {"passes": ("color", "specular")}, ["specular"]),
    (lambda m: {"background": torch.zeros(2, 2)}, ["background"]),
    (lambda m: {"texture_wrap": "mirror"}, ["texture_wrap"]),
])
def test_bad_mesh_input_raises_value_error_naming_it(mesh, change, words):
    with pytest.raises(ValueError) as err:
        call(mesh, **change(mesh))
    for w in words:
        assert w in str(err.value), (w, str(err.value))


@pytest.mark.parametrize("settings,word", [
    ({"lens": 0.0}, "lens"),
    ({"lens": float("nan")}, "lens"),
    ({"sensor_width": 0.0}, "sensor_width"),
    ({"sensor_height": 0.0, "sensor_fit": "VERTICAL"}, "sensor_height"),
    ({"resolution_x": 0}, "resolution"),
    ({"resolution_y": -5}, "resolution"),
    ({"type": "ORTHO", "ortho_scale": 0.0}, "ortho_scale"),
    ({"type": "PANO"}, "type"),
    ({"sensor_fit": "DIAGONAL"}, "sensor_fit"),
    ({"pixel_aspect_x": 0.0}, "pixel_aspect_x"),
    ({"clip_start": 5.0, "clip_end": 1.0}, "clip_end"),
    ({"clip_start": 0.0}, "clip_start"),
    ({"shift_x": float("inf")}, "shift_x"),
    ({"matrix_world": np.zeros((4, 4))}, "degenerate"),
    ({"matrix_world": np.full((4, 4), np.nan)}, "NaN"),
])
def test_degenerate_cameras_raise_value_error_naming_the_setting(mesh, settings, word):
    base = mesh["cameras"][0]
    cam = Camera(**{**base.__dict__, **settings})
    with pytest.raises(ValueError, match=word):
        projection(cam)
    with pytest.raises(ValueError, match=word):
        call(mesh, cameras=[cam])


def test_mixed_image_sizes_in_one_batch_are_rejected(mesh):
    cams = [mesh["cameras"][0], Camera(look_at((0, 4, 0)), resolution_x=16, resolution_y=16)]
    with pytest.raises(ValueError, match="size"):
        call(mesh, vertices=mesh["vertices"].expand(2, -1, -1), cameras=cams)
    out = call(mesh, vertices=mesh["vertices"].expand(2, -1, -1), cameras=cams, size=(20, 10), passes=("alpha",))
    assert out["alpha"].shape == (2, 10, 20, 1)


def test_awkward_geometry_renders_without_crashing(mesh):
    """Camera inside the mesh, triangles behind the eye, huge and degenerate triangles."""
    inside = Camera(look_at((0, -0.2, 0), (0, 1, 0)), resolution_x=24, resolution_y=24)
    out = call(mesh, cameras=[inside], passes=("color", "depth", "alpha"))
    assert torch.isfinite(out["color"]).all() and out["alpha"].sum() > 0
    v = mesh["vertices"].clone()
    v[0, :3] = torch.tensor([0.0, -1e5, 0.0])  # far behind the camera: its triangles are skipped
    v[0, 5:8] = v[0, 8]  # zero-area triangles
    v[0, 20:22] = torch.tensor([0.0, -4.0, 0.0])  # a vertex exactly at the eye
    out = call(mesh, vertices=v, passes=("color", "depth", "normal_camera"))
    assert all(torch.isfinite(t).all() for t in out.values())
    assert out["depth"].max() > 0


def test_huge_coordinates_are_rejected(mesh):
    v = mesh["vertices"].clone()
    v[0, :5] = 1e30  # finite, but float32 products overflow
    with pytest.raises(ValueError, match="coordinates up to 1e"):
        call(mesh, vertices=v)


def test_renderer_does_not_modify_its_inputs(mesh):
    before = {k: mesh[k].clone() for k in ("vertices", "faces", "uvs", "uv_faces")}
    tex = mesh["textures"][0].clone()
    call(mesh, passes=("color", "normal_world"))
    for k, t in before.items():
        assert torch.equal(mesh[k], t)
    assert torch.equal(mesh["textures"][0], tex)
