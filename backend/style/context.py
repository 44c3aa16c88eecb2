"""Everything about one avatar the style network needs, as tensors, built once.

:class:`AvatarContext` holds the identity UV maps, the base textures, the
rest geometry and blendshapes, the UV->vertex sampler and the mesh edges, and
turns network outputs into stylized textures and per-vertex offsets
(:meth:`AvatarContext.decode`). The original :class:`shared.avatar.AvatarData` is
only read, never modified. It also holds how the style code renders
(:attr:`AvatarContext.render_fn` and :attr:`AvatarContext.render_settings`), so no
function below threads a renderer through its parameters.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from backend.render import RenderSettings, render
from shared.avatar import AvatarData, content_hash, srgb_to_linear

from .config import NetConfig
from .losses import laplacian_loss, mesh_edges, offset_magnitude
from .net import StyleNet, apply_albedo, identity_input
from .uvmaps import BlendshapeSampler, VertexSampler, avatar_uv_maps, dilate_maps


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
    """One avatar as tensors at UV working resolution ``resolution`` on ``device``.

    ``render_fn``: the renderer, called as :func:`backend.render.render` (default);
    ``render_settings``: its base :class:`backend.render.RenderSettings` (lights,
    kernels...), to which each call adds its size, passes and background.
    """

    def __init__(self, av: AvatarData, resolution: int, device="cpu", render_fn=None,
                 render_settings: RenderSettings | None = None):
        self.avatar = av
        self.render_fn = render_fn or render
        self.render_settings = render_settings or RenderSettings()
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
        tol = 1e-6 * max(self.head_size, 1e-3)
        self.sampler = VertexSampler.build(av.vertices, av.faces, av.uvs, av.uv_faces, av.face_material,
                                           len(av.texture_sets), tol=tol)
        # Blendshape offsets live only where some blendshape moves (|delta| > 0): their head,
        # bounds and regularizers are evaluated on those vertices alone.
        moving = np.linalg.norm(av.blendshapes, axis=-1).max(0) > 0 if self.K else np.zeros(len(av.vertices), bool)
        self.moving = torch.from_numpy(np.nonzero(moving)[0]).to(device)  # [Vm] long
        self.bs_sampler = (BlendshapeSampler.build(av.vertices, av.faces, av.uvs, av.uv_faces, av.face_material,
                                                   moving, R, tol).to(device) if len(self.moving) else None)
        self.bs_norm_moving = self.bs_norm[:, self.moving]  # [K,Vm,1]
        e = self.edges
        touch = torch.from_numpy(moving).to(device)[e].any(1)
        self.lap_vertices = torch.unique(e[touch])  # moving vertices and their neighbours [U]
        local = torch.full((len(av.vertices),), -1, dtype=torch.int64, device=device)
        local[self.lap_vertices] = torch.arange(len(self.lap_vertices), device=device)
        self.lap_edges = local[e[touch]]  # [E',2] edges touching a moving vertex, indices into lap_vertices
        deg = torch.zeros(len(av.vertices), device=device).index_add_(0, e.reshape(-1), torch.ones(e.numel(),
                                                                                                   device=device))
        self.lap_degree = deg[self.lap_vertices]  # full-mesh degrees, so the subgraph's Laplacian is exact
        self._reference = None  # (network, its frozen_key, reference outputs): see decode

    def net_config(self, network: NetConfig | None = None, **kw) -> NetConfig:
        """``network`` (default: NetConfig's defaults, updated by ``kw``) at this context's UV
        resolution and sized for this avatar's blendshapes."""
        return replace(network or NetConfig(), resolution=self.resolution, num_blendshapes=self.K, **kw)

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

    def _raw(self, net: StyleNet, feats, start: bool = False) -> dict:
        delta, neutral_map, x = net(self.identity, feats, start=start)
        bs = net.head_bs is not None and self.bs_sampler is not None
        return {"delta": delta, "neutral": self.sampler(neutral_map),  # [V,3]
                "bs": self.bs_sampler.head(net.head_bs, x) if bs else None}  # [Vm,3K]

    def reference(self, net: StyleNet, feats=None) -> dict:
        """``net``'s raw outputs at its starting mappers on this avatar (detached): what
        :meth:`decode` subtracts. Computed once per network and kept while everything
        but the mappers is unchanged (:meth:`StyleNet.frozen_key`)."""
        key = net.frozen_key()
        r = self._reference
        if r is None or r[0]() is not net or r[1] != key:
            with torch.no_grad():
                feats = net.encode(self.identity) if feats is None else feats
                r = (weakref.ref(net), key, self._raw(net, feats, start=True))
            self._reference = r
        return r[2]

    def decode(self, net: StyleNet, feats=None) -> Decoded:
        """Stylized textures and offsets: the network's raw outputs minus its
        :meth:`reference`, so a network whose mappers are at their starting weights
        gives exactly the original avatar (zero albedo change, zero offsets)."""
        feats = net.encode(self.identity) if feats is None else feats
        ref = self.reference(net, feats)
        raw = self._raw(net, feats)
        delta = dilate_maps(raw["delta"] - ref["delta"], self.mask_nchw)  # seams: no untrained off-chart texels
        albedo = apply_albedo(self.base_albedo, delta)
        neutral = torch.tanh(raw["neutral"] - ref["neutral"]) * (net.cfg.max_offset_frac * self.head_size)
        V = neutral.shape[0]
        bs = neutral.new_zeros(self.K, V, 3)
        if raw["bs"] is not None:
            Vm = len(self.moving)
            t = torch.tanh(raw["bs"] - ref["bs"]).reshape(Vm, self.K, 3).permute(1, 0, 2)  # [K,Vm,3]
            bs = bs.index_copy(1, self.moving, (t * (net.cfg.bs_offset_frac * self.bs_norm_moving)).to(bs.dtype))
        return Decoded(albedo=albedo, delta=delta, neutral=neutral, bs_offsets=bs)

    def offset_regularizers(self, dec: Decoded, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(:func:`losses.offset_magnitude`, :func:`losses.laplacian_loss`) of the stacked
        offsets ``[neutral; bs_offsets]`` ``[K+1,V,3]``: the same values, with the
        blendshape part computed only where it can be non-zero (moving vertices and
        their neighbours)."""
        V, K = dec.neutral.shape[0], self.K
        l_off = offset_magnitude(dec.neutral, scale)
        l_lap = laplacian_loss(dec.neutral[None], self.edges, V, scale)
        if K == 0 or not len(self.moving):
            return (l_off, l_lap) if K == 0 else (l_off / (K + 1), l_lap / (K + 1))
        Vm, U = len(self.moving), len(self.lap_vertices)
        b_off = offset_magnitude(dec.bs_offsets[:, self.moving], scale)
        b_lap = laplacian_loss(dec.bs_offsets[:, self.lap_vertices], self.lap_edges, U, scale,
                               degree=self.lap_degree)
        return ((l_off * V + b_off * K * Vm) / ((K + 1) * V), (l_lap * V + b_lap * K * U) / ((K + 1) * V))

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

    def render(self, verts, textures, cameras, size, passes, background=None, antialias: bool = False,
               lights=None) -> dict:
        """Render ``verts`` ``[B,V,3]`` with ``textures`` (linear ``[H,W,3]`` per texture set)
        from B ``cameras`` at ``size`` (int: square, or (W,H)) -> {pass: [B,H,W,C]}.
        ``antialias``: analytic coverage at outlines (gradients reach the silhouette; colour
        passes over ``background``, black by default, i.e. premultiplied by the alpha pass).
        ``lights``: instead of the context's own (:class:`backend.render.Lights`)."""
        wh = (int(size), int(size)) if isinstance(size, (int, np.integer)) else tuple(size)
        s = replace(self.render_settings, size=wh, passes=tuple(passes), background=background, antialias=antialias,
                    lights=lights or self.render_settings.lights)
        return self.render_fn(verts, self.faces, self.uvs, self.uv_faces, list(textures), self.face_material,
                              list(cameras), settings=s)


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
