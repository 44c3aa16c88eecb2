"""``load_avatar(path)``: pick the reader by file extension, apply the limits and validate."""

from __future__ import annotations

import os

from shared.avatar import AvatarData, validate
from shared.errors import InvalidAvatar, MetamorphError
from shared.protocol import Limits

from .gltf_load import load_glb
from .obj_io import load_obj

SUPPORTED = (".glb", ".gltf", ".obj")


def load_avatar(path, *, limits: dict | None = None, fps: float | None = None) -> AvatarData:
    """Load a .glb/.gltf (with morph targets and animation) or .obj (static) avatar.

    limits: as :func:`shared.avatar.validate` (max_vertices, max_faces, max_blendshapes,
    max_texture_size, max_texture_sets); keys not given take the server's defaults
    (:meth:`shared.protocol.Limits.avatar_limits`), so a file the server would refuse is
    refused here too, from its declared sizes, before its arrays are built.
    Raises InvalidAvatar / TooLarge whose message names the file and the problem.
    """
    path = str(path)
    limits = {**Limits().avatar_limits(), **(limits or {})}
    ext = os.path.splitext(path)[1].lower()
    if ext in (".glb", ".gltf"):
        av = load_glb(path, fps=fps, limits=limits)
    elif ext == ".obj":
        av = load_obj(path, limits=limits)
    else:
        raise InvalidAvatar(f"{path}: unsupported avatar format '{ext or '(none)'}'; use one of "
                            f"{', '.join(SUPPORTED)}.")
    try:
        validate(av, limits)
    except MetamorphError as e:
        raise type(e)(f"{path}: {e.message}", details=e.details) from e
    return av
