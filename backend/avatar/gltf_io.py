"""glTF import/export entry points, kept where callers have always found them.

The code lives in three modules: :mod:`backend.avatar.gltf_read` (the file,
buffers, accessors, images, references kept inside the file's folder),
:mod:`backend.avatar.gltf_load` (document -> AvatarData, as Blender's importer
builds it) and :mod:`backend.avatar.gltf_save` (AvatarData -> GLB).
"""

from .gltf_load import DEFAULT_FPS, load_glb  # noqa: F401
from .gltf_read import MAX_ELEMENTS  # noqa: F401
from .gltf_save import save_glb  # noqa: F401
