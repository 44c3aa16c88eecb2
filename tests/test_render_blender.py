"""The renderer agrees with Blender itself (real bpy wheel, Cycles, emission shader).

Blender renders in a subprocess (bpy and torch are kept apart) from the same
procedural mesh, texture and cameras; each pixel is Blender's centre ray
(1 sample, 0.01 px box filter), which is what our z-buffer samples.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from backend.render import render
from backend.render.procedural import checker_texture, look_at, uv_sphere
from shared.avatar import linear_to_srgb
from shared.camera import Camera, project_points, projection


pytestmark = pytest.mark.blender

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _scaled(m, s):
    m = m.copy()
    m[:3, :3] *= s
    return m


CAMERAS = {
    "persp_default": Camera(look_at((0.3, -5.0, 1.5)), resolution_x=112, resolution_y=112),
    "shifted_lens": Camera(look_at((1.0, -5.0, 0.5)), shift_x=0.12, shift_y=-0.08,
                           resolution_x=128, resolution_y=96),
    "vertical_fit": Camera(look_at((-3.0, -3.0, 2.0), roll=0.3), lens=40.0, sensor_fit="VERTICAL",
                           sensor_height=24.0, resolution_x=96, resolution_y=128),
    "auto_portrait": Camera(look_at((4.0, 2.0, 1.0)), lens=35.0, resolution_x=80, resolution_y=128),
    "pixel_aspect": Camera(look_at((0.0, 5.0, 1.0)), pixel_aspect_x=2.0, pixel_aspect_y=1.0,
                           resolution_x=128, resolution_y=96),
    "ortho": Camera(look_at((3.0, -3.0, 3.0)), type="ORTHO", ortho_scale=3.0, shift_x=0.05,
                    resolution_x=112, resolution_y=96),
    "ortho_vertical_top": Camera(look_at((0.0, 0.0, 5.0)), type="ORTHO", ortho_scale=2.6,
                                 sensor_fit="VERTICAL", resolution_x=96, resolution_y=120),
    "horizontal_scaled_obj": Camera(_scaled(look_at((2.5, 2.5, -1.5)), 1.7), lens=24.0, sensor_width=30.0,
                                    sensor_fit="HORIZONTAL", clip_start=0.5, pixel_aspect_y=1.5,
                                    resolution_x=128, resolution_y=80),
}


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    v, f, uv, uf = uv_sphere(48, 24, bumps=0.12)
    tex = checker_texture(64, 8)
    d = tmp_path_factory.mktemp("blender_ref")
    cams = list(CAMERAS.values())
    np.savez(d / "scene.npz", vertices=v, faces=f, uvs=uv, uv_faces=uf, texture=tex,
             cameras=json.dumps([c.to_dict() for c in cams]))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "_render_blender_scene.py"),
                           str(d / "scene.npz"), str(d / "out"), "CYCLES"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    blender = [np.asarray(Image.open(d / "out" / f"view_{i:02d}.png").convert("RGBA")) for i in range(len(cams))]
    depth = [np.load(d / "out" / f"depth_{i:02d}.npy") for i in range(len(cams))]
    ours, our_depth = [], []
    for cam in cams:
        out = render(torch.tensor(v)[None], torch.tensor(f), torch.tensor(uv), torch.tensor(uf),
                     [torch.tensor(tex)], None, [cam], passes=("albedo", "alpha", "depth"))
        ours.append((out["albedo"][0].numpy(), out["alpha"][0, ..., 0].numpy()))
        our_depth.append(out["depth"][0, ..., 0].numpy())
    return blender, ours, depth, our_depth


def agreement(blender_rgba, our_albedo, our_alpha):
    """-> (silhouette IoU, mean |difference| in sRGB 8-bit levels on pixels both fully cover)."""
    b_mask = blender_rgba[..., 3] >= 128
    o_mask = our_alpha > 0.5
    union = (b_mask | o_mask).sum()
    iou = float((b_mask & o_mask).sum() / max(union, 1))
    both = (blender_rgba[..., 3] == 255) & o_mask
    ours8 = np.round(linear_to_srgb(np.clip(our_albedo, 0, 1)) * 255.0)
    diff = np.abs(ours8[both] - blender_rgba[..., :3][both].astype(np.float64))
    return iou, float(diff.mean()), int(both.sum())


@pytest.mark.parametrize("index,name", list(enumerate(CAMERAS)))
def test_silhouette_and_texture_match_blender(scene, index, name):
    blender, ours, _, _ = scene
    cam = list(CAMERAS.values())[index]
    assert blender[index].shape[:2] == (cam.resolution_y, cam.resolution_x)
    iou, mad, n = agreement(blender[index], *ours[index])
    print(f"{name}: IoU={iou:.4f} mean|diff|={mad:.3f}/255 over {n} px")
    assert n > 0.1 * cam.resolution_x * cam.resolution_y, "the mesh should fill a good part of the view"
    assert iou >= 0.98, f"{name}: silhouette IoU {iou:.4f}"
    assert mad <= 3.0, f"{name}: mean abs difference {mad:.3f}/255"


def test_agreement_detects_a_wrong_camera(scene):
    """The comparison is sensitive: a 2% lens error in our camera drops below the thresholds."""
    blender = scene[0]
    v, f, uv, uf = uv_sphere(48, 24, bumps=0.12)
    tex = checker_texture(64, 8)
    cam = CAMERAS["shifted_lens"]
    wrong = Camera(**{**cam.__dict__, "shift_x": cam.shift_x + 0.02})
    out = render(torch.tensor(v)[None], torch.tensor(f), torch.tensor(uv), torch.tensor(uf),
                 [torch.tensor(tex)], None, [wrong], passes=("albedo", "alpha"))
    iou, mad, _ = agreement(blender[1], out["albedo"][0].numpy(), out["alpha"][0, ..., 0].numpy())
    assert iou < 0.98 or mad > 3.0


@pytest.mark.parametrize("index,name", list(enumerate(CAMERAS)))
def test_depth_pass_matches_blender_view_z_depth(scene, index, name):
    """Our depth pass is Blender's camera-axis depth (what its Z pass stores)."""
    _, ours, depth, our_depth = scene
    both = (depth[index][..., 1] == 1.0) & (ours[index][1] > 0.5)
    err = np.abs(depth[index][..., 0][both] - our_depth[index][both])
    print(f"{name}: depth max|diff|={err.max():.2e} m, median {np.median(err):.1e} m over {both.sum()} px")
    assert both.sum() > 500
    # A crack between triangles would show the far side: tens of centimetres off.
    assert np.median(err) < 1e-4 and err.max() < 1e-2


def random_cameras(n, seed=0):
    rng = np.random.default_rng(seed)
    cams = []
    for i in range(n):
        eye = rng.normal(size=3)
        eye = 3.0 * eye / np.linalg.norm(eye) + rng.normal(scale=0.3, size=3)
        m = look_at(eye, rng.normal(scale=0.3, size=3), roll=rng.uniform(-np.pi, np.pi))
        m[:3, :3] *= rng.uniform(0.5, 2.0)  # scaled camera objects render unscaled
        cams.append(Camera(
            m, type="ORTHO" if i % 4 == 3 else "PERSP", lens=float(rng.uniform(15, 120)),
            sensor_width=float(rng.uniform(10, 50)), sensor_height=float(rng.uniform(10, 50)),
            sensor_fit=("AUTO", "HORIZONTAL", "VERTICAL")[i % 3], shift_x=float(rng.uniform(-0.4, 0.4)),
            shift_y=float(rng.uniform(-0.4, 0.4)), ortho_scale=float(rng.uniform(1, 8)),
            resolution_x=int(rng.integers(16, 1000)), resolution_y=int(rng.integers(16, 1000)),
            pixel_aspect_x=float(rng.choice([1.0, 1.0, 1.3, 2.0])), pixel_aspect_y=float(rng.choice([1.0, 1.0, 1.5]))))
        # (Blender clamps pixel aspects to [1, 200], so only such values are compared.)
    return cams


def test_projection_matches_blender_world_to_camera_view(tmp_path):
    """48 random cameras (every sensor fit, shift, pixel aspect, ortho, scaled objects):
    our one conversion function against Blender's own projection helper."""
    cams = random_cameras(48)
    points = np.random.default_rng(1).normal(scale=0.8, size=(25, 3))
    np.savez(tmp_path / "cams.npz", cameras=json.dumps([c.to_dict() for c in cams]), points=points)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "_render_blender_scene.py"),
                           str(tmp_path / "cams.npz"), str(tmp_path / "proj.npy"), "PROJECT"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    blender = np.load(tmp_path / "proj.npy")
    for cam, ref in zip(cams, blender):
        uv, depth = project_points(projection(cam), points)
        front = depth > 0.1
        # Blender: x, y in [0,1] from the bottom-left of the frame; ours in pixels from the top-left.
        ours = np.stack([uv[:, 0] / cam.resolution_x, 1.0 - uv[:, 1] / cam.resolution_y], 1)
        # Blender keeps camera settings in float32: agree to ~1e-6 of the frame (< 0.01 px).
        assert np.abs(ours[front] - ref[front, :2]).max() < 1e-5 * max(1.0, np.abs(ref[front, :2]).max()), cam
        assert np.abs(depth - ref[:, 2]).max() < 1e-5
