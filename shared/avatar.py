"""The avatar container shared by the add-on, the wire and the backend.

Plain numpy, no torch, no bpy: the Blender side fills it from a scene, the
backend fills it from glTF/OBJ or the parametric generator, and both compute the
same :func:`content_hash` for the same avatar, which the server caches by.

Layout (Blender conventions):
    vertices      [V,3] float32   object space, metres, Z up
    faces         [F,3] int32     triangles, indices into vertices
    uvs           [T,2] float32   UV coordinates, origin bottom-left
    uv_faces      [F,3] int32     per-corner indices into uvs (seams don't split vertices)
    face_material [F]   int32     index into texture_sets
    texture_sets  list of TextureSet (one per material)
    blendshape_names  K names (ARKit names where the avatar has them)
    blendshapes   [K,V,3] float32 deltas relative to ``vertices``
    track         optional ExpressionTrack: weights per frame for each blendshape

The expression track is animation, not identity: it is excluded from the
content hash so an avatar uploaded once serves any animation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from .errors import InvalidAvatar, TooLarge


MIN_TEXTURE_SIDE = 2  # pixels: a 0x0 or 1xN texture cannot be sampled or stylized

@dataclass
class TextureSet:
    """The triangles of one material and its base-colour image.

    ``image`` is ``[H,W,3]`` uint8 sRGB with row 0 at the top. A material
    without an image gets a flat image of its base colour (see :func:`flat_image`).
    """

    name: str
    image: np.ndarray
    base_color: tuple[float, float, float] = (0.8, 0.8, 0.8)  # linear RGB


@dataclass
class ExpressionTrack:
    """Expression weights over time.

    frames  [N]   float32 scene frame numbers (ascending)
    weights [N,K] float32 one column per entry of ``names``
    """

    frames: np.ndarray
    names: list[str]
    weights: np.ndarray
    fps: float = 24.0


@dataclass
class AvatarData:
    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray
    uv_faces: np.ndarray
    face_material: np.ndarray
    texture_sets: list[TextureSet]
    blendshape_names: list[str] = field(default_factory=list)
    blendshapes: np.ndarray | None = None
    track: ExpressionTrack | None = None
    name: str = "avatar"

    def __post_init__(self):
        self.vertices = np.ascontiguousarray(self.vertices, dtype=np.float32)
        self.faces = np.ascontiguousarray(self.faces, dtype=np.int32)
        self.uvs = np.ascontiguousarray(self.uvs, dtype=np.float32)
        self.uv_faces = np.ascontiguousarray(self.uv_faces, dtype=np.int32)
        self.face_material = np.ascontiguousarray(self.face_material, dtype=np.int32)
        if self.blendshapes is None:
            self.blendshapes = np.zeros((0, len(self.vertices), 3), np.float32)
        self.blendshapes = np.ascontiguousarray(self.blendshapes, dtype=np.float32)

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0,1] -> linear, IEC 61966-2-1."""
    x = np.asarray(x, dtype=np.float32)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Linear values in [0,1] -> sRGB-encoded, IEC 61966-2-1."""
    x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055).astype(np.float32)


def flat_image(base_color_linear, size: int = 4) -> np.ndarray:
    """A ``[size,size,3]`` uint8 sRGB image of one linear colour (materials without images)."""
    rgb = linear_to_srgb(np.asarray(base_color_linear, dtype=np.float32)[:3])
    px = np.round(rgb * 255.0).astype(np.uint8)
    return np.broadcast_to(px, (size, size, 3)).copy()


# ----------------------------------------------------------------------------- point transforms
# The content hash depends on every bit these produce: the backend's glTF/OBJ loaders
# and the add-on's scene extraction both call these, so both sides round the same way.

YUP_TO_ZUP = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], np.float64)
"""[4,4] float64: glTF/OBJ Y-up -> Blender Z-up, (x, y, z) -> (x, -z, y)."""


def apply_affine(M: np.ndarray, p32: np.ndarray) -> np.ndarray:
    """float32 points ``[N,3]`` through a float64 affine matrix ``[4,4]`` (column vectors,
    translation in the last column), computed in float64 and rounded to float32, as
    Blender does for object world matrices. The identity returns an exact copy."""
    if np.array_equal(M, np.eye(4)):
        return np.array(p32, np.float32, copy=True)
    return (np.asarray(p32, np.float64) @ M[:3, :3].T + M[:3, 3]).astype(np.float32)


def yup_to_zup(p: np.ndarray) -> np.ndarray:
    """Y-up file coordinates ``[...,3]`` (glTF, OBJ) -> Z-up Blender coordinates,
    (x, y, z) -> (x, -z, y), float32, as Blender's glTF and OBJ importers convert them."""
    out = np.asarray(p, np.float32)[..., [0, 2, 1]].copy()
    out[..., 1] *= -1
    return out


def zup_to_yup(p: np.ndarray) -> np.ndarray:
    """Inverse of :func:`yup_to_zup`: (x, y, z) -> (x, z, -y), float32 (glTF export)."""
    out = np.asarray(p, np.float32)[..., [0, 2, 1]].copy()
    out[..., 2] *= -1
    return out


def euler_xyz_matrix(deg) -> np.ndarray:
    """Blender XYZ Euler angles ``[...,3]`` (degrees) -> rotation matrices ``[...,3,3]``
    (float64), ``R = Rz @ Ry @ Rx`` as Blender composes ``rotation_mode='XYZ'``."""
    x, y, z = np.moveaxis(np.radians(np.asarray(deg, np.float64)), -1, 0)
    cx, sx, cy, sy, cz, sz = np.cos(x), np.sin(x), np.cos(y), np.sin(y), np.cos(z), np.sin(z)
    return np.stack([np.stack([cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx], -1),
                     np.stack([sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx], -1),
                     np.stack([-sy, cy * sx, cy * cx], -1)], -2)


def zup_rotation_to_yup_quaternion(R: np.ndarray) -> np.ndarray:
    """Rotations ``[N,3,3]`` of Blender's Z-up world -> glTF node rotations ``[N,4]`` (x, y, z, w,
    Y-up: ``C R C^T`` with C = :func:`zup_to_yup`), float32, signs kept continuous from row to
    row so that interpolating neighbouring keys takes the short way."""
    C = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    M = np.einsum("ij,njk,lk->nil", C, np.asarray(R, np.float64).reshape(-1, 3, 3), C)
    # Shepperd's method: divide by the largest of the four components for accuracy.
    q = np.zeros((len(M), 4))
    d = np.stack([M[:, 0, 0], M[:, 1, 1], M[:, 2, 2]], -1)
    for i, m in enumerate(M):
        t = np.trace(m)
        if t > d[i].max():
            r = np.sqrt(1.0 + t) * 2
            q[i] = [(m[2, 1] - m[1, 2]) / r, (m[0, 2] - m[2, 0]) / r, (m[1, 0] - m[0, 1]) / r, r / 4]
        else:
            k = int(np.argmax(d[i]))
            a, b = (k + 1) % 3, (k + 2) % 3
            r = np.sqrt(1.0 + m[k, k] - m[a, a] - m[b, b]) * 2
            q[i, k] = r / 4
            q[i, a] = (m[a, k] + m[k, a]) / r
            q[i, b] = (m[b, k] + m[k, b]) / r
            q[i, 3] = (m[b, a] - m[a, b]) / r
    for i in range(1, len(q)):
        if np.dot(q[i], q[i - 1]) < 0:
            q[i] = -q[i]
    return q.astype(np.float32)


def index_corner_uvs(corner_uvs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-corner UVs ``[3F,2]`` (corners of triangle f at 3f, 3f+1, 3f+2) ->
    (uvs ``[T,2]`` float32, uv_faces ``[F,3]`` int32).

    The canonical indexing: bit-identical UV pairs share one entry, entries in
    order of first use. The Blender extraction and the backend's file loaders
    both index through this function, so equal meshes get equal arrays (and
    equal content hashes) wherever they were read.
    """
    c = np.ascontiguousarray(np.asarray(corner_uvs, np.float32).reshape(-1, 2))
    if len(c) % 3:
        raise InvalidAvatar(f"Per-corner UVs must come in triples (one per triangle corner), got {len(c)}.")
    keys = c.view(np.uint64).reshape(-1)            # both floats' bits in one word: exact equality
    _, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")        # unique entries by first use
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    uvs = c[first[order]]
    return uvs.copy(), rank[inv.reshape(-1)].reshape(-1, 3).astype(np.int32)


def validate(av: AvatarData, limits: dict | None = None) -> None:
    """Raise :class:`InvalidAvatar` / :class:`TooLarge` naming the first problem found.

    ``limits`` keys (all optional): max_vertices, max_faces, max_blendshapes,
    max_texture_size, max_texture_sets.
    """
    limits = limits or {}
    V = av.vertices.shape[0] if av.vertices.ndim == 2 else -1
    if av.vertices.ndim != 2 or av.vertices.shape[1] != 3:
        raise InvalidAvatar(f"vertices must have shape [V,3], got {list(av.vertices.shape)}.")
    if V == 0:
        raise InvalidAvatar("The avatar has no vertices: select a mesh with geometry.")
    if av.faces.ndim != 2 or av.faces.shape[1] != 3 or av.faces.shape[0] == 0:
        raise InvalidAvatar(f"faces must have shape [F,3] with F > 0, got {list(av.faces.shape)}.")
    F = av.faces.shape[0]
    for key, n in (("max_vertices", V), ("max_faces", F),
                   ("max_blendshapes", len(av.blendshape_names)),
                   ("max_texture_sets", len(av.texture_sets))):
        if key in limits and n > limits[key]:
            raise TooLarge(f"The avatar has {n} {key[4:]}, more than this server's limit of "
                           f"{limits[key]}; decimate it or raise the limit on the server.")
    if not np.isfinite(av.vertices).all():
        raise InvalidAvatar("Some vertex positions are NaN or infinite; fix the mesh and try again.")
    if av.faces.min() < 0 or av.faces.max() >= V:
        raise InvalidAvatar(f"Triangle indices must lie in [0, {V}); found "
                            f"{int(av.faces.min())}..{int(av.faces.max())}.")
    if av.uvs.ndim != 2 or av.uvs.shape[1] != 2 or av.uvs.shape[0] == 0:
        raise InvalidAvatar("The avatar has no UV coordinates: unwrap it (UV > Smart UV Project) "
                            "before stylizing.")
    if av.uv_faces.shape != av.faces.shape:
        raise InvalidAvatar(f"uv_faces must have the same shape as faces {list(av.faces.shape)}, "
                            f"got {list(av.uv_faces.shape)}.")
    if av.uv_faces.min() < 0 or av.uv_faces.max() >= av.uvs.shape[0]:
        raise InvalidAvatar("UV indices are out of range of the UV array.")
    if not np.isfinite(av.uvs).all():
        raise InvalidAvatar("Some UV coordinates are NaN or infinite.")
    if len(av.texture_sets) == 0:
        raise InvalidAvatar("The avatar has no texture sets (materials).")
    if av.face_material.shape != (F,):
        raise InvalidAvatar(f"face_material must have shape [{F}], got {list(av.face_material.shape)}.")
    if av.face_material.min() < 0 or av.face_material.max() >= len(av.texture_sets):
        raise InvalidAvatar("Some triangles name a material that has no texture set.")
    for ts in av.texture_sets:
        img = ts.image
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise InvalidAvatar(f"Texture set '{ts.name}' image must be [H,W,3] uint8 sRGB, "
                                f"got {img.dtype} {list(img.shape)}.")
        if min(img.shape[:2]) < MIN_TEXTURE_SIDE:
            raise InvalidAvatar(f"Texture '{ts.name}' is {img.shape[1]}x{img.shape[0]} pixels; a texture needs at "
                                f"least {MIN_TEXTURE_SIDE}x{MIN_TEXTURE_SIDE} to be sampled and stylized.")
        m = limits.get("max_texture_size")
        if m and max(img.shape[:2]) > m:
            raise TooLarge(f"Texture '{ts.name}' is {img.shape[1]}x{img.shape[0]}, larger than "
                           f"this server's limit of {m}; scale it down.")
    K = len(av.blendshape_names)
    if av.blendshapes.shape != (K, V, 3):
        raise InvalidAvatar(f"Blendshape deltas must have shape [{K},{V},3] (one per name, one per "
                            f"vertex), got {list(av.blendshapes.shape)}.")
    if len(set(av.blendshape_names)) != K:
        raise InvalidAvatar("Blendshape names must be unique.")
    if K and not np.isfinite(av.blendshapes).all():
        raise InvalidAvatar("Some blendshape deltas are NaN or infinite.")
    if av.track is not None:
        t = av.track
        if t.weights.shape != (len(t.frames), len(t.names)):
            raise InvalidAvatar("Expression track weights must have shape [frames, names].")
        unknown = [n for n in t.names if n not in av.blendshape_names]
        if unknown:
            raise InvalidAvatar(f"Expression track animates unknown blendshapes: {unknown[:5]}.")
        if not np.isfinite(t.weights).all():
            raise InvalidAvatar("Expression track weights contain NaN or infinite values.")


def content_hash(av: AvatarData) -> str:
    """SHA-256 hex digest of the avatar's identity: geometry, UVs, materials,
    textures and blendshapes (names and deltas). Not the name, not the track.

    Arrays are hashed as little-endian bytes of their canonical dtype together
    with their shapes, so the digest is the same on every platform.
    """
    h = hashlib.sha256()

    def put(tag: str, arr: np.ndarray, dtype):
        a = np.ascontiguousarray(arr, dtype=np.dtype(dtype).newbyteorder("<"))
        h.update(f"{tag}:{a.shape}".encode())
        h.update(a.tobytes())

    put("v", av.vertices, np.float32)
    put("f", av.faces, np.int32)
    put("uv", av.uvs, np.float32)
    put("uvf", av.uv_faces, np.int32)
    put("fm", av.face_material, np.int32)
    for ts in av.texture_sets:
        put("tex", ts.image, np.uint8)
    h.update(("\x00".join(av.blendshape_names)).encode())
    put("bs", av.blendshapes, np.float32)
    return h.hexdigest()


def to_wire(av: AvatarData) -> tuple[dict, dict[str, np.ndarray]]:
    """Split into a msgpack-able body and named arrays (sent as raw frames)."""
    body = {
        "name": av.name,
        "blendshape_names": list(av.blendshape_names),
        "texture_sets": [{"name": t.name, "base_color": list(map(float, t.base_color))}
                         for t in av.texture_sets],
    }
    arrays = {
        "vertices": av.vertices, "faces": av.faces, "uvs": av.uvs,
        "uv_faces": av.uv_faces, "face_material": av.face_material,
        "blendshapes": av.blendshapes,
    }
    for i, t in enumerate(av.texture_sets):
        arrays[f"texture_{i}"] = t.image
    if av.track is not None:
        body["track"] = {"names": list(av.track.names), "fps": float(av.track.fps)}
        arrays["track_frames"] = np.asarray(av.track.frames, np.float32)
        arrays["track_weights"] = np.asarray(av.track.weights, np.float32)
    return body, arrays


def from_wire(body: dict, arrays: dict[str, np.ndarray]) -> AvatarData:
    """Inverse of :func:`to_wire`. Raises InvalidAvatar for missing pieces; call
    :func:`validate` afterwards for the content checks."""
    try:
        sets = [TextureSet(name=str(t["name"]), image=arrays[f"texture_{i}"],
                           base_color=tuple(float(c) for c in t["base_color"]))
                for i, t in enumerate(body["texture_sets"])]
        track = None
        if body.get("track") is not None:
            track = ExpressionTrack(frames=arrays["track_frames"], names=list(body["track"]["names"]),
                                    weights=arrays["track_weights"],
                                    fps=float(body["track"].get("fps", 24.0)))
        return AvatarData(
            vertices=arrays["vertices"], faces=arrays["faces"], uvs=arrays["uvs"],
            uv_faces=arrays["uv_faces"], face_material=arrays["face_material"],
            texture_sets=sets, blendshape_names=list(body.get("blendshape_names", [])),
            blendshapes=arrays.get("blendshapes"), track=track, name=str(body.get("name", "avatar")),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidAvatar(f"The avatar message is incomplete or malformed ({e!r}).") from e
