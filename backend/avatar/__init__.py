"""Avatars on the backend: the parametric sample, glTF/OBJ import and GLB export.

``AvatarData`` (shared/avatar.py) is the one avatar type everywhere; this
package builds and reads/writes it. Public entry points: :func:`sample_avatar`,
:class:`AvatarParams` / :func:`random_params`, :func:`load_avatar` (.glb/.gltf/.obj),
:func:`save_glb`, and :func:`backend.avatar.images.read_image` for user images.
"""

from .gltf_save import save_glb  # noqa: F401
from .io import load_avatar  # noqa: F401
from .params import AvatarParams, random_params  # noqa: F401
from .sample import sample_avatar  # noqa: F401
