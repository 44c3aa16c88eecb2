"""An avatar posed by ARKit weights and rendered from the front: the one place the
expression code turns weight vectors into images.

Weights are always ``[B,K]`` over :attr:`Poser.names` (the ARKit names the avatar
has, ARKit order); images are ``[B,H,W,3]`` linear RGB in [0,1], row 0 at the top.
The avatar is only read, never modified.
"""

from __future__ import annotations

import numpy as np
import torch

from shared.arkit import ARKIT_NAMES, match_names
from shared.avatar import AvatarData, linear_to_srgb, srgb_to_linear
from shared.camera import Camera
from shared.errors import InvalidAvatar

from backend.render import Lights, render
from backend.style.rig import head_bounds, turntable

BACKGROUND = (0.55, 0.55, 0.55)  # mid grey: CLIP and the face tracker both see the silhouette


def frontal_cameras(av: AvatarData, views: int = 1, size: int = 224, arc_deg: float = 36.0,
                    margin: float = 0.8) -> list[Camera]:
    """``views`` cameras spread over ``arc_deg`` around the front of the head (one = straight on)."""
    arc = arc_deg if views > 1 else 1e-3
    return turntable(av.vertices, views, (0.0,), arc, resolution=size, margin=margin, blendshapes=av.blendshapes)


class Poser:
    """The avatar as tensors: rest vertices, the ARKit blendshapes it has, textures.

    names      the ARKit names the avatar has (ARKit order); K = len(names)
    mapping    {arkit_name: avatar shape-key name}
    unmatched  the avatar's shape keys that are not ARKit blendshapes
    """

    def __init__(self, av: AvatarData, device="cpu", texture_size: int | None = 512):
        self.avatar = av
        self.device = torch.device(device)
        self.mapping, self.unmatched = match_names(av.blendshape_names)
        self.names = [n for n in ARKIT_NAMES if n in self.mapping]
        if not self.names:
            raise InvalidAvatar(f"The avatar '{av.name}' has no ARKit blendshapes (shape keys such as jawOpen, "
                                f"eyeBlinkLeft or eyeBlink_L); add some or rename them to ARKit names.")
        idx = [av.blendshape_names.index(self.mapping[n]) for n in self.names]
        self.vertices = torch.from_numpy(av.vertices).to(self.device)
        self.deltas = torch.from_numpy(av.blendshapes[idx]).to(self.device)  # [K,V,3]
        self.faces = torch.from_numpy(av.faces).long().to(self.device)
        self.uvs = torch.from_numpy(av.uvs).to(self.device)
        self.uv_faces = torch.from_numpy(av.uv_faces).long().to(self.device)
        self.face_material = torch.from_numpy(av.face_material).long().to(self.device)
        self.textures = [self._texture(ts.image, texture_size) for ts in av.texture_sets]
        self.center, self.radius = head_bounds(av.vertices, av.blendshapes)

    def _texture(self, img: np.ndarray, size: int | None) -> torch.Tensor:
        from PIL import Image

        # The renders are small; a 4k texture would only cost memory and lookup time.
        if size and max(img.shape[:2]) > size:
            img = np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))
        return torch.from_numpy(srgb_to_linear(img.astype(np.float32) / 255.0)).to(self.device)

    @property
    def K(self) -> int:
        return len(self.names)

    def posed(self, weights: torch.Tensor, rotation: torch.Tensor | None = None) -> torch.Tensor:
        """weights [B,K] -> vertices [B,V,3]; ``rotation`` [B,3,3] turns the head about its centre."""
        w = weights.to(self.device, self.deltas.dtype)
        v = self.vertices[None] + torch.einsum("bk,kvc->bvc", w, self.deltas)
        if rotation is not None:
            c = torch.as_tensor(self.center, dtype=v.dtype, device=v.device)
            v = torch.einsum("bij,bvj->bvi", rotation.to(v), v - c) + c
        return v

    def render(self, weights: torch.Tensor, cameras: list[Camera], rotation: torch.Tensor | None = None,
               lights: Lights | None = None, background=BACKGROUND) -> torch.Tensor:
        """Every weight vector from every camera: [B*C,H,W,3] linear (b-major), differentiable in ``weights``."""
        B, C = weights.shape[0], len(cameras)
        v = self.posed(weights, rotation)
        v = v[:, None].expand(B, C, -1, -1).reshape(B * C, -1, 3)
        out = render(v, self.faces, self.uvs, self.uv_faces, self.textures, self.face_material,
                     list(cameras) * B, lights=lights, background=background, passes=("color",))
        return out["color"]


def to_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Linear [...,3] in [0,1] -> sRGB uint8 (what face trackers and image files take)."""
    a = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    return np.round(linear_to_srgb(a) * 255.0).astype(np.uint8)


def dense(names: list[str], weights: dict[str, float]) -> np.ndarray:
    """{arkit_name: w} -> [K] float32 over ``names`` (names not there are dropped)."""
    v = np.zeros(len(names), np.float32)
    for n, w in weights.items():
        if n in names:
            v[names.index(n)] = w
    return v


def sparse(names: list[str], vec, eps: float = 1e-3) -> dict[str, float]:
    """[K] -> {arkit_name: w} of the entries above ``eps`` (rounded for labels and JSON)."""
    return {n: round(float(x), 4) for n, x in zip(names, np.asarray(vec)) if x > eps}
