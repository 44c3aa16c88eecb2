"""UV-space maps of an avatar and the way back from maps to vertices.

Rasterizing attributes *into UV space* (one texel -> one surface point) is how
the style network sees the avatar; it is not view rendering (that is
:mod:`backend.render`). Arrays follow :mod:`shared.avatar`: UV origin bottom-left,
image row 0 top, so texel row ``r`` of an ``R``-row map has ``v = 1 - (r+0.5)/R``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import torch
import torch.nn.functional as F

from shared.avatar import srgb_to_linear


@numba.njit(cache=True)
def _raster_uv(uv_tri, tri_index, R, tri_id, bary):
    # uv_tri [F,3,2] in pixel coords (x right, y down); writes the first triangle covering each texel centre.
    for f in range(uv_tri.shape[0]):
        x0, y0 = uv_tri[f, 0, 0], uv_tri[f, 0, 1]
        x1, y1 = uv_tri[f, 1, 0], uv_tri[f, 1, 1]
        x2, y2 = uv_tri[f, 2, 0], uv_tri[f, 2, 1]
        den = (y1 - y2) * (x0 - x2) + (x2 - x1) * (y0 - y2)
        if abs(den) < 1e-12:
            continue
        xmin = max(int(np.floor(min(x0, x1, x2))), 0)
        xmax = min(int(np.ceil(max(x0, x1, x2))), R - 1)
        ymin = max(int(np.floor(min(y0, y1, y2))), 0)
        ymax = min(int(np.ceil(max(y0, y1, y2))), R - 1)
        for py in range(ymin, ymax + 1):
            for px in range(xmin, xmax + 1):
                cx = px + 0.5
                cy = py + 0.5
                a = ((y1 - y2) * (cx - x2) + (x2 - x1) * (cy - y2)) / den
                b = ((y2 - y0) * (cx - x2) + (x0 - x2) * (cy - y2)) / den
                c = 1.0 - a - b
                if a >= -1e-6 and b >= -1e-6 and c >= -1e-6 and tri_id[py, px] < 0:
                    tri_id[py, px] = tri_index[f]
                    bary[py, px, 0] = a
                    bary[py, px, 1] = b
                    bary[py, px, 2] = c


def rasterize_uv(uvs: np.ndarray, uv_faces: np.ndarray, faces_subset: np.ndarray, R: int):
    """Which triangle covers each texel of an ``R``x``R`` UV map.

    uvs ``[T,2]``, uv_faces ``[F,3]``; ``faces_subset`` ``[f]`` indices of the
    triangles to draw (one texture set). Returns ``tri_id`` ``[R,R]`` int64 (-1 =
    empty) and ``bary`` ``[R,R,3]`` float32 barycentrics.
    """
    uv = uvs[uv_faces[faces_subset]].astype(np.float64)  # [f,3,2]
    px = np.empty_like(uv)
    px[..., 0] = uv[..., 0] * R
    px[..., 1] = (1.0 - uv[..., 1]) * R
    tri_id = np.full((R, R), -1, np.int64)
    bary = np.zeros((R, R, 3), np.float32)
    _raster_uv(px, faces_subset.astype(np.int64), R, tri_id, bary)
    return tri_id, bary


def dilate(img: torch.Tensor, mask: torch.Tensor, iters: int = 4) -> torch.Tensor:
    """Fill empty texels next to the chart borders with their neighbours' mean so
    bilinear lookups at seams do not read background. ``img`` ``[H,W,C]``, ``mask`` ``[H,W]`` bool."""
    x = img.permute(2, 0, 1)[None]
    m = mask.float()[None, None]
    k = torch.ones(1, 1, 3, 3, dtype=x.dtype)
    for _ in range(iters):
        s = F.conv2d(x * m, k.expand(x.shape[1], 1, 3, 3), padding=1, groups=x.shape[1])
        c = F.conv2d(m, k, padding=1)
        fill = s / c.clamp_min(1)
        x = torch.where(m > 0, x, fill)
        m = (c > 0).float().maximum(m)
    return x[0].permute(1, 2, 0)


def dilate_maps(x: torch.Tensor, mask: torch.Tensor, iters: int = 4) -> torch.Tensor:
    """Batched, differentiable :func:`dilate`: ``x`` ``[S,C,R,R]``, ``mask``
    ``[S,1,R,R]`` (1 = texel on the surface). Texels off the charts take the mean
    of covered neighbours, ring by ring, so bilinear lookups and upsampling at
    UV seams only see values the network was trained to produce there."""
    C = x.shape[1]
    m = mask.to(x.dtype)
    k = torch.ones(C, 1, 3, 3, dtype=x.dtype, device=x.device)
    k1 = torch.ones(1, 1, 3, 3, dtype=x.dtype, device=x.device)
    for _ in range(iters):
        s = F.conv2d(x * m, k, padding=1, groups=C)
        c = F.conv2d(m, k1, padding=1)
        x = torch.where(m > 0, x, s / c.clamp_min(1))
        m = (c > 0).to(x.dtype).maximum(m)
    return x


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals ``[V,3]``."""
    v = vertices.astype(np.float64)
    fn = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    n /= np.linalg.norm(n, axis=1, keepdims=True).clip(1e-12)
    return n.astype(np.float32)


def coincident_groups(vertices: np.ndarray, tol: float) -> np.ndarray:
    """``[V]`` group id per vertex: vertices closer than ~``tol`` share an id
    (glTF imports split vertices along UV seams; they must move together)."""
    q = np.round(vertices.astype(np.float64) / max(tol, 1e-12)).astype(np.int64)
    _, inv = np.unique(q, axis=0, return_inverse=True)
    return inv.reshape(-1)


@dataclass
class VertexSampler:
    """Maps per-texture-set UV maps to one value per vertex.

    Each triangle corner looks up its texture set's map at its UV (bilinear);
    corner values are averaged per vertex (seam vertices, whose corners sit in
    different UV charts, get one consistent value) and then per group of
    coincident vertices.
    """

    grid: torch.Tensor        # [S,1,Nmax,2] grid_sample coords per set (padded)
    corner_vertex: list       # per set: [n_s] long vertex index of each corner
    group: torch.Tensor       # [V] long coincident-group id
    group_count: torch.Tensor  # [G] float
    vertex_count: torch.Tensor  # [V] float corners per vertex
    num_vertices: int

    @classmethod
    def build(cls, vertices, faces, uvs, uv_faces, face_material, num_sets: int, tol: float):
        V = len(vertices)
        grids, cvs, nmax = [], [], 1
        for s in range(num_sets):
            fs = np.nonzero(face_material == s)[0]
            uv = uvs[uv_faces[fs]].reshape(-1, 2)
            g = np.stack([uv[:, 0] * 2 - 1, (1 - uv[:, 1]) * 2 - 1], -1)  # x right, y down
            grids.append(g.astype(np.float32))
            cvs.append(torch.from_numpy(faces[fs].reshape(-1).astype(np.int64)))
            nmax = max(nmax, len(g))
        G = np.zeros((num_sets, 1, nmax, 2), np.float32)
        for s, g in enumerate(grids):
            G[s, 0, :len(g)] = g
        cnt = torch.zeros(V)
        for cv in cvs:
            cnt.index_add_(0, cv, torch.ones(len(cv)))
        grp = torch.from_numpy(coincident_groups(vertices, tol))
        gc = torch.zeros(int(grp.max()) + 1).index_add_(0, grp, torch.ones(V))
        return cls(torch.from_numpy(G), cvs, grp, gc, cnt, V)

    def __call__(self, maps: torch.Tensor) -> torch.Tensor:
        """``maps`` ``[S,C,R,R]`` -> per-vertex values ``[V,C]`` (vertices on no
        triangle get 0)."""
        S, C = maps.shape[:2]
        smp = F.grid_sample(maps, self.grid.to(maps.device), mode="bilinear", padding_mode="border",
                            align_corners=False)  # [S,C,1,N]
        acc = smp.new_zeros(self.num_vertices, C)  # smp's dtype: grid_sample may run in float32 under autocast
        for s in range(S):
            cv = self.corner_vertex[s].to(maps.device)
            acc = acc.index_add(0, cv, smp[s, :, 0, :len(cv)].t())
        per_v = acc / self.vertex_count.to(maps.device).clamp_min(1)[:, None]
        grp = self.group.to(maps.device)
        g = per_v.new_zeros(len(self.group_count), C).index_add(0, grp, per_v)
        g = g / self.group_count.to(maps.device)[:, None]
        return g[grp]


@dataclass
class BlendshapeSampler:
    """Decoder features at the vertices blendshapes move, as 3x3 patches, so a 3x3 conv
    head evaluated on them (:meth:`head`) equals that conv applied to the whole map and
    read back like :class:`VertexSampler` does (bilinear per triangle corner, mean per
    vertex, mean per group of coincident vertices: here coincident *moving* vertices),
    at a cost that follows the number of moving vertices instead of texture sets x texels.

    Exact because the conv, the bilinear lookup and the means are all linear: each tap
    of the 3x3 patch is the map looked up one texel away from the corner's (clamped)
    texel position; the conv's padding becomes grid_sample's (replicate -> border,
    zeros -> zeros). Corners of a vertex that share a UV are looked up once, weighted.
    """

    vertices: torch.Tensor     # [Vm] long, the moving vertices
    sets: torch.Tensor         # [Sm] long, texture sets with a triangle corner on a moving vertex
    grid: torch.Tensor         # [Sm,9,Nmax,2] grid_sample coords of the 9 taps per lookup point
    point_vertex: list         # per set in ``sets``: [n_s] long index into ``vertices``
    point_weight: list         # per set: [n_s] float, corners of that vertex at that UV / its corners
    group: torch.Tensor        # [Vm] long coincident-group id among the moving vertices
    group_count: torch.Tensor  # [G] float
    padding: str               # grid_sample padding_mode

    @classmethod
    def build(cls, vertices, faces, uvs, uv_faces, face_material, moving: np.ndarray, R: int, tol: float,
              conv_padding: str = "replicate"):
        """``moving`` ``[V]`` bool: vertices whose delta is non-zero in some blendshape."""
        pad = {"replicate": "border", "zeros": "zeros"}.get(conv_padding)
        if pad is None:
            raise ValueError(f"conv padding '{conv_padding}' has no grid_sample equivalent")
        vm = np.nonzero(moving)[0]
        local = np.full(len(vertices), -1, np.int64)
        local[vm] = np.arange(len(vm))
        cv, cu = faces.reshape(-1).astype(np.int64), uv_faces.reshape(-1).astype(np.int64)
        cs = np.repeat(face_material.astype(np.int64), 3)
        keep = local[cv] >= 0
        cv, cu, cs = local[cv[keep]], cu[keep], cs[keep]
        count = np.bincount(cv, minlength=len(vm)).astype(np.float64)
        sets = np.unique(cs)
        taps = np.array([(b - 1, a - 1) for a in range(3) for b in range(3)], np.float64)  # (dx, dy), conv order
        pts, pvs, pws, nmax = [], [], [], 1
        for s in sets:
            sel = cs == s
            key, mult = np.unique(np.stack([cv[sel], cu[sel]], 1), axis=0, return_counts=True)
            uv = uvs[key[:, 1]].astype(np.float64)
            p = np.stack([uv[:, 0] * R - 0.5, (1.0 - uv[:, 1]) * R - 0.5], -1).clip(0, R - 1)
            g = ((p[None] + taps[:, None]) + 0.5) / R * 2 - 1  # [9,n,2] normalized, align_corners=False
            pts.append(g.astype(np.float32))
            pvs.append(torch.from_numpy(key[:, 0].copy()))
            pws.append(torch.from_numpy((mult / count[key[:, 0]]).astype(np.float32)))
            nmax = max(nmax, len(key))
        G = np.zeros((len(sets), 9, nmax, 2), np.float32)
        for i, g in enumerate(pts):
            G[i, :, :g.shape[1]] = g
        grp = coincident_groups(vertices[vm], tol) if len(vm) else np.zeros(0, np.int64)
        grp_t = torch.from_numpy(grp)
        gc = torch.zeros(int(grp.max()) + 1 if len(grp) else 0).index_add_(0, grp_t, torch.ones(len(grp)))
        return cls(torch.from_numpy(vm), torch.from_numpy(sets), torch.from_numpy(G), pvs, pws, grp_t, gc, pad)

    def to(self, device) -> "BlendshapeSampler":
        return BlendshapeSampler(self.vertices.to(device), self.sets.to(device), self.grid.to(device),
                                 [t.to(device) for t in self.point_vertex], [t.to(device) for t in self.point_weight],
                                 self.group.to(device), self.group_count.to(device), self.padding)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder features ``x`` ``[S,W,R,R]`` -> ``[Vm,9W]`` per-vertex 3x3 patches
        (channel-major, taps in conv weight order)."""
        W = x.shape[1]
        smp = F.grid_sample(x.index_select(0, self.sets), self.grid, mode="bilinear", padding_mode=self.padding,
                            align_corners=False)  # [Sm,W,9,Nmax]
        acc = smp.new_zeros(len(self.vertices), W * 9)
        for i, (pv, pw) in enumerate(zip(self.point_vertex, self.point_weight)):
            acc = acc.index_add(0, pv, smp[i, :, :, :len(pv)].reshape(W * 9, -1).t() * pw[:, None])
        g = acc.new_zeros(len(self.group_count), W * 9).index_add(0, self.group, acc)
        return (g / self.group_count[:, None])[self.group]

    def head(self, conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        """``conv`` (3x3, stride 1) applied to ``x`` ``[S,W,R,R]`` and read at the moving
        vertices -> ``[Vm, conv.out_channels]``."""
        w = conv.weight.reshape(conv.out_channels, -1)
        return torch.addmm(conv.bias, self.patches(x), w.t())


def avatar_uv_maps(av, R: int):
    """The network's identity input per texture set.

    Returns dict of tensors: ``albedo`` ``[S,R,R,3]`` linear (the set's texture
    resized), ``position`` ``[S,R,R,3]`` (rest positions centred on the head and
    divided by its size), ``normal`` ``[S,R,R,3]``, ``mask`` ``[S,R,R,1]``
    (texels on the surface), plus ``center`` [3] and ``size`` (metres).
    """
    v = av.vertices
    lo, hi = v.min(0), v.max(0)
    center = (lo + hi) / 2
    size = float(np.linalg.norm(hi - lo)) or 1.0
    nrm = vertex_normals(v, av.faces)
    alb, pos, nor, msk = [], [], [], []
    for s, ts in enumerate(av.texture_sets):
        img = torch.from_numpy(srgb_to_linear(ts.image.astype(np.float32) / 255.0))
        a = F.interpolate(img.permute(2, 0, 1)[None], size=(R, R), mode="bilinear", antialias=True,
                          align_corners=False)[0].permute(1, 2, 0)
        fs = np.nonzero(av.face_material == s)[0]
        tri, bary = rasterize_uv(av.uvs, av.uv_faces, fs, R)
        m = tri >= 0
        tri_c = np.where(m, tri, 0)
        corners = av.faces[tri_c]  # [R,R,3]
        p = (v[corners] * bary[..., None]).sum(-2)
        n = (nrm[corners] * bary[..., None]).sum(-2)
        n /= np.linalg.norm(n, axis=-1, keepdims=True).clip(1e-8)
        p = np.where(m[..., None], (p - center) / size, 0).astype(np.float32)
        n = np.where(m[..., None], n, 0).astype(np.float32)
        mt = torch.from_numpy(m)
        alb.append(a)
        pos.append(dilate(torch.from_numpy(p), mt))
        nor.append(dilate(torch.from_numpy(n), mt))
        msk.append(mt.float()[..., None])
    return {"albedo": torch.stack(alb), "position": torch.stack(pos), "normal": torch.stack(nor),
            "mask": torch.stack(msk), "center": torch.from_numpy(center.astype(np.float32)), "size": size}
