"""Analytic antialiasing (backend/render/antialias.py): coverage that converges to the true
projected area, gradients at silhouettes that agree with finite differences and point the
right way, and nothing changed where no silhouette is."""

import numpy as np
import torch

from backend.render import render
from backend.render.antialias import crossing, edge_neighbours, silhouette_edges
from backend.render.procedural import look_at, uv_sphere
from shared.camera import Camera


def _sphere(radius=1.0, dtype=torch.float64):
    v, f, uv, uf = uv_sphere(48, 24, radius=radius)
    return torch.tensor(v, dtype=dtype), torch.tensor(f), torch.tensor(uv, dtype=dtype), torch.tensor(uf)


def _ortho(size, scale=3.0):
    return Camera(look_at((0.0, -5.0, 0.0)), type="ORTHO", ortho_scale=scale, resolution_x=size, resolution_y=size)


def _render(v, f, uv, uf, cams, **kw):
    tex = torch.full((4, 4, 3), 0.5, dtype=v.dtype)
    return render(v[None].expand(len(cams), -1, -1), f, uv, uf, [tex], None, cams, **kw)


def test_the_walk_finds_the_outline_edge_not_the_first_triangle_edge():
    # a fan of two triangles (a strip): the segment from inside the first leaves it through the
    # shared edge and the strip through the outer edge of the second
    screen = np.array([[[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]]])
    faces = np.array([[0, 1, 2], [1, 3, 2]])
    assert edge_neighbours(faces).tolist() == [[-1, 1, -1], [-1, -1, 0]]
    p, q = np.array([[0.5, 0.5]]), np.array([[3.0, 0.5]])
    found, tri, edge = silhouette_edges(screen, faces, np.array([0]), np.array([0]), p, q)
    assert found.tolist() == [True] and tri.tolist() == [1] and faces[1][edge[0]] == 1   # edge 1 -> 3 (x = 2)
    a = torch.tensor([[2.0, 0.0]], requires_grad=True)
    t = crossing(a, torch.tensor([[2.0, 2.0]]), torch.tensor(p), torch.tensor(q))
    assert abs(t.item() - 0.6) < 1e-9                      # x = 2 at 0.6 of the way from 0.5 to 3
    t.sum().backward()
    assert a.grad[0, 0] > 0                                # the edge moving right moves the crossing
    found, _, _ = silhouette_edges(screen, faces, np.array([0]), np.array([0]), p, np.array([[1.5, 1.0]]))
    assert not found.any()                                 # the neighbour centre is on the same surface


def test_coverage_is_close_to_the_projected_area_and_smooth_under_sub_pixel_shifts():
    v, f, uv, uf = _sphere()
    cam = [_ortho(40)]
    px = 3.0 / 40
    true_area = 0.5 * 48 * np.sin(2 * np.pi / 48)          # the outline is a regular 48-gon
    hard, soft = [], []
    for dx in np.linspace(0.0, 1.0, 7):
        vs = v + torch.tensor([dx * px * 0.37, 0.0, dx * px], dtype=v.dtype)
        hard.append(float(_render(vs, f, uv, uf, cam, passes=("alpha",))["alpha"].sum()) * px * px)
        a = _render(vs, f, uv, uf, cam, passes=("alpha",), antialias=True)["alpha"]
        soft.append(float(a.sum()) * px * px)
        assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0 + 1e-9
    edge = (a > 0.01) & (a < 0.99)
    assert edge.sum() > 40                                  # fractional coverage along the outline
    assert abs(np.mean(soft) - true_area) / true_area < 0.003
    assert np.std(soft) < 0.25 * np.std(hard), (soft, hard)  # smooth in the position, unlike the z-buffer


def test_silhouette_gradient_matches_finite_differences_and_points_outward():
    v, f, uv, uf = _sphere()
    cam = [_ortho(32)]
    bg = torch.zeros(1, 32, 32, 3, dtype=v.dtype)
    bg[..., :16, :] = 1.0   # white on the left half, black on the right: the sphere is grey

    def loss(scale):
        out = _render(v * scale, f, uv, uf, cam, passes=("grey", "alpha"), antialias=True, background=bg)
        return out["alpha"].sum(), out["grey"].sum()

    s = torch.tensor(1.0, dtype=v.dtype, requires_grad=True)
    area, grey = loss(s)
    (g_area,) = torch.autograd.grad(area, s, retain_graph=True)
    (g_grey,) = torch.autograd.grad(grey, s)
    h = 1e-3
    with torch.no_grad():
        fd_area = (loss(torch.tensor(1.0 + h))[0] - loss(torch.tensor(1.0 - h))[0]) / (2 * h)
    # a growing sphere covers more pixels: the coverage grows as 2 pi r dr / pixel area
    expect = 48 * np.sin(2 * np.pi / 48) / (3.0 / 32) ** 2
    assert float(g_area) > 0 and abs(float(g_area) - float(fd_area)) < 0.1 * abs(float(fd_area))
    assert abs(float(g_area) - expect) < 0.1 * expect
    assert torch.isfinite(g_grey)
    hard = render(v[None], f, uv, uf, [torch.full((4, 4, 3), 0.5, dtype=v.dtype)], None, cam,
                  passes=("alpha",))["alpha"]
    assert hard.sum() > 0


def test_interior_and_disabled_renders_are_unchanged():
    v, f, uv, uf = _sphere()
    cam = [_ortho(24, scale=1.0)]          # the sphere fills the view: no silhouette in it
    a = _render(v, f, uv, uf, cam, passes=("color",))["color"]
    b = _render(v, f, uv, uf, cam, passes=("color",), antialias=True)["color"]
    assert torch.equal(a, b)
    cams = [_ortho(24)]
    c = _render(v, f, uv, uf, cams, passes=("color", "depth"))
    d = _render(v, f, uv, uf, cams, passes=("color", "depth"), antialias=True)
    assert torch.equal(c["depth"], d["depth"]) and not torch.equal(c["color"], d["color"])
