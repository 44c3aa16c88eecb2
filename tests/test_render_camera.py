"""shared.camera.projection: Blender's camera settings -> pinhole/orthographic projection.

End-to-end agreement with Blender's own renders is in test_render_blender.py;
these pin the individual rules with numbers worked out by hand.
"""

import numpy as np
import pytest
import torch

from backend.render.camera import camera_batch, project, to_camera_space
from backend.render.procedural import look_at
from shared.camera import Camera, project_points, projection, rigid_world_to_camera

EYE = np.eye(4)


def test_default_camera_focal_length_in_pixels():
    p = projection(Camera(EYE, lens=50, sensor_width=36, resolution_x=200, resolution_y=100))
    assert p.fx == pytest.approx(200 * 50 / 36) and p.fy == pytest.approx(p.fx)
    assert (p.cx, p.cy) == pytest.approx((100, 50))
    assert not p.orthographic and (p.width, p.height) == (200, 100)


def test_auto_fit_spans_sensor_width_over_the_larger_side():
    # Portrait image: AUTO puts the sensor *width* along the vertical side.
    p = projection(Camera(EYE, lens=50, sensor_width=36, sensor_height=24, resolution_x=100, resolution_y=200))
    assert p.fy == pytest.approx(200 * 50 / 36) and p.fx == pytest.approx(p.fy)


def test_vertical_and_horizontal_fit_use_their_sensor_dimension():
    v = projection(Camera(EYE, lens=40, sensor_height=20, sensor_fit="VERTICAL", resolution_x=300, resolution_y=100))
    assert v.fy == pytest.approx(100 * 40 / 20)
    h = projection(Camera(EYE, lens=40, sensor_width=30, sensor_fit="HORIZONTAL", resolution_x=100, resolution_y=300))
    assert h.fx == pytest.approx(100 * 40 / 30)


def test_shift_is_a_fraction_of_the_fitted_side():
    p = projection(Camera(EYE, shift_x=0.1, shift_y=-0.2, resolution_x=200, resolution_y=100))
    # Horizontal fit (landscape): shift in units of the 200 px width; shifting right moves the image centre left.
    assert p.cx == pytest.approx(100 - 0.1 * 200) and p.cy == pytest.approx(50 - 0.2 * 200)
    uv, depth = project_points(p, [[0.0, 0.0, -3.0]])
    assert uv[0] == pytest.approx([p.cx, p.cy]) and depth[0] == pytest.approx(3.0)


def test_orthographic_scale_and_pixel_aspect():
    p = projection(Camera(EYE, type="ORTHO", ortho_scale=4.0, resolution_x=200, resolution_y=100))
    assert p.orthographic and p.fx == pytest.approx(50) and p.fy == pytest.approx(50)
    uv, _ = project_points(p, [[1.0, 1.0, -10.0], [1.0, 1.0, -2.0]])
    assert uv[0] == pytest.approx([150, 0]) and uv[1] == pytest.approx([150, 0])
    wide = projection(Camera(EYE, pixel_aspect_x=2.0, resolution_x=200, resolution_y=100))
    assert wide.fy == pytest.approx(2 * wide.fx)  # wide pixels: more pixels per metre vertically


def test_size_override_keeps_the_framing():
    cam = Camera(look_at((1, -5, 2)), shift_x=0.05, resolution_x=320, resolution_y=240)
    pts = np.random.default_rng(0).normal(size=(20, 3))
    full, d_full = project_points(projection(cam), pts)
    half, d_half = project_points(projection(cam, size=(160, 120)), pts)
    assert half == pytest.approx(full / 2, rel=1e-9, abs=1e-9) and d_half == pytest.approx(d_full)


def test_camera_scale_is_ignored_like_in_blender():
    m = look_at((2, -3, 1), roll=0.4)
    scaled = m.copy()
    scaled[:3, :3] *= np.array([1.5, 0.7, 2.0])
    assert rigid_world_to_camera(scaled) == pytest.approx(rigid_world_to_camera(m))
    assert rigid_world_to_camera(m) @ m == pytest.approx(np.eye(4))


def test_torch_projection_matches_the_numpy_reference():
    cams = [Camera(look_at((1, -5, 2)), shift_y=0.1, resolution_x=64, resolution_y=48),
            Camera(look_at((4, 1, 1), roll=0.3), type="ORTHO", ortho_scale=3, sensor_fit="VERTICAL",
                   resolution_x=64, resolution_y=48)]
    pts = np.random.default_rng(1).normal(size=(30, 3))
    cb = camera_batch(cams, dtype=torch.float64)
    screen, depth = project(to_camera_space(torch.tensor(pts)[None].expand(2, -1, -1), cb), cb)
    for i, cam in enumerate(cams):
        uv, d = project_points(projection(cam), pts)
        assert screen[i].numpy() == pytest.approx(uv, abs=1e-9) and depth[i].numpy() == pytest.approx(d)
