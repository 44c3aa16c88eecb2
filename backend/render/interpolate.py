"""Differentiable barycentrics and attribute interpolation at covered pixels.

Visibility (triangle ids) comes from :mod:`.raster` without gradients; here
the barycentric coordinates of each covered pixel centre are recomputed in
torch from the projected vertices, so gradients flow to vertex positions.

Layout: per-pixel data is channel-first, ``[C,N]`` (one contiguous row per
channel): on the CPU, gathers with ``index_select`` and element-wise maths on
contiguous rows are several times faster than fancy indexing on ``[N,3]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Fragments:
    """The covered pixels of a batch, flattened (N of them).

    pixel  [N] int64 flat index into B*H*W (row-major, row 0 = top)
    view   [N] int64 batch index of each pixel
    tri    [N] int64 triangle id
    corner [3,N] int64 flat index (view * V + vertex) of each triangle corner
    bary   [3,N] perspective-correct barycentrics (sum to 1), differentiable
    depth  [N] view-axis distance in metres, differentiable
    front  [N] bool, the triangle faces the camera (counter-clockwise as seen)
    corner_attrs  list of 3 tensors [K,N]: the extra per-vertex attributes at each corner
    """

    pixel: torch.Tensor
    view: torch.Tensor
    tri: torch.Tensor
    corner: torch.Tensor
    bary: torch.Tensor
    depth: torch.Tensor
    front: torch.Tensor
    corner_attrs: list


def fragments(tri_id: torch.Tensor, faces_t: torch.Tensor, vertex_attrs: torch.Tensor,
              ortho: torch.Tensor) -> Fragments:
    """Barycentrics of every covered pixel centre.

    tri_id [B,H,W] int (-1 = empty); faces_t [3,F] int64 (transposed triangles);
    vertex_attrs [3+K, B*V]: rows u, v (screen pixels, u right, v down), depth
    (metres), then K extra attributes to carry to the corners (e.g. normals);
    ortho [B] bool.
    """
    b_, h, w = tri_id.shape
    v_count = vertex_attrs.shape[1] // b_
    flat = tri_id.reshape(-1)
    pixel = torch.nonzero(flat >= 0).squeeze(1)
    tri = flat.index_select(0, pixel).long()
    view = torch.div(pixel, h * w, rounding_mode="floor")
    rem = pixel - view * (h * w)
    row = torch.div(rem, w, rounding_mode="floor")
    col = rem - row * w

    corner = faces_t.index_select(1, tri) + (view * v_count)[None]  # [3,N]
    at = [vertex_attrs.index_select(1, corner[k]) for k in range(3)]  # 3 x [3+K,N]
    dtype = vertex_attrs.dtype
    px = col.to(dtype) + 0.5
    py = row.to(dtype) + 0.5
    x0, x1, x2 = at[0][0] - px, at[1][0] - px, at[2][0] - px  # corners relative to the pixel centre
    y0, y1, y2 = at[0][1] - py, at[1][1] - py, at[2][1] - py
    # Signed sub-areas opposite each corner.
    e0 = x1 * y2 - x2 * y1
    e1 = x2 * y0 - x0 * y2
    e2 = x0 * y1 - x1 * y0
    area = e0 + e1 + e2
    inv_area = 1.0 / area
    l0, l1, l2 = e0 * inv_area, e1 * inv_area, e2 * inv_area
    d0, d1, d2 = at[0][2], at[1][2], at[2][2]

    is_ortho = ortho.index_select(0, view)
    if bool(is_ortho.all()):
        bary = torch.stack([l0, l1, l2])
        depth = l0 * d0 + l1 * d1 + l2 * d2
    else:
        # Perspective-correct: interpolate in 1/depth. Orthographic pixels take the
        # plain screen barycentrics; their depths are replaced by 1 in this branch
        # so torch.where never sees a division by ~0 (which would poison gradients).
        one = torch.ones_like(d0)
        if bool(is_ortho.any()):
            d0s, d1s, d2s = (torch.where(is_ortho, one, d) for d in (d0, d1, d2))
        else:
            d0s, d1s, d2s = d0, d1, d2
        w0, w1, w2 = l0 / d0s, l1 / d1s, l2 / d2s
        inv_z = w0 + w1 + w2
        z = 1.0 / inv_z
        bary = torch.stack([w0 * z, w1 * z, w2 * z])
        depth = z
        if bool(is_ortho.any()):
            bary = torch.where(is_ortho[None], torch.stack([l0, l1, l2]), bary)
            depth = torch.where(is_ortho, l0 * d0 + l1 * d1 + l2 * d2, z)
    # v points down on screen, so a counter-clockwise (front) triangle has negative area.
    front = (area < 0).detach()
    return Fragments(pixel=pixel, view=view, tri=tri, corner=corner, bary=bary, depth=depth,
                     front=front, corner_attrs=[a[3:] for a in at])


def interpolate(corner_values, bary: torch.Tensor) -> torch.Tensor:
    """corner_values: 3 tensors [C,N] (values at each pixel's triangle corners),
    bary [3,N] -> [C,N]."""
    return corner_values[0] * bary[0] + corner_values[1] * bary[1] + corner_values[2] * bary[2]
