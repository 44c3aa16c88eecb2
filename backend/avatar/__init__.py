"""Avatars on the backend: the parametric sample, glTF/OBJ import and GLB export.

``AvatarData`` (shared/avatar.py) is the one avatar type everywhere; this
package builds and reads/writes it.
"""

from .params import AvatarParams, random_params  # noqa: F401
from .sample import sample_avatar  # noqa: F401


def load_avatar(path, **kw):
    """Load a .glb/.gltf/.obj file as AvatarData (see :mod:`backend.avatar.io`)."""
    from .io import load_avatar as _load
    return _load(path, **kw)


def save_glb(avatar, path, **kw):
    """Write AvatarData as a GLB (see :mod:`backend.avatar.gltf_io`)."""
    from .gltf_io import save_glb as _save
    return _save(avatar, path, **kw)
