"""Guidance losses and regularizers. Pure functions on tensors.

Embeddings are unit-norm ``[B,D]`` (see :mod:`backend.style.guidance`); every loss
returns a scalar tensor, 0 at its optimum.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def text_loss(img_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """1 - cos(image, text), mean over the batch. ``text_emb`` ``[D]`` or ``[1,D]``."""
    return 1.0 - (img_emb * text_emb.reshape(1, -1)).sum(-1).mean()


def directional_loss(img_emb, orig_img_emb, text_emb, neutral_text_emb) -> torch.Tensor:
    """1 - cos(E(stylized) - E(original), E(text) - E(neutral text)), mean over the batch.

    Asks for the *change* the prompt describes rather than for an image that
    looks like the prompt, which keeps CLIP from pasting the prompt's content.
    """
    d_img = F.normalize(img_emb - orig_img_emb, dim=-1, eps=1e-6)
    d_txt = F.normalize((text_emb - neutral_text_emb).reshape(1, -1), dim=-1, eps=1e-6)
    return 1.0 - (d_img * d_txt).sum(-1).mean()


def image_loss(img_emb: torch.Tensor, ref_emb: torch.Tensor) -> torch.Tensor:
    """1 - cos(image, reference style image embedding ``[D]``/``[1,D]``)."""
    return 1.0 - (img_emb * ref_emb.reshape(1, -1)).sum(-1).mean()


def identity_loss(img_emb: torch.Tensor, orig_img_emb: torch.Tensor) -> torch.Tensor:
    """1 - cos(stylized render, original render of the same view and expression)."""
    return 1.0 - (img_emb * orig_img_emb).sum(-1).mean()


def weighted_mix(terms: list[tuple[float, torch.Tensor]]) -> torch.Tensor:
    """Σ w_i L_i / Σ |w_i| so the mix of style terms stays on the scale of one term."""
    total = sum(abs(float(w)) for w, _ in terms)
    if not terms or total == 0:
        raise ValueError("weighted_mix needs at least one term with a non-zero weight")
    return sum(float(w) * loss for w, loss in terms) / total


def offset_magnitude(offsets: torch.Tensor, scale: float) -> torch.Tensor:
    """Mean squared offset length in units of ``scale`` (metres, e.g. head size).
    ``offsets`` ``[...,V,3]`` metres."""
    return (offsets / scale).pow(2).sum(-1).mean()


def mesh_edges(faces: torch.Tensor) -> torch.Tensor:
    """Unique undirected edges ``[E,2]`` long of triangles ``faces`` ``[F,3]``."""
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], 0)
    e = torch.sort(e, dim=1).values
    return torch.unique(e, dim=0)


def laplacian_loss(offsets: torch.Tensor, edges: torch.Tensor, num_vertices: int, scale: float,
                   degree: torch.Tensor | None = None) -> torch.Tensor:
    """Uniform-Laplacian smoothness of per-vertex offsets ``[...,V,3]`` (metres):
    mean squared difference between each offset and the mean of its neighbours,
    in units of ``scale``. 0 for any constant offset field. ``degree`` ``[V]``: the
    vertices' neighbour counts when ``edges`` is only the part of a mesh that touches
    non-zero offsets (default: counted from ``edges``)."""
    V = num_vertices
    x = offsets / scale
    lead = x.shape[:-2]
    x2 = x.reshape(-1, V, 3)
    i, j = edges[:, 0], edges[:, 1]
    nb_sum = torch.zeros_like(x2)
    nb_sum.index_add_(1, i, x2[:, j])
    nb_sum.index_add_(1, j, x2[:, i])
    if degree is None:
        deg = torch.zeros(V, dtype=x.dtype, device=x.device)
        deg.index_add_(0, i, torch.ones_like(i, dtype=x.dtype))
        deg.index_add_(0, j, torch.ones_like(j, dtype=x.dtype))
    else:
        deg = degree.to(x.dtype)
    lap = x2 - nb_sum / deg.clamp_min(1)[None, :, None]
    return lap.pow(2).sum(-1).mean().reshape(()) if lead else lap.pow(2).sum(-1).mean()


def texture_regularizer(albedo: torch.Tensor, base: torch.Tensor, mask: torch.Tensor | None = None,
                        tv_weight: float = 0.5) -> torch.Tensor:
    """Keeps a stylized UV texture plausible: mean squared departure from the base
    albedo plus total variation (speckle). ``albedo``/``base`` ``[S,H,W,3]`` linear,
    ``mask`` ``[S,H,W,1]`` texels covered by the mesh (others are free)."""
    m = torch.ones_like(albedo[..., :1]) if mask is None else mask
    dev = ((albedo - base).pow(2) * m).sum() / (m.sum() * 3).clamp_min(1)
    tv = ((albedo[:, 1:] - albedo[:, :-1]).abs() * m[:, 1:] * m[:, :-1]).mean() + \
         ((albedo[:, :, 1:] - albedo[:, :, :-1]).abs() * m[:, :, 1:] * m[:, :, :-1]).mean()
    return dev + tv_weight * tv
