"""Input checks run before anything reaches numba: bad input -> ValueError naming it."""

from __future__ import annotations

import math

import numpy as np
import torch

MAX_COORDINATE = 1e6  # metres

PASS_CHANNELS = {
    "color": 3, "grey": 3, "albedo": 3, "normal_camera": 3, "normal_world": 3,
    "depth": 1, "alpha": 1, "uv": 2, "tri_id": 1,
}


def _finite(name: str, t: torch.Tensor) -> None:
    # A sum is one cheap pass and is non-finite whenever an element is; only then
    # (or on overflow of huge values) run the exact element-wise check. On the CPU
    # numpy's single-threaded sum is several times cheaper than waking torch's workers.
    if t.numel() == 0:
        return
    if t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64):
        if math.isfinite(float(np.sum(t.numpy()))):
            return
    elif bool(torch.isfinite(t.sum())):
        return
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} contains {bad} NaN or infinite values")


def _index(name: str, t: torch.Tensor, count: int, what: str) -> None:
    if t.numel() == 0:
        return
    ti = t.numpy() if t.device.type == "cpu" else t  # numpy: no torch worker threads on the CPU
    lo, hi = int(ti.min()), int(ti.max())
    if lo < 0 or hi >= count:
        raise ValueError(f"{name} has indices in [{lo}, {hi}] but there are only {count} {what} "
                         f"(valid range 0..{count - 1})")


def check_inputs(vertices, faces, uvs, uv_faces, textures, face_material, cameras) -> None:
    """Raise ``ValueError`` naming the first problem found. Shapes as in :func:`backend.render.render`
    (the options are checked by :class:`backend.render.RenderSettings`)."""
    if not isinstance(vertices, torch.Tensor) or vertices.dim() != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be a [B,V,3] tensor, got shape {tuple(getattr(vertices, 'shape', ()))}")
    if not vertices.is_floating_point():
        raise ValueError(f"vertices must be floating point, got {vertices.dtype}")
    b, v = vertices.shape[0], vertices.shape[1]
    if b == 0:
        raise ValueError("vertices has an empty batch (B = 0)")
    if v == 0:
        raise ValueError("the mesh is empty: vertices has no vertices")
    vd = vertices.detach()
    # One pass: the largest |coordinate| is NaN or infinite whenever any is. On the CPU
    # numpy's single-threaded reduction avoids waking torch's worker threads.
    big = float(np.abs(vd.numpy()).max()) if vd.device.type == "cpu" and vd.dtype != torch.bfloat16 \
        else float(vd.abs().max())
    if not math.isfinite(big):
        _finite("vertices", vd)
    if big > MAX_COORDINATE:
        # float32 cross products of such coordinates overflow to inf/NaN.
        raise ValueError(f"vertices have coordinates up to {big:.3g} m; the renderer supports |x| <= "
                         f"{MAX_COORDINATE:.0e} m (check the units or the object transform)")
    if not isinstance(faces, torch.Tensor) or faces.dim() != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must be an [F,3] integer tensor, got shape {tuple(getattr(faces, 'shape', ()))}")
    if faces.is_floating_point() or faces.dtype == torch.bool:
        raise ValueError(f"faces must be an integer tensor, got {faces.dtype}")
    if faces.shape[0] == 0:
        raise ValueError("the mesh is empty: faces has no triangles")
    _index("faces", faces, v, "vertices")
    if not isinstance(uvs, torch.Tensor) or uvs.dim() != 2 or uvs.shape[1] != 2:
        raise ValueError(f"uvs must be a [T,2] tensor, got shape {tuple(getattr(uvs, 'shape', ()))}")
    _finite("uvs", uvs.detach())
    if not isinstance(uv_faces, torch.Tensor) or tuple(uv_faces.shape) != tuple(faces.shape):
        raise ValueError(f"uv_faces must be an [F,3] integer tensor like faces {tuple(faces.shape)}, "
                         f"got shape {tuple(getattr(uv_faces, 'shape', ()))}")
    if uv_faces.is_floating_point():
        raise ValueError(f"uv_faces must be an integer tensor, got {uv_faces.dtype}")
    _index("uv_faces", uv_faces, uvs.shape[0], "UV coordinates")
    if not isinstance(textures, (list, tuple)) or len(textures) == 0:
        raise ValueError("textures must be a non-empty list of [H,W,3] tensors")
    for i, tex in enumerate(textures):
        if not isinstance(tex, torch.Tensor) or tex.dim() != 3 or tex.shape[-1] != 3 or min(tex.shape[:2]) == 0:
            raise ValueError(f"textures[{i}] must be an [H,W,3] tensor with H,W > 0, "
                             f"got shape {tuple(getattr(tex, 'shape', ()))}")
        _finite(f"textures[{i}]", tex.detach())
    if face_material is not None:
        if not isinstance(face_material, torch.Tensor) or tuple(face_material.shape) != (faces.shape[0],):
            raise ValueError(f"face_material must be an [F] integer tensor with F={faces.shape[0]}, "
                             f"got shape {tuple(getattr(face_material, 'shape', ()))}")
        _index("face_material", face_material, len(textures), "textures")
    if len(cameras) != b:
        raise ValueError(f"got {len(cameras)} cameras for a batch of {b} vertex sets: pass one camera per batch item")
