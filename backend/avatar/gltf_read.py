"""Reading a glTF 2.0 / GLB document: the file, its buffers, accessors and images.

:class:`GltfFile` parses a ``.glb``/``.gltf`` (pygltflib), decodes accessors to
numpy exactly as the glTF spec says (strides, sparse, normalized integers) and
decodes images, all with errors that name the file. Every external reference is
resolved inside the file's own folder (:func:`resolve_uri`): an absolute URI or
one that climbs out with ``../`` is refused, so a file cannot make us read
anything else on the disk. Turning the document into an avatar is
:mod:`backend.avatar.gltf_load`.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import struct
from urllib.parse import unquote

import numpy as np
import pygltflib

from shared.errors import InvalidAvatar, TooLarge
from shared.protocol import Limits

from .images import TEXTURE, decode_image_bytes, open_checked, to_srgb_rgb

# A sanity cap, well above any avatar; larger counts mean a corrupt file.
MAX_ELEMENTS = 50_000_000

# "file:", "http:", "C:" ... (RFC 3986 scheme; a Windows drive letter looks like one too)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
COMPONENT_DTYPES = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32,
                    5126: np.float32}
TYPE_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}


def resolve_uri(folder: str, uri: str, owner: str) -> str:
    """The path of a relative reference ``uri`` inside ``folder`` (a glTF buffer or image,
    an OBJ's ``mtllib`` or texture).

    owner: the referring file, for messages. Raises InvalidAvatar naming the URI when it
    is absolute, has a scheme (``file:``, ``http:``), or leads outside ``folder`` (``../``,
    or a symbolic link pointing out of it).
    """
    raw = uri
    path = unquote(uri).replace("\\", "/")
    if os.path.isabs(path) or path.startswith("/") or _SCHEME.match(path) or "\x00" in path:
        raise InvalidAvatar(f"{owner}: the reference '{raw}' is absolute or names a location outside "
                            f"the file's folder; only paths relative to the file's folder are loaded "
                            f"(move the file beside it).", details={"uri": raw})
    base = os.path.realpath(folder)
    full = os.path.normpath(os.path.join(base, path))
    if os.path.commonpath([base, full]) != base or os.path.commonpath([base, os.path.realpath(full)]) != base:
        raise InvalidAvatar(f"{owner}: the reference '{raw}' leads outside the file's folder; only files "
                            f"inside {folder} are loaded (copy the file beside it).", details={"uri": raw})
    return full


def _data_uri(uri: str, what: str, owner: str) -> bytes:
    try:
        return base64.b64decode(uri.split(",", 1)[1], validate=False)
    except (IndexError, binascii.Error, ValueError) as e:
        raise InvalidAvatar(f"{owner}: {what} has a malformed data URI ({e}).") from e


class GltfFile:
    """A parsed glTF document plus its buffers. ``g`` is the pygltflib document; ``dir``
    the folder every external reference must stay inside."""

    def __init__(self, path, limits: dict | None = None):
        self.path = str(path)
        self.dir = os.path.dirname(os.path.abspath(self.path))
        # textures are size-checked from their headers against this before decoding
        self.image_limits = Limits(max_texture_size=int((limits or {}).get("max_texture_size")
                                                        or Limits().max_texture_size))
        self.node_world: dict[int, np.ndarray] = {}
        try:
            size = os.path.getsize(self.path)
        except OSError as e:
            raise InvalidAvatar(f"{self.path}: cannot read the file ({e.strerror}).") from e
        if size == 0:
            raise InvalidAvatar(f"{self.path}: the file is empty.")
        try:
            with open(self.path, "rb") as f:
                magic = f.read(4)
            if magic == b"glTF":
                self._check_glb_header()
                self.g = pygltflib.GLTF2().load_binary(self.path)
            else:
                self.g = pygltflib.GLTF2().load_json(self.path)
        except InvalidAvatar:
            raise
        except Exception as e:  # pygltflib raises assorted errors on broken files
            raise InvalidAvatar(f"{self.path}: not a readable glTF/GLB file ({type(e).__name__}: {e}).") from e
        if self.g is None:
            raise InvalidAvatar(f"{self.path}: not a readable glTF/GLB file.")
        self._buffers: dict[int, bytes] = {}

    def _check_glb_header(self):
        with open(self.path, "rb") as f:
            data = f.read(20)
            total = os.fstat(f.fileno()).st_size
        if len(data) < 20:
            raise InvalidAvatar(f"{self.path}: truncated GLB (only {len(data)} bytes).")
        _, version, length = struct.unpack_from("<4sII", data, 0)
        if version != 2:
            raise InvalidAvatar(f"{self.path}: GLB version {version}; only glTF 2.0 is supported.")
        if length > total:
            raise InvalidAvatar(f"{self.path}: truncated GLB: the header announces {length} bytes, "
                                f"the file has {total}.")

    def err(self, msg) -> InvalidAvatar:
        return InvalidAvatar(f"{self.path}: {msg}")

    def resolve(self, uri: str) -> str:
        return resolve_uri(self.dir, uri, self.path)

    def buffer(self, i: int) -> bytes:
        if i in self._buffers:
            return self._buffers[i]
        bufs = self.g.buffers or []
        if i is None or i >= len(bufs):
            raise self.err(f"buffer {i} does not exist.")
        b = bufs[i]
        if b.uri is None:
            data = self.g.binary_blob()
            if data is None:
                raise self.err("the GLB binary chunk is missing.")
        elif b.uri.startswith("data:"):
            data = _data_uri(b.uri, f"buffer {i}", self.path)
        else:
            p = self.resolve(b.uri)
            try:
                with open(p, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise self.err(f"external buffer '{b.uri}' cannot be read ({e.strerror}).") from e
        if len(data) < (b.byteLength or 0):
            raise self.err(f"buffer {i} is truncated: {len(data)} of {b.byteLength} bytes present.")
        self._buffers[i] = data
        return data

    def view_bytes(self, vi: int) -> tuple[bytes, int, int, int | None]:
        """(buffer bytes, byte offset, byte length, byte stride) of bufferView ``vi``."""
        views = self.g.bufferViews or []
        if vi is None or vi >= len(views):
            raise self.err(f"bufferView {vi} does not exist.")
        v = views[vi]
        data = self.buffer(v.buffer)
        off = v.byteOffset or 0
        if off + v.byteLength > len(data):
            raise self.err(f"bufferView {vi} reaches past the end of its buffer (truncated file?).")
        return data, off, v.byteLength, v.byteStride

    def count(self, ai: int) -> int:
        """An accessor's element count from the JSON, without decoding it."""
        accs = self.g.accessors or []
        if ai is None or ai >= len(accs):
            raise self.err(f"accessor {ai} does not exist.")
        n = int(accs[ai].count or 0)
        if n > MAX_ELEMENTS:
            raise TooLarge(f"{self.path}: accessor {ai} claims {n} elements, more than the "
                           f"limit of {MAX_ELEMENTS}; the file is corrupt or far too large.")
        return n

    def accessor(self, ai: int) -> np.ndarray:
        """Decode accessor ``ai`` to [count, ncomp] in its component dtype (sparse applied;
        normalized integers mapped to float32 as the glTF spec says)."""
        accs = self.g.accessors or []
        if ai is None or ai >= len(accs):
            raise self.err(f"accessor {ai} does not exist.")
        a = accs[ai]
        if a.componentType not in COMPONENT_DTYPES or a.type not in TYPE_COMPONENTS:
            raise self.err(f"accessor {ai} has an unsupported type {a.type}/{a.componentType}.")
        self.count(ai)                       # the sanity cap on the declared count
        dt = np.dtype(COMPONENT_DTYPES[a.componentType]).newbyteorder("<")
        nc = TYPE_COMPONENTS[a.type]
        if a.bufferView is None:
            out = np.zeros((a.count, nc), dt)
        else:
            data, off, length, stride = self.view_bytes(a.bufferView)
            off += a.byteOffset or 0
            elem = dt.itemsize * nc
            stride = stride or elem
            need = stride * (a.count - 1) + elem if a.count else 0
            if off + need > len(data) or (a.byteOffset or 0) + need > length:
                raise self.err(f"accessor {ai} needs {need} bytes beyond its bufferView (truncated file?).")
            if stride == elem:
                out = np.frombuffer(data, dt, a.count * nc, off).reshape(a.count, nc).copy()
            else:
                raw = np.frombuffer(data, np.uint8, need, off)
                rows = np.lib.stride_tricks.as_strided(raw, (a.count, elem), (stride, 1))
                out = np.ascontiguousarray(rows).view(dt).reshape(a.count, nc).copy()
        sp = a.sparse
        if sp is not None and sp.count:
            idx_dt = np.dtype(COMPONENT_DTYPES[sp.indices.componentType]).newbyteorder("<")
            d, o, _, _ = self.view_bytes(sp.indices.bufferView)
            idx = np.frombuffer(d, idx_dt, sp.count, o + (sp.indices.byteOffset or 0))
            d, o, _, _ = self.view_bytes(sp.values.bufferView)
            vals = np.frombuffer(d, dt, sp.count * nc, o + (sp.values.byteOffset or 0)).reshape(sp.count, nc)
            if idx.max(initial=0) >= a.count:
                raise self.err(f"sparse accessor {ai} indexes past its {a.count} elements.")
            out[idx.astype(np.int64)] = vals
        if a.normalized and dt.kind in "iu":
            info = np.iinfo(dt)
            out = np.maximum(out.astype(np.float32) / np.float32(info.max), np.float32(-1.0))
        return out

    def image(self, tex_index: int) -> np.ndarray | None:
        """The base-colour image of texture ``tex_index`` as ``[H,W,3]`` uint8 sRGB, or None
        when the texture or its source is missing. The size is checked from the image
        header against ``max_texture_size`` before any pixel is decoded (TooLarge)."""
        g = self.g
        if tex_index is None or not g.textures or tex_index >= len(g.textures):
            return None
        src = g.textures[tex_index].source
        if src is None or not g.images or src >= len(g.images):
            return None
        im = g.images[src]
        if im.bufferView is not None:
            d, o, n, _ = self.view_bytes(im.bufferView)
            return decode_image_bytes(d[o:o + n], f"{self.path}: embedded image {src}", self.image_limits)
        if im.uri and im.uri.startswith("data:"):
            raw = _data_uri(im.uri, f"image {src}", self.path)
            return decode_image_bytes(raw, f"{self.path}: data-URI image {src}", self.image_limits)
        if im.uri:
            label = f"{self.path}: texture file '{im.uri}'"
            p = self.resolve(im.uri)
            if not os.path.isfile(p):
                raise self.err(f"texture file '{im.uri}' cannot be read (it does not exist).")
            pil = open_checked(p, label, self.image_limits.max_texture_size, purpose=TEXTURE)
            with pil:
                return to_srgb_rgb(pil, label, purpose=TEXTURE)
        return None
