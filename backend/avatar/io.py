"""``load_avatar(path)``: pick the reader by file extension and validate."""

from __future__ import annotations

import os

from shared.avatar import AvatarData, validate
from shared.errors import InvalidAvatar, MetamorphError

SUPPORTED = (".glb", ".gltf", ".obj")


def load_avatar(path, *, limits: dict | None = None, fps: float | None = None) -> AvatarData:
    """Load a .glb/.gltf (with morph targets and animation) or .obj (static) avatar.

    limits: as :func:`shared.avatar.validate` (max_vertices, max_faces, ...).
    Raises InvalidAvatar / TooLarge whose message names the file and the problem.
    """
    path = str(path)
    ext = os.path.splitext(path)[1].lower()
    if ext in (".glb", ".gltf"):
        from .gltf_io import load_glb
        av = load_glb(path, fps=fps, limits=limits)
    elif ext == ".obj":
        from .obj_io import load_obj
        av = load_obj(path, limits=limits)
    else:
        raise InvalidAvatar(f"{path}: unsupported avatar format '{ext or '(none)'}'; use one of "
                            f"{', '.join(SUPPORTED)}.")
    try:
        validate(av, limits)
    except MetamorphError as e:
        raise type(e)(f"{path}: {e.message}", details=e.details) from e
    return av
