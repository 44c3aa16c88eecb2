"""The server's avatars: cached by content hash in memory, bounded in count and
bytes, frozen so that no job can modify the avatar other jobs share.
"""

from __future__ import annotations

import collections
import logging

import numpy as np

from shared import avatar as avatar_mod

log = logging.getLogger("metamorph.server")


def avatar_arrays(av: avatar_mod.AvatarData) -> list[np.ndarray]:
    """Every array an avatar holds (geometry, UVs, materials, blendshapes, textures,
    expression track): the one list both its size and its freezing go by."""
    arrays = [av.vertices, av.faces, av.uvs, av.uv_faces, av.face_material, av.blendshapes]
    arrays += [t.image for t in av.texture_sets]
    if av.track is not None:
        arrays += [av.track.frames, av.track.weights]
    return [a for a in arrays if isinstance(a, np.ndarray)]


def avatar_nbytes(av: avatar_mod.AvatarData) -> int:
    """Bytes of memory the avatar's arrays hold."""
    return sum(int(a.nbytes) for a in avatar_arrays(av))


def freeze_avatar(av: avatar_mod.AvatarData) -> None:
    """Make every array of ``av`` read-only (jobs share the cached avatar)."""
    for a in avatar_arrays(av):
        a.flags.writeable = False


class AvatarCache:
    """Avatars by content hash, least recently used evicted first, bounded in count
    and bytes (the newest is always kept). Loop thread only."""

    def __init__(self, max_items: int, max_bytes: int = 4 << 30):
        self.max_items = max(1, int(max_items))
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self._items: collections.OrderedDict[str, avatar_mod.AvatarData] = collections.OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> avatar_mod.AvatarData | None:
        av = self._items.get(key)
        if av is not None:
            self._items.move_to_end(key)
        return av

    def put(self, key: str, av: avatar_mod.AvatarData) -> None:
        if key in self._items:
            self.nbytes -= avatar_nbytes(self._items[key])
        self._items[key] = av
        self._items.move_to_end(key)
        self.nbytes += avatar_nbytes(av)
        while len(self._items) > 1 and (len(self._items) > self.max_items or self.nbytes > self.max_bytes):
            old, gone = self._items.popitem(last=False)
            self.nbytes -= avatar_nbytes(gone)
            log.info("avatar cache full: evicted %s", old[:12])
