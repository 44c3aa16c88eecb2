"""The ``avatar_from_photo`` job contract: an animatable avatar fitted to a frontal selfie.

Request (``submit`` with kind ``avatar_from_photo``, no avatar needed):
    params  :meth:`PhotoRequest.to_params`:
        face_index   int, -1 = the largest face, else the index in the largest-first order
        imitator     "default" | "test" (the small configuration tests use)
        search       bool, run the discrete search (else plain argmax rounding)
        fit_steps    int, relaxed-fit steps (0 = the configuration's default)
        seed         int
    arrays  ``photo``: [H,W,3] uint8 sRGB, row 0 at the top, upright (apply EXIF orientation
            before sending), longest side <= ``Limits.max_image_side`` (the server's ``hello``).

Result (:class:`PhotoResult`): body keys
    kind            "avatar_from_photo" (self-describing, so a client can import it blindly)
    avatar          :func:`shared.avatar.to_wire` body of the neutral fitted avatar (with its ARKit
                    blendshapes and the default expression track); its arrays are sent as-is
                    (vertices [V,3] float32 m, faces [F,3] int32, uvs, uv_faces, face_material,
                    blendshapes [K,V,3] float32 m, texture_0 [S,S,3] uint8, track_frames, track_weights)
    params          the fitted :class:`backend.avatar.params.AvatarParams` as a dict
    vector          [35] the strict vector (AvatarParams.to_vector layout)
    relaxed_vector  [35] the relaxed vector at the end of the fit (one-hot blocks are softmaxes)
    searched        {asset: choice} after the search; rounded {asset: choice} by argmax
    expression      {ARKit name: weight} fitted to the photo and dropped from the avatar
    figures         landmark error (IOD units), region IoUs, dlib distance, seconds, ...
    notes           list of sentences (e.g. "3 faces found; used the largest (--face 1 picks another).")
    imitator        {"config", "key", "trained_seconds"}
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import validation as V
from .avatar import from_wire
from .errors import InvalidParams
from .stylize import MAX_SEED

JOB_KIND = "avatar_from_photo"
IMITATOR_CONFIGS = ("default", "test")
MIN_EYE_CORNER_PX = 80        # pixels between the eyes' outer corners; smaller faces are refused
MAX_YAW_DEGREES = 30.0        # head turn (backend.face.landmarks.yaw_degrees); more is a profile view
MAX_FACE_INDEX = 31
MAX_FIT_STEPS = 5000
PHOTO_ARRAY = "photo"
WORK_SIDE = 1600              # pixels: larger photos are downscaled to this before the analysis


@dataclass
class PhotoRequest:
    face_index: int = -1
    imitator: str = "default"
    search: bool = True
    fit_steps: int = 0
    seed: int = 0

    def to_params(self) -> dict:
        return {"face_index": int(self.face_index), "imitator": self.imitator, "search": bool(self.search),
                "fit_steps": int(self.fit_steps), "seed": int(self.seed)}

    @classmethod
    def from_params(cls, p) -> "PhotoRequest":
        if not isinstance(p, dict):
            raise InvalidParams("The avatar-from-photo request must be a mapping of parameters.")
        known = {"face_index", "imitator", "search", "fit_steps", "seed"}
        unknown = sorted(set(p) - known)
        if unknown:
            raise InvalidParams(f"Unknown avatar-from-photo parameters {unknown}; known: {sorted(known)}.")
        req = cls(**{k: p[k] for k in known if k in p})
        req.check_fields()
        return req

    def check_fields(self) -> None:
        V.integer("face_index", self.face_index, -1, MAX_FACE_INDEX)
        V.choice("imitator", self.imitator, IMITATOR_CONFIGS)
        if not isinstance(self.search, bool):
            raise InvalidParams(f"'search' must be true or false, got {self.search!r}.")
        V.integer("fit_steps", self.fit_steps, 0, MAX_FIT_STEPS)
        V.integer("seed", self.seed, 0, MAX_SEED)

    def validate(self, limits, arrays: dict) -> np.ndarray:
        """Check the fields and the ``photo`` array against ``limits`` (shared.protocol.Limits);
        returns the photo."""
        self.check_fields()
        if PHOTO_ARRAY not in arrays:
            raise InvalidParams("Send the selfie as the 'photo' array ([H,W,3] uint8 sRGB).")
        return V.image(PHOTO_ARRAY, arrays[PHOTO_ARRAY], limits.max_image_side, min_side=64)


@dataclass
class PhotoResult:
    body: dict
    arrays: dict

    def to_wire(self) -> tuple[dict, dict]:
        return dict(self.body), dict(self.arrays)

    @classmethod
    def from_wire(cls, body: dict, arrays: dict) -> "PhotoResult":
        if body.get("kind") != JOB_KIND or "avatar" not in body:
            raise InvalidParams("This result is not an avatar-from-photo result.")
        return cls(dict(body), dict(arrays))

    def avatar(self):
        """The fitted avatar as :class:`shared.avatar.AvatarData`."""
        return from_wire(self.body["avatar"], self.arrays)
