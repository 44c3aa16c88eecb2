"""The default camera rig frames the head, found from the expression blendshapes."""

import numpy as np

from backend.avatar import sample_avatar
from backend.style.rig import default_rig, head_bounds
from shared.camera import project_points, projection


def test_head_bounds_frame_the_face_not_the_shoulders():
    av = sample_avatar(with_track=False)
    c_all, r_all = head_bounds(av.vertices)
    c, r = head_bounds(av.vertices, av.blendshapes)
    assert r < 0.75 * r_all  # shoulders no longer part of the framed sphere
    assert c[2] > c_all[2]  # and the centre moved up to the head
    moving = np.linalg.norm(av.blendshapes, axis=2).max(0) > 1e-3
    assert (np.linalg.norm(av.vertices[moving] - c, axis=1) < r).all()  # every moving vertex is inside


def test_default_rig_sees_every_face_vertex_in_frame():
    av = sample_avatar(with_track=False)
    moving = np.linalg.norm(av.blendshapes, axis=2).max(0) > 1e-3
    face = av.vertices[moving].astype(np.float64)
    cams = default_rig(av.vertices, resolution=128, blendshapes=av.blendshapes)
    assert len(cams) == 12
    for cam in cams:
        uv, depth = project_points(projection(cam), face)
        assert (depth > 0).all()
        inside = (uv >= 0).all(1) & (uv[:, 0] < 128) & (uv[:, 1] < 128)
        assert inside.all(), cam.name
    # The face fills a real part of the front view rather than a few pixels.
    uv, _ = project_points(projection(cams[0]), face)
    assert np.ptp(uv[:, 1]) > 0.35 * 128
