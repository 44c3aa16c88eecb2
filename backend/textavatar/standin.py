"""A deterministic stand-in for a CLIP model, for verifying the text-avatar algorithms
where real weights cannot be had (tests, CI). NOT a guidance model for real use: it is
labelled ``is_test_model`` and everything made with it says so.

Its image embedding is a fixed linear map of a few statistics of the image (band
luminances, centre colour, centre luminance): ``normalize(M @ stats(image))``. Its text
embedding of a *planted* prompt is the same map of a planted target statistic plus a
large component ``g`` orthogonal to every image embedding (CLIP's modality gap: a text
about a face is first of all "a picture of a face")::

    text(prompt) = normalize(gap * g + M @ target_stats[prompt])

So a prompt planted as "the anchor's statistics, moved a little towards entry j" names
entry j only *relative to the anchor*: the absolute cosine prefers entries near the
anchor, while cos(img - anchor_img, text - neutral_text) recovers j. Differentiable in
the image, so the sculpting stage can be verified with it too.

:class:`SilhouetteStatsEncoder` is the same construction on the subject's outline
(coverage of vertical and horizontal bands against a white background): with it a
shape prompt can be planted as "the outline of a wider head" to verify the geometry half
of sculpting.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F

from shared.avatar import srgb_to_linear

STAT_NAMES = ("bias", "lum_band_top", "lum_band_upper", "lum_band_lower", "lum_band_bottom",
              "lum_band_left", "lum_band_midleft", "lum_band_midright", "lum_band_right",
              "centre_red", "centre_green", "centre_blue", "centre_luminance",
              "centre_left_luminance", "centre_right_luminance", "centre_upper_luminance", "centre_lower_luminance")
STAT_INDEX = {n: i for i, n in enumerate(STAT_NAMES)}
_LUM = (0.2126, 0.7152, 0.0722)


def image_stats(images: torch.Tensor) -> torch.Tensor:
    """``[B,H,W,3]`` linear RGB -> ``[B,len(STAT_NAMES)]``: a constant 1, the mean luminance
    of 4 horizontal then 4 vertical bands, and the mean R, G, B and luminance of the central
    half of the image (where the head is in every rig view). Differentiable."""
    lum = images[..., 0] * _LUM[0] + images[..., 1] * _LUM[1] + images[..., 2] * _LUM[2]  # [B,H,W]
    B, H, W = lum.shape
    rows = torch.stack([c.mean((1, 2)) for c in torch.tensor_split(lum, 4, dim=1)], 1)
    cols = torch.stack([c.mean((1, 2)) for c in torch.tensor_split(lum, 4, dim=2)], 1)
    c = images[:, H // 3:H - H // 3, W // 3:W - W // 3]
    centre = c.mean((1, 2))
    clum = (centre * torch.tensor(_LUM, dtype=images.dtype, device=images.device)).sum(-1, keepdim=True)
    cl = lum[:, H // 3:H - H // 3, W // 3:W - W // 3]
    h, w = cl.shape[1:]
    halves = torch.stack([cl[:, :, :w // 2].mean((1, 2)), cl[:, :, w - w // 2:].mean((1, 2)),
                          cl[:, :h // 2].mean((1, 2)), cl[:, h - h // 2:].mean((1, 2))], 1)
    return torch.cat([torch.ones(B, 1, dtype=images.dtype, device=images.device), rows, cols, centre, clum, halves], 1)


class LinearStatsEncoder:
    """Duck-types :class:`backend.style.guidance.Guidance` (name, is_test_model,
    image_size, device, encode_image, encode_text, encode_image_uint8).

    ``plant(prompt, stats)`` sets the target statistics a prompt names; a prompt planted
    with ``fallback=True`` also serves every prompt that was not planted (e.g. the
    engine's own neutral prompt); without one, such a prompt raises KeyError (the
    stand-in knows no language).
    """

    is_test_model = True
    kind = "linear-stats"
    stat_names = STAT_NAMES

    @staticmethod
    def stats(images: torch.Tensor) -> torch.Tensor:
        return image_stats(images)

    def __init__(self, dim: int = 32, seed: int = 0, gap: float = 3.0, image_size: int = 64, device="cpu"):
        m = len(self.stat_names)
        if dim < m + 1:
            raise ValueError(f"the stand-in needs at least {m + 1} dimensions")
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
        # Image embeddings live in the span of q[:, :m]; g is orthogonal to all of them.
        mix = rng.normal(size=(m, m)) + 2.0 * np.eye(m)
        self.M = torch.tensor(q[:, :m] @ mix, dtype=torch.float32, device=device)  # [D,m]
        self.g = torch.tensor(q[:, m], dtype=torch.float32, device=device)  # [D]
        self.gap = float(gap)
        self.image_size = int(image_size)
        self.device = str(device)
        digest = hashlib.sha256(np.asarray([dim, seed, image_size], np.float64).tobytes()).hexdigest()[:8]
        self.name = f"standin-{self.kind}-{digest}"
        self.targets: dict[str, torch.Tensor] = {}
        self.fallback: str | None = None

    def plant(self, prompt: str, stats, fallback: bool = False) -> None:
        """Make ``prompt`` name the target statistics ``stats`` ``[len(self.stat_names)]``."""
        s = torch.as_tensor(np.asarray(stats, np.float32), device=self.device).reshape(-1)
        if s.shape[0] != len(self.stat_names):
            raise ValueError(f"planted statistics need {len(self.stat_names)} values, got {s.shape[0]}")
        self.targets[prompt] = s
        if fallback:
            self.fallback = prompt

    def embed_stats(self, stats: torch.Tensor) -> torch.Tensor:
        """``[B,m]`` statistics -> ``[B,D]`` unit image embeddings."""
        return F.normalize(stats @ self.M.T, dim=-1)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed_stats(self.stats(images.clamp(0.0, 1.0)))

    def encode_image_uint8(self, image) -> torch.Tensor:
        lin = torch.from_numpy(srgb_to_linear(np.asarray(image)[..., :3].astype(np.float32) / 255.0))
        return self.encode_image(lin[None].to(self.device))

    @torch.no_grad()
    def encode_text(self, prompts) -> torch.Tensor:
        out = []
        for p in prompts:
            p = p if p in self.targets else (self.fallback or p)
            if p not in self.targets:
                raise KeyError(f"the stand-in encoder has no planted target for the prompt {p!r}")
            s = self.targets[p]
            ref = float((s @ self.M.T).norm())  # the gap scales with the image part
            out.append(self.gap * ref * self.g + s @ self.M.T)
        return F.normalize(torch.stack(out), dim=-1)


SILHOUETTE_BANDS = 8
SILHOUETTE_STAT_NAMES = (("bias",) + tuple(f"coverage_column_{i}" for i in range(SILHOUETTE_BANDS))
                         + tuple(f"coverage_row_{i}" for i in range(SILHOUETTE_BANDS)))


def silhouette_stats(images: torch.Tensor, background=(1.0, 1.0, 1.0)) -> torch.Tensor:
    """``[B,H,W,3]`` -> ``[B,len(SILHOUETTE_STAT_NAMES)]``: a constant 1, then the share of
    each of 8 vertical and 8 horizontal bands covered by the subject, the subject being
    the pixels that differ from the known uniform ``background`` colour (a soft threshold,
    so differentiable): the outline's width and height profile whatever the shading."""
    B = images.shape[0]
    bg = torch.as_tensor(background, dtype=images.dtype, device=images.device)
    m = torch.sigmoid(((images - bg).abs().sum(-1) - 0.1) / 0.03)
    cols = torch.stack([c.mean((1, 2)) for c in torch.tensor_split(m, SILHOUETTE_BANDS, dim=2)], 1)
    rows = torch.stack([c.mean((1, 2)) for c in torch.tensor_split(m, SILHOUETTE_BANDS, dim=1)], 1)
    return torch.cat([torch.ones(B, 1, dtype=images.dtype, device=images.device), cols, rows], 1)


class SilhouetteStatsEncoder(LinearStatsEncoder):
    """The stand-in on :func:`silhouette_stats` against a white background: it sees the
    subject's outline (its width and height profile), so a shape prompt can be planted as
    "the outline of a wider head". For renders over white only (sculpt with
    ``backgrounds=("white",)``). NOT a guidance model for real use (``is_test_model``)."""

    kind = "silhouette-stats"
    stat_names = SILHOUETTE_STAT_NAMES

    @staticmethod
    def stats(images: torch.Tensor) -> torch.Tensor:
        return silhouette_stats(images)
