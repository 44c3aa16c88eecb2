"""Everything about one avatar the style network needs, as tensors, built once.

:class:`AvatarContext` holds the identity UV maps, the base textures, the
rest geometry and blendshapes, the UV->vertex sampler and the mesh edges, and
turns network outputs into stylized textures and per-vertex offsets
(:meth:`AvatarContext.decode`). The original :class:`shared.avatar.AvatarData` is
only read, never modified.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from shared.avatar import AvatarData, content_hash, srgb_to_linear

from .losses import mesh_edges
from .net import NetConfig, StyleNet, apply_albedo, identity_input
from .uvmaps import VertexSampler, avatar_uv_maps, dilate_maps


@dataclass
class Decoded:
    """Network output for one avatar.

    albedo        [S,R,R,3] linear stylized albedo at the working resolution
    delta         [S,3,R,R] albedo logit change (apply at any resolution with apply_albedo)
    neutral       [V,3] metres, stylized rest offset
    bs_offsets    [K,V,3] metres, added to each blendshape delta
    """

    albedo: torch.Tensor
    delta: torch.Tensor
    neutral: torch.Tensor
    bs_offsets: torch.Tensor


class AvatarContext:
    def __init__(self, av: AvatarData, resolution: int, device="cpu"):
        self.avatar = av
        self.hash = content_hash(av)
        self.device = torch.device(device)
        self.resolution = R = int(resolution)
        maps = avatar_uv_maps(av, R)
        self.head_size = float(maps["size"])
        self.center = maps["center"].to(device)
        self.identity = identity_input(maps).to(device)  # [S,10,R,R]
        self.mask = maps["mask"].to(device)  # [S,R,R,1]
        self.mask_nchw = self.mask.permute(0, 3, 1, 2).contiguous()
        self.base_albedo = maps["albedo"].to(device)  # [S,R,R,3] linear
        self.vertices = torch.tensor(av.vertices).to(device)
        self.faces = torch.tensor(av.faces, dtype=torch.int64).to(device)
        self.uvs = torch.tensor(av.uvs).to(device)
        self.uv_faces = torch.tensor(av.uv_faces, dtype=torch.int64).to(device)
        self.face_material = torch.tensor(av.face_material, dtype=torch.int64).to(device)
        self.blendshapes = torch.tensor(av.blendshapes).to(device)  # [K,V,3]
        self.bs_norm = self.blendshapes.norm(dim=-1, keepdim=True)  # [K,V,1]
        self.K = len(av.blendshape_names)
        self.edges = mesh_edges(self.faces)
        self.sampler = VertexSampler.build(av.vertices, av.faces, av.uvs, av.uv_faces, av.face_material,
                                           len(av.texture_sets), tol=1e-6 * max(self.head_size, 1e-3))

    def net_config(self, **kw) -> NetConfig:
        return NetConfig(resolution=self.resolution, num_blendshapes=self.K, **kw)

    def base_textures(self, size: int | None = None) -> list[torch.Tensor]:
        """Original textures as linear ``[H,W,3]`` tensors (optionally resized to ``size``)."""
        out = []
        for ts in self.avatar.texture_sets:
            t = torch.from_numpy(srgb_to_linear(ts.image.astype(np.float32) / 255.0)).to(self.device)
            if size and t.shape[:2] != (size, size):
                t = F.interpolate(t.permute(2, 0, 1)[None], size=(size, size), mode="bilinear",
                                  antialias=True, align_corners=False)[0].permute(1, 2, 0)
            out.append(t)
        return out

    def decode(self, net: StyleNet, feats=None) -> Decoded:
        delta, off = net(self.identity, feats)
        delta = dilate_maps(delta, self.mask_nchw)  # seams: no untrained off-chart texels
        albedo = apply_albedo(self.base_albedo, delta)
        v = self.sampler(off)  # [V,3(K+1)]
        V = v.shape[0]
        v = torch.tanh(v).reshape(V, self.K + 1, 3).permute(1, 0, 2)  # [K+1,V,3]
        neutral = v[0] * (net.cfg.max_offset_frac * self.head_size)
        bs = v[1:] * (net.cfg.bs_offset_frac * self.bs_norm)
        return Decoded(albedo=albedo, delta=delta, neutral=neutral, bs_offsets=bs)

    def posed(self, weights: torch.Tensor, dec: Decoded | None = None) -> torch.Tensor:
        """Vertices ``[B,V,3]`` for expression weights ``[B,K]``: original when
        ``dec`` is None, else stylized (rest + neutral offsets, deltas + their offsets)."""
        B = weights.shape[0]
        base = self.vertices[None].expand(B, -1, -1)
        if self.K == 0:
            return base + (0 if dec is None else dec.neutral[None])
        bs = self.blendshapes if dec is None else self.blendshapes + dec.bs_offsets
        out = base + torch.einsum("bk,kvc->bvc", weights.to(bs.dtype), bs)
        return out if dec is None else out + dec.neutral[None]

    def render(self, verts, textures, cameras, size, passes, background=None, render_fn=None):
        if render_fn is None:
            from backend.render import render as render_fn
        return render_fn(verts, self.faces, self.uvs, self.uv_faces, list(textures), self.face_material,
                         list(cameras), size=(size, size), background=background, passes=passes)


def expression_dampening(blendshapes: np.ndarray, bs_offsets: np.ndarray) -> dict:
    """Per blendshape ``|delta + offset| / |delta|`` (Frobenius over vertices) and
    their mean; 1 = expressions as strong as the original, < 1 = dampened.
    Blendshapes that move nothing are skipped."""
    if len(blendshapes) == 0:
        return {"mean": 1.0, "per_blendshape": []}
    n0 = np.linalg.norm(blendshapes.reshape(len(blendshapes), -1), axis=1)
    n1 = np.linalg.norm((blendshapes + bs_offsets).reshape(len(blendshapes), -1), axis=1)
    ok = n0 > 1e-9
    ratios = np.where(ok, n1 / np.where(ok, n0, 1), np.nan)
    mean = float(np.nanmean(ratios)) if ok.any() else 1.0
    return {"mean": mean, "per_blendshape": [None if not np.isfinite(r) else float(r) for r in ratios]}
