"""Render passes checked against values worked out by hand, and the fused CPU
kernels checked against the plain torch path (values and gradients)."""

import numpy as np
import pytest
import torch

from backend.render import Lights, RenderSettings, render
from backend.render.kernels import CPU_NUMBA, TORCH, kernel_set
from backend.render.procedural import checker_texture, look_at, uv_sphere
from shared.camera import Camera



def quad(z=0.0, size=1.0):
    """A square in the XY plane facing +Z, with UVs covering [0,1]^2."""
    v = torch.tensor([[-size, -size, z], [size, -size, z], [size, size, z], [-size, size, z]])
    f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    uv = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    return v, f, uv, f.clone()


TOP = Camera(look_at((0, 0, 5.0), up=(0, 1, 0)), resolution_x=40, resolution_y=40)


def test_plane_passes_depth_normal_alpha_uv():
    v, f, uv, uf = quad(z=0.5)
    tex = torch.full((4, 4, 3), 0.5)
    out = render(v[None], f, uv, uf, [tex], None, [TOP],
                 passes=("depth", "normal_camera", "normal_world", "alpha", "uv", "tri_id"))
    cover = out["alpha"][0, ..., 0] > 0
    assert 0.2 < cover.float().mean() < 0.9
    assert torch.allclose(out["depth"][0][cover], torch.tensor(4.5), atol=1e-5)
    assert torch.allclose(out["normal_camera"][0][cover], torch.tensor([0.0, 0.0, 1.0]), atol=1e-6)
    assert torch.allclose(out["normal_world"][0][cover], torch.tensor([0.0, 0.0, 1.0]), atol=1e-6)
    assert (out["tri_id"][0][~cover] == -1).all() and (out["depth"][0][~cover] == 0).all()
    # Looking down with +Y up in the image: u grows to the right, v grows upwards (rows go down).
    uvs = out["uv"][0]
    rows, cols = torch.nonzero(cover, as_tuple=True)
    r, c = int(rows.float().mean()), int(cols.float().mean())
    assert uvs[r, c + 3, 0] > uvs[r, c, 0] and uvs[r - 3, c, 1] > uvs[r, c, 1]


def test_lambert_shading_and_grey_pass_match_the_formula():
    v, f, uv, uf = quad()
    tex = torch.tensor([0.2, 0.4, 0.8]).expand(4, 4, 3).contiguous()
    lights = Lights(directions=((0.0, 0.6, 0.8),), colors=((1.0, 0.5, 0.25),), ambient=(0.1, 0.1, 0.1), space="world")
    out = render(v[None], f, uv, uf, [tex], None, [TOP], lights=lights, background=(0.0, 1.0, 0.0),
                 passes=("color", "grey", "albedo", "alpha"), grey_albedo=0.5)
    cover = out["alpha"][0, ..., 0] > 0
    irr = torch.tensor([0.1 + 0.8 * 1.0, 0.1 + 0.8 * 0.5, 0.1 + 0.8 * 0.25])
    assert torch.allclose(out["color"][0][cover], tex[0, 0] * irr, atol=1e-5)
    assert torch.allclose(out["grey"][0][cover], 0.5 * irr, atol=1e-5)
    assert torch.allclose(out["albedo"][0][cover], tex[0, 0], atol=1e-6)
    assert torch.equal(out["color"][0][~cover], torch.tensor([0.0, 1.0, 0.0]).expand(int((~cover).sum()), 3))


def test_back_faces_are_shaded_two_sided_by_default():
    v, f, uv, uf = quad()
    below = Camera(look_at((0, 0, -5.0), up=(0, 1, 0)), resolution_x=24, resolution_y=24)
    tex = torch.full((2, 2, 3), 1.0)
    two = render(v[None], f, uv, uf, [tex], None, [below], passes=("normal_camera", "alpha"))
    one = render(v[None], f, uv, uf, [tex], None, [below], passes=("normal_camera",), two_sided=False)
    cover = two["alpha"][0, ..., 0] > 0
    assert torch.allclose(two["normal_camera"][0][cover][:, 2], torch.tensor(1.0))
    assert torch.allclose(one["normal_camera"][0][cover][:, 2], torch.tensor(-1.0))


def test_background_images_per_view_get_gradients_where_uncovered():
    v, f, uv, uf = quad()
    bg = torch.rand(2, 40, 40, 3, requires_grad=True)
    out = render(v[None].expand(2, -1, -1), f, uv, uf, [torch.ones(2, 2, 3)], None, [TOP, TOP], background=bg,
                 passes=("color", "alpha"))
    cover = out["alpha"][..., 0] > 0
    assert torch.equal(out["color"][~cover], bg.detach()[~cover])
    out["color"].sum().backward()
    assert (bg.grad[~cover] == 1).all() and (bg.grad[cover] == 0).all()


def test_texture_repeat_wraps_and_clamp_extends():
    v, f, uv, uf = quad()
    uv = uv * 2.0 - 0.5  # spans [-0.5, 1.5]: outside the image on every side
    tex = torch.tensor(checker_texture(8, 2))
    rep = render(v[None], f, uv, uf, [tex], None, [TOP], passes=("albedo", "uv", "alpha"))
    cla = render(v[None], f, uv, uf, [tex], None, [TOP], passes=("albedo",), texture_wrap="clamp")
    cover = rep["alpha"][0, ..., 0] > 0
    uvs = rep["uv"][0][cover]
    shifted = render(v[None], f, uv + 1.0, uf, [tex], None, [TOP], passes=("albedo",))
    assert torch.allclose(shifted["albedo"], rep["albedo"], atol=1e-5)  # period 1 in u and v
    assert not torch.allclose(cla["albedo"][0][cover], rep["albedo"][0][cover], atol=1e-3)
    outside = (uvs[:, 0] < -0.1) & (uvs[:, 1] > 0.1) & (uvs[:, 1] < 0.9)
    assert torch.allclose(cla["albedo"][0][cover][outside], tex[:, 0][
        ((1 - uvs[outside, 1]) * 8 - 0.5).round().clamp(0, 7).long()], atol=0.15)


def _scene(dtype):
    v, f, uv, uf = uv_sphere(20, 10, bumps=0.15)
    cams = [Camera(look_at((0.3, -4.0, 1.0)), shift_x=0.05, resolution_x=48, resolution_y=40),
            Camera(look_at((3.0, 2.0, 2.0), roll=0.3), type="ORTHO", ortho_scale=2.8, resolution_x=48, resolution_y=40)]
    mat = (torch.arange(len(f)) % 3 == 0).long()
    return (torch.tensor(v, dtype=dtype)[None].repeat(2, 1, 1), torch.tensor(f), torch.tensor(uv, dtype=dtype),
            torch.tensor(uf), mat, cams)


@pytest.mark.parametrize("options", [{}, {"smooth_normals": False},
                                     {"lights": Lights(space="world"), "texture_wrap": "clamp"}])
def test_fused_cpu_kernels_equal_the_torch_path(options):
    passes = ("color", "grey", "albedo", "normal_camera", "normal_world", "depth", "alpha", "uv")
    results = []
    for fused in (True, False):
        v, f, uv, uf, mat, cams = _scene(torch.float32)
        v.requires_grad_(True)
        texs = [torch.tensor(checker_texture(16, 4), requires_grad=True),
                torch.tensor(checker_texture(8, 2)[::-1].copy(), requires_grad=True)]
        out = render(v, f, uv, uf, texs, mat, cams, passes=passes, fused=fused, **options)
        gen = torch.Generator().manual_seed(3)
        loss = sum((out[p] * torch.rand(out[p].shape, generator=gen)).sum() for p in passes)
        loss.backward()
        results.append((out, v.grad, [t.grad for t in texs]))
    (o1, gv1, gt1), (o2, gv2, gt2) = results
    for p in passes:
        assert torch.allclose(o1[p], o2[p], atol=2e-5), p
    assert gv2.abs().max() > 1
    assert torch.allclose(gv1, gv2, rtol=1e-4, atol=1e-3 * float(gv2.abs().max()))
    for a, b in zip(gt1, gt2):
        assert b.abs().max() > 0 and torch.allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("options", [{}, {"texture_wrap": "clamp", "two_sided": False},
                                     {"lights": Lights(space="world"), "smooth_normals": False}])
def test_fused_shading_with_one_texture_equals_the_torch_path(options):
    """One texture for all faces takes the fused shading kernel (colour written
    straight into the image); values and gradients (vertices, texture, background
    images) equal the plain torch ops."""
    passes = ("color", "grey", "alpha")
    results = []
    for fused in (True, False):
        v, f, uv, uf, _, cams = _scene(torch.float32)
        v.requires_grad_(True)
        tex = torch.tensor(checker_texture(16, 4), requires_grad=True)
        bg = torch.rand(2, 40, 48, 3, generator=torch.Generator().manual_seed(1), requires_grad=True)
        out = render(v, f, uv * 1.5 - 0.2, uf, [tex], None, cams, background=bg, passes=passes, fused=fused,
                     **options)
        gen = torch.Generator().manual_seed(4)
        loss = sum((out[p] * torch.rand(out[p].shape, generator=gen)).sum() for p in passes)
        loss.backward()
        results.append((out, v.grad, tex.grad, bg.grad))
    (o1, gv1, gt1, gb1), (o2, gv2, gt2, gb2) = results
    for p in passes:
        assert torch.allclose(o1[p], o2[p], atol=2e-5), p
    assert gv2.abs().max() > 1 and gt2.abs().max() > 0 and gb2.abs().max() > 0
    assert torch.allclose(gv1, gv2, rtol=1e-4, atol=1e-3 * float(gv2.abs().max()))
    assert torch.allclose(gt1, gt2, rtol=1e-4, atol=1e-4)
    assert torch.equal(gb1, gb2)


def test_render_settings_object_equals_keywords():
    v, f, uv, uf = quad()
    tex = torch.tensor(checker_texture(8, 2))
    kw = dict(size=(20, 20), background=(0.1, 0.2, 0.3), passes=("color", "depth"), lights=Lights(space="world"))
    a = render(v[None], f, uv, uf, [tex], None, [TOP], **kw)
    b = render(v[None], f, uv, uf, [tex], None, [TOP], settings=RenderSettings(**kw))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert a["color"].shape == (1, 20, 20, 3)
    with pytest.raises(ValueError, match="not both"):
        render(v[None], f, uv, uf, [tex], None, [TOP], passes=("alpha",), settings=RenderSettings())


def test_raster_is_watertight_when_pixel_centres_lie_on_edges_and_vertices():
    """A grid whose edges and vertices pass exactly through pixel centres covers
    every pixel: no cracks showing the plane behind it."""
    n = 16
    xs = np.linspace(-1.0, 1.0, n + 1)
    gx, gy = np.meshgrid(xs, xs)
    verts = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], 1)
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
    grid = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    back = np.array([[0, 1, 2], [0, 2, 3]]) + len(verts)
    verts = np.concatenate([verts, [[-2, -2, -1], [2, -2, -1], [2, 2, -1], [-2, 2, -1]]])
    faces = torch.tensor(np.concatenate([grid, back]))
    cam = Camera(look_at((0, 0, 5.0), up=(0, 1, 0)), type="ORTHO", ortho_scale=2.0,
                 resolution_x=n // 2, resolution_y=n // 2)
    uvs = torch.zeros(1, 2)
    tri = render(torch.tensor(verts, dtype=torch.float32)[None], faces, uvs, torch.zeros_like(faces),
                 [torch.ones(1, 1, 3)], None, [cam], passes=("tri_id",))["tri_id"][0, ..., 0]
    assert (tri >= 0).all() and (tri < len(grid)).all(), tri


def test_threaded_fused_kernels_equal_single_threaded():
    """Kernels split over threads by whole views / pixel ranges give the same results."""
    passes = ("color", "normal_world", "depth")
    results = []
    for threads in (1, 3):
        torch.set_num_threads(threads)
        try:
            v, f, uv, uf, mat, cams = _scene(torch.float32)
            v = v.repeat(2, 1, 1).requires_grad_(True)  # 4 views
            tex = torch.tensor(checker_texture(16, 4), requires_grad=True)
            out = render(v, f, uv, uf, [tex], None, cams * 2, passes=passes)
            gen = torch.Generator().manual_seed(5)
            sum((out[p] * torch.rand(out[p].shape, generator=gen)).sum() for p in passes).backward()
            results.append((out, v.grad, tex.grad))
        finally:
            torch.set_num_threads(1)
    (o1, gv1, gt1), (o2, gv2, gt2) = results
    for p in passes:
        assert torch.equal(o1[p], o2[p]), p
    assert torch.equal(gv1, gv2)  # per-view accumulation: bit-identical
    assert torch.allclose(gt1, gt2, rtol=1e-5, atol=1e-6)  # per-thread texture buffers summed


def test_flat_normals_without_a_normal_pass_render_on_both_kernel_sets():
    """smooth_normals=False with passes that read no normals (the torch path used to
    look for corner positions it had not gathered)."""
    outs = []
    for fused in (True, False):
        v, f, uv, uf, mat, cams = _scene(torch.float32)
        texs = [torch.tensor(checker_texture(16, 4)), torch.tensor(checker_texture(8, 2))]
        outs.append(render(v, f, uv, uf, texs, mat, cams, passes=("albedo", "depth", "alpha"), smooth_normals=False,
                           fused=fused))
    assert outs[0]["alpha"].sum() > 100
    for p in ("albedo", "depth", "alpha"):
        assert torch.allclose(outs[0][p], outs[1][p], atol=2e-5), p


def test_one_kernel_set_per_device_and_dtype_and_one_options_type():
    cpu = torch.device("cpu")
    assert kernel_set(cpu, torch.float32) is CPU_NUMBA
    assert kernel_set(cpu, torch.float64) is TORCH and kernel_set(cpu, torch.float32, fused=False) is TORCH
    assert kernel_set(torch.device("cuda"), torch.float32) is TORCH
    with pytest.raises(ValueError, match="texture_wrap"):
        RenderSettings(texture_wrap="mirror")
    with pytest.raises(ValueError, match="lights.space"):
        RenderSettings(lights=Lights(space="object"))
    with pytest.raises(TypeError, match="RenderSettings"):
        v, f, uv, uf = quad()
        render(v[None], f, uv, uf, [torch.ones(2, 2, 3)], None, [TOP], pases=("color",))
    assert RenderSettings(passes=["alpha"]).passes == ("alpha",)
