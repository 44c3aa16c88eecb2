"""Gradients of the renderer: exact for textures, finite-difference checked for
vertex positions on interior pixels, and good enough to recover a texture and a
smooth displacement by optimisation."""

import numpy as np
import torch
import torch.nn.functional as F

from backend.render import render
from backend.render.procedural import checker_texture, look_at, radial_bumps, uv_sphere
from shared.camera import Camera



def sphere_tensors(segments=24, rings=12, bumps=0.1, dtype=torch.float64):
    v, f, uv, uf = uv_sphere(segments, rings, bumps=bumps)
    return torch.tensor(v, dtype=dtype), torch.tensor(f), torch.tensor(uv, dtype=dtype), torch.tensor(uf)


def two_cameras(size):
    return [
        Camera(look_at((0.4, -4.0, 1.2)), resolution_x=size, resolution_y=size),
        Camera(look_at((3.0, 2.0, 2.0), roll=0.2), type="ORTHO", ortho_scale=2.8,
               resolution_x=size, resolution_y=size),
    ]


def test_texture_gradient_equals_finite_differences():
    v, f, uv, uf = sphere_tensors(16, 8)
    cams = two_cameras(20)
    tex0 = torch.tensor(checker_texture(6, 2), dtype=torch.float64)
    weights = torch.rand(2, 20, 20, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def loss(t):
        return (render(v[None].expand(2, -1, -1), f, uv, uf, [t], None, cams, passes=("color",))["color"]
                * weights).sum()

    tex = tex0.clone().requires_grad_(True)
    loss(tex).backward()
    fd = torch.zeros_like(tex0)
    eps = 1e-6
    with torch.no_grad():
        for idx in np.ndindex(*tex0.shape):
            tp, tm = tex0.clone(), tex0.clone()
            tp[idx] += eps
            tm[idx] -= eps
            fd[idx] = (loss(tp) - loss(tm)) / (2 * eps)
    assert (fd.abs() > 1e-3).float().mean() > 0.5  # most texels are seen
    assert torch.allclose(tex.grad, fd, rtol=1e-6, atol=1e-7)


def test_vertex_gradient_matches_finite_differences_on_interior_pixels():
    v, f, uv, uf = sphere_tensors(24, 12)
    cams = two_cameras(48)
    tex = torch.tensor(checker_texture(16, 4), dtype=torch.float64)
    base = render(v[None].expand(2, -1, -1), f, uv, uf, [tex], None, cams, passes=("alpha", "color"))
    # Interior: pixels whose 5x5 neighbourhood is covered (silhouettes carry no gradient by design).
    alpha = base["alpha"][..., 0][:, None]
    interior = (-F.max_pool2d(-alpha, 5, stride=1, padding=2))[:, 0, ..., None]
    assert interior.sum() > 500
    gen = torch.Generator().manual_seed(0)
    passes = ("color", "depth", "normal_camera")
    weights = {p: torch.rand(base["color"].shape[:3] + (1 if p == "depth" else 3,), generator=gen,
                             dtype=torch.float64) * interior for p in passes}

    def loss(verts):
        out = render(verts[None].expand(2, -1, -1), f, uv, uf, [tex], None, cams, passes=passes)
        return sum((out[p] * weights[p]).sum() for p in passes)

    x = v.clone().requires_grad_(True)
    loss(x).backward()
    grad = x.grad
    # Check the vertices with the largest analytic gradients (those actually seen in the interior).
    idx = torch.argsort(grad.norm(dim=1), descending=True)[:12]
    eps = 1e-6
    fd = torch.zeros(len(idx), 3, dtype=torch.float64)
    with torch.no_grad():
        for n, i in enumerate(idx):
            for k in range(3):
                xp, xm = v.clone(), v.clone()
                xp[i, k] += eps
                xm[i, k] -= eps
                fd[n, k] = (loss(xp) - loss(xm)) / (2 * eps)
    an = grad[idx]
    assert an.abs().max() > 1e-2
    err = (an - fd).norm() / fd.norm()
    assert err < 1e-4, (an, fd)


def test_render_is_deterministic_and_float32():
    v, f, uv, uf = sphere_tensors(dtype=torch.float32)
    tex = torch.tensor(checker_texture(32, 4))
    cams = two_cameras(40)
    outs = [render(v[None].expand(2, -1, -1), f, uv, uf, [tex], None, cams, passes=("color", "depth"))
            for _ in range(2)]
    assert outs[0]["color"].dtype == torch.float32
    assert torch.equal(outs[0]["color"], outs[1]["color"]) and torch.equal(outs[0]["depth"], outs[1]["depth"])


def views_around(n, size, radius=4.0):
    cams = []
    for k in range(n):
        a = 2 * np.pi * k / n
        cams.append(Camera(look_at((radius * np.cos(a), radius * np.sin(a), 1.5 * np.sin(3 * a))),
                           resolution_x=size, resolution_y=size))
    return cams


def test_optimisation_recovers_a_known_texture():
    torch.manual_seed(0)
    v, f, uv, uf = sphere_tensors(32, 16, bumps=0.05, dtype=torch.float32)
    cams = views_around(6, 48)
    verts = v[None].expand(len(cams), -1, -1)
    target_tex = torch.tensor(checker_texture(16, 4))
    with torch.no_grad():
        target = render(verts, f, uv, uf, [target_tex], None, cams, passes=("color",))["color"]
    tex = torch.full_like(target_tex, 0.5).requires_grad_(True)
    opt = torch.optim.Adam([tex], lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        out = render(verts, f, uv, uf, [tex], None, cams, passes=("color",))["color"]
        F.mse_loss(out, target).backward()
        seen = tex.grad.abs().sum(-1) > 0
        opt.step()
    err = (tex.detach() - target_tex).abs().sum(-1)[seen].mean() / 3
    start = (0.5 - target_tex).abs().sum(-1)[seen].mean() / 3
    assert seen.float().mean() > 0.7
    assert start > 0.1
    assert err < 0.02, f"texture error {float(err):.4f} (started at {float(start):.4f})"


def test_optimisation_recovers_a_known_smooth_displacement():
    """Grey shaded renders alone (the geometry guidance) recover the coefficients
    of a smooth radial displacement of a sphere."""
    v, f, uv, uf = sphere_tensors(32, 16, bumps=0.0, dtype=torch.float32)
    normal = v / v.norm(dim=1, keepdim=True)
    theta = torch.acos(normal[:, 2].clamp(-1, 1))
    phi = torch.atan2(normal[:, 1], normal[:, 0])
    basis = torch.stack([radial_bumps(theta, phi), torch.sin(theta) * torch.sin(phi),
                         torch.cos(2 * theta)], dim=0)  # [3,V]
    true = torch.tensor([0.10, -0.06, 0.05])
    cams = views_around(6, 48)
    tex = torch.tensor(checker_texture(8, 2))

    def shaded(coef):
        verts = v + (coef @ basis)[:, None] * normal
        return render(verts[None].expand(len(cams), -1, -1), f, uv, uf, [tex], None, cams, passes=("grey",))["grey"]

    with torch.no_grad():
        target = shaded(true)
    coef = torch.zeros(3, requires_grad=True)
    opt = torch.optim.Adam([coef], lr=0.01)
    for _ in range(80):
        opt.zero_grad()
        F.mse_loss(shaded(coef), target).backward()
        opt.step()
    assert (coef.detach() - true).abs().max() < 0.01, coef.detach()
