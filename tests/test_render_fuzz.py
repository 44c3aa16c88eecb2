"""Random triangle soups and random cameras: the renderer either raises a
ValueError or returns finite passes and finite gradients (never crashes)."""

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.render import render
from backend.render.procedural import look_at
from shared.camera import Camera



@st.composite
def scenes(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    v = draw(st.integers(3, 40))
    f = draw(st.integers(1, 60))
    scale = draw(st.sampled_from([1e-4, 0.1, 1.0, 50.0]))
    verts = rng.normal(scale=scale, size=(2, v, 3))
    if draw(st.booleans()):
        verts[:, rng.integers(0, v, size=3)] = 0.0  # coincident vertices: zero-area triangles
    faces = rng.integers(0, v, size=(f, 3))
    uvs = rng.uniform(-1.5, 2.5, size=(7, 2))
    uv_faces = rng.integers(0, 7, size=(f, 3))
    cams = []
    for _ in range(2):
        eye = rng.normal(size=3) * draw(st.sampled_from([0.5, 3.0, 20.0]))
        if np.linalg.norm(eye) < 1e-3:
            eye = np.array([0.0, -3.0, 0.0])
        cams.append(Camera(look_at(eye, rng.normal(scale=0.2, size=3), roll=float(rng.uniform(-3, 3))),
                           type=draw(st.sampled_from(["PERSP", "ORTHO"])), lens=float(rng.uniform(5, 200)),
                           sensor_fit=draw(st.sampled_from(["AUTO", "HORIZONTAL", "VERTICAL"])),
                           shift_x=float(rng.uniform(-1, 1)), shift_y=float(rng.uniform(-1, 1)),
                           ortho_scale=float(rng.uniform(0.01, 10)), clip_start=float(rng.uniform(0.001, 1)),
                           clip_end=float(rng.uniform(2, 100)), resolution_x=int(rng.integers(1, 24)),
                           resolution_y=int(rng.integers(1, 24)), pixel_aspect_x=float(rng.uniform(1, 3))))
    return verts, faces, uvs, uv_faces, cams


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenes(), st.booleans())
def test_random_scenes_render_finite_passes_and_gradients(scene, fused):
    verts, faces, uvs, uv_faces, cams = scene
    v = torch.tensor(verts, dtype=torch.float32, requires_grad=True)
    tex = torch.rand(5, 4, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    size = (cams[0].resolution_x, cams[0].resolution_y)
    out = render(v, torch.tensor(faces), torch.tensor(uvs, dtype=torch.float32), torch.tensor(uv_faces), [tex],
                 None, cams, size=size, fused=fused,
                 passes=("color", "grey", "albedo", "normal_camera", "normal_world", "depth", "alpha", "uv", "tri_id"))
    for name, t in out.items():
        assert torch.isfinite(t.float()).all(), name
    alpha = out["alpha"][..., 0]
    tri = out["tri_id"][..., 0]
    assert ((alpha == 0) | (alpha == 1)).all() and torch.equal(alpha > 0, tri >= 0)
    assert tri.max() < len(faces)
    sum(t.float().sum() for k, t in out.items() if k != "tri_id").backward()
    assert torch.isfinite(v.grad).all() and torch.isfinite(tex.grad).all()
