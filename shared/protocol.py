"""The Metamorph wire protocol: message kinds, header schema, limits, and the
one validation routine both the client and the server run on every message.

A message is a multipart ZeroMQ message:

    frame 0     msgpack header {"v": PROTOCOL_VERSION, "id": str, "kind": str,
                                "body": map, "arrays": [{"name", "dtype", "shape"}, ...]}
    frame 1..n  one raw frame per entry of "arrays" (C order, little-endian)

Requests go client -> server, replies server -> client. A reply reuses the
request's kind (``hello`` answers ``hello``...) and echoes its ``id``; a failed
request is answered by ``error``. A job streams ``progress`` messages and ends
with one ``result`` or ``error``; all of them carry the submit request's ``id``
and the job's ``job_id`` in the body.

Request bodies (client -> server):
    hello       {client?: str}
    heartbeat   {}
    put_avatar  shared.avatar.to_wire body, arrays per to_wire
    has_avatar  {avatar_id: str}
    submit      {job: str, params: map}, arrays = the job's inputs
    cancel      {job_id: str}
    status      {job_id?: str}

Reply bodies (server -> client):
    hello       {protocol, server_version, versions: {package: version}, device, limits,
                 job_kinds, guidance_models, heartbeat_s, client_timeout_s, curve,
                 max_jobs_per_client, max_queue}
    heartbeat   {time}
    put_avatar  {avatar_id, cached: bool}
    has_avatar  {avatar_id, present: bool}
    submit      {job_id, queue_position}
    cancel      {job_id, state}
    status      {jobs: [{job_id, kind, state, queue_position}], running, queued}
    progress    {job_id, stage, step, total, losses: {name: float}, queue_position}
                stage "queued" (position = jobs ahead), "started", then the handler's stages
                optional array "preview" [h,w,3] uint8 sRGB, row 0 top
    result      {job_id, result: map}, arrays = the job's outputs
    error       {code, message, details, job_id?}  (see shared.errors)

Bounds every message gets before its kind's handler sees it (:func:`decode`): the
header's size, its lists and maps (``codec.MAX_HEADER_CONTAINERS`` in all,
``codec.MAX_CONTAINER_LEN`` each), arrays' declared bytes; for ``submit``, every
text and list of the parameters (:func:`check_params_bounds`); for ``put_avatar``,
index arrays and texture sizes before anything is cast (:func:`check_avatar_arrays`).
Job parameters named ``guidance`` must be a model the server lists in ``hello``.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

import numpy as np

from . import PROTOCOL_VERSION
from . import codec
from .avatar import MIN_TEXTURE_SIDE
from .errors import BadMessage, InvalidAvatar, MetamorphError, TooLarge, VersionMismatch

REQUEST_KINDS = ("hello", "heartbeat", "put_avatar", "has_avatar", "submit", "cancel", "status")
REPLY_KINDS = REQUEST_KINDS + ("progress", "result", "error")
JOB_STATES = ("queued", "running", "done", "failed", "cancelled")

MAX_ID_LENGTH = 64
MAX_PREVIEW_SIDE = 512
MAX_PARAMS_DEPTH = 16  # nesting of lists/maps in job parameters
INDEX_ARRAYS = {"faces": "vertices", "uv_faces": "uvs", "face_material": None}
"""put_avatar arrays that index another (name -> indexed array; None: the texture sets)."""


@dataclass(frozen=True)
class Limits:
    """What one message may hold. Data, not code: the server reports its limits in
    ``hello`` and both sides check every message against them.

    Defaults fit real avatars with room to spare (the transport benchmark's
    50k vertices / 100k triangles / 52 blendshapes / 2048^2 texture is ~50 MB).
    """

    max_vertices: int = 500_000
    max_faces: int = 1_000_000
    max_blendshapes: int = 128
    max_texture_sets: int = 16
    max_texture_size: int = 8192       # pixels, longest side of an avatar texture
    max_image_side: int = 4096         # pixels, any other image (style references, previews)
    max_cameras: int = 64
    max_frames: int = 512
    max_prompts: int = 16
    max_prompt_length: int = 1000      # characters
    max_list_items: int = 65_536       # items in any list or map of job parameters (a floor under
                                       # each contract's own counts; = codec.MAX_CONTAINER_LEN)
    max_arrays: int = 256              # arrays in one message
    max_header_bytes: int = 4 << 20    # msgpack header frame
    max_message_bytes: int = 1 << 30   # all array frames together (also ZMQ MAXMSGSIZE per frame)

    def avatar_limits(self) -> dict:
        """The subset :func:`shared.avatar.validate` understands."""
        return {k: getattr(self, k) for k in ("max_vertices", "max_faces", "max_blendshapes",
                                               "max_texture_size", "max_texture_sets")}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "Limits":
        """Known integer keys only; unknown keys are ignored (newer peers may add some)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in d.items() if k in names})

    def replace(self, **kw) -> "Limits":
        d = self.to_dict()
        d.update(kw)
        return Limits.from_dict(d)


CLIENT_LIMITS = Limits(max_message_bytes=8 << 30, max_arrays=4096)
"""What a client accepts from a server it chose to talk to: results can be
bigger than uploads (render passes for many cameras x frames)."""


@dataclass
class Message:
    """One decoded message. ``arrays`` are zero-copy views of the received frames
    (read-only when the frames were bytes)."""

    kind: str
    id: str
    body: dict = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def job_id(self) -> str | None:
        j = self.body.get("job_id")
        return j if isinstance(j, str) else None


def new_id() -> str:
    return uuid.uuid4().hex


def encode(kind: str, id: str, body: Mapping | None = None,
           arrays: Mapping[str, Any] | None = None) -> list:
    """-> frames ready for ``socket.send_multipart(frames, copy=False)``.

    Arrays are converted to wire form (contiguous, little-endian) without copying
    when they already are; the returned frames reference them.
    """
    descs, frames = codec.encode_arrays(arrays)
    header = {"v": PROTOCOL_VERSION, "id": id, "kind": kind, "body": dict(body or {}),
              "arrays": descs}
    return [codec.pack_header(header), *frames]


def encode_error(err: MetamorphError, id: str = "", job_id: str | None = None) -> list:
    body = err.to_body()
    if job_id is not None:
        body["job_id"] = job_id
    return encode("error", id, body)


PEEK_MAX_BYTES = 64 << 20  # headers up to this size are skimmed for their id (skipping, not building)


def peek_id(frames: list) -> str:
    """Best-effort request id of a message that failed to decode (too large, malformed
    body...), so the error reply can still echo it; "" when unknown. Reads only the
    top-level ``id`` (:func:`codec.peek_field`)."""
    i = codec.peek_field(frames[0], "id", PEEK_MAX_BYTES) if frames else None
    return i if isinstance(i, str) and len(i) <= MAX_ID_LENGTH else ""


def decode(frames: list, limits: Limits, *, from_client: bool) -> Message:
    """Validate and decode one multipart message. The single validation routine:
    the server calls it with ``from_client=True``, the client with ``False``.

    Checks, in order: header size and msgpack, header fields and types, protocol
    version, kind (allowed in this direction), array descriptors and declared
    bytes against ``limits`` (before anything is built), frame lengths, float
    finiteness, then the kind's body schema and its limits.
    Raises :class:`BadMessage`, :class:`VersionMismatch` or :class:`TooLarge`.
    """
    if not frames:
        raise BadMessage("Empty message.")
    h = codec.unpack_header(frames[0], limits.max_header_bytes)
    if not isinstance(h, dict):
        raise BadMessage("The message header must be a msgpack map.")
    v = h.get("v")
    if type(v) is not int or v != PROTOCOL_VERSION:  # True == 1 and 1.0 == 1 in Python
        raise VersionMismatch(
            f"This peer speaks Metamorph protocol {PROTOCOL_VERSION} but the message uses "
            f"{v!r}; update the add-on and the server to the same release.",
            details={"expected": PROTOCOL_VERSION, "got": v if isinstance(v, (int, str)) else None})
    mid, kind, body = h.get("id"), h.get("kind"), h.get("body", {})
    if not isinstance(mid, str) or len(mid) > MAX_ID_LENGTH:
        raise BadMessage(f"Header field 'id' must be a string of at most {MAX_ID_LENGTH} characters.")
    allowed = REQUEST_KINDS if from_client else REPLY_KINDS
    if not isinstance(kind, str) or kind not in allowed:
        raise BadMessage(f"Unknown message kind {kind!r}; expected one of {list(allowed)}.")
    if not isinstance(body, dict):
        raise BadMessage("Header field 'body' must be a map.")
    arrays = codec.decode_arrays(h.get("arrays", []), list(frames[1:]), limits.max_message_bytes,
                                 limits.max_arrays)
    msg = Message(kind=kind, id=mid, body=body, arrays=arrays)
    check_body(msg, limits, from_client=from_client)
    return msg


# --- body schemas -------------------------------------------------------------

def _req(body: dict, key: str, types, what: str, optional: bool = False):
    if key not in body:
        if optional:
            return None
        raise BadMessage(f"'{key}' is missing from the message body; it must be {what}.")
    v = body[key]
    if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise BadMessage(f"'{key}' must be {what}, got a boolean.")
    if not isinstance(v, types):
        raise BadMessage(f"'{key}' must be {what}, got {type(v).__name__}.")
    return v


def _short_str(body: dict, key: str, optional: bool = False, max_len: int = 256):
    v = _req(body, key, str, f"a string of at most {max_len} characters", optional)
    if v is not None and len(v) > max_len:
        raise BadMessage(f"'{key}' is longer than {max_len} characters.")
    return v


# Shared parameter names whose counts have their own limit (a request contract's
# validate checks them precisely; this is the floor every job kind gets).
LIST_PARAM_LIMITS = {"cameras": ("max_cameras", "cameras"), "frames": ("max_frames", "frames"),
                     "terms": ("max_prompts", "style prompts"), "prompts": ("max_prompts", "style prompts")}


def check_params_bounds(params: dict, limits: Limits) -> None:
    """Bounds every job's parameters get before any handler sees them: no text longer
    than ``max_prompt_length``, no list or map longer than ``max_list_items`` (the shared
    names in :data:`LIST_PARAM_LIMITS`: their own limit), nesting at most
    :data:`MAX_PARAMS_DEPTH`. Raises :class:`TooLarge`."""
    for key, (lim_name, what) in LIST_PARAM_LIMITS.items():
        v, lim = params.get(key), getattr(limits, lim_name)
        if isinstance(v, list) and len(v) > lim:
            raise TooLarge(f"The request has {len(v)} {what}, more than this server's limit of "
                           f"{lim}; use fewer.", details={"limit": lim_name, "max": lim})
    # (value, parent entry, key, depth); a field's name is spelled out only for an error
    stack: list = [(params, None, "params", 0)]
    while stack:
        entry = stack.pop()
        v, depth = entry[0], entry[3]
        if isinstance(v, str):
            if len(v) > limits.max_prompt_length:
                raise TooLarge(f"'{_field_name(entry)}' is {len(v)} characters long, more than this server's "
                               f"limit of {limits.max_prompt_length}; shorten it.",
                               details={"limit": "max_prompt_length", "max": limits.max_prompt_length})
            continue
        if not isinstance(v, (list, dict)):
            continue
        if depth >= MAX_PARAMS_DEPTH:
            raise TooLarge(f"'{_field_name(entry)}' is nested more than {MAX_PARAMS_DEPTH} levels deep.",
                           details={"limit": "depth", "max": MAX_PARAMS_DEPTH})
        if len(v) > limits.max_list_items:
            raise TooLarge(f"'{_field_name(entry)}' has {len(v)} {'items' if isinstance(v, list) else 'entries'}, "
                           f"more than this server's limit of {limits.max_list_items}; send fewer (large data "
                           f"travels as arrays).", details={"limit": "max_list_items", "max": limits.max_list_items})
        items = enumerate(v) if isinstance(v, list) else v.items()
        stack.extend((x, entry, k, depth + 1) for k, x in items if type(x) not in _SCALARS)
        if isinstance(v, dict):
            stack.extend((k, entry, "<key>", depth + 1) for k in v)


_SCALARS = {int, float, bool, type(None), bytes}  # nothing to bound inside (bytes: the header's size bounds it)


def _field_name(entry) -> str:
    """``params.terms[0].text`` for a stack entry of :func:`check_params_bounds`."""
    parts = []
    while entry is not None:
        key = entry[2]
        parts.append(f"[{key}]" if isinstance(key, int) else ("" if entry[1] is None else ".") + str(key))
        entry = entry[1]
    return "".join(reversed(parts))


def check_avatar_arrays(body: dict, arrays: Mapping[str, np.ndarray], limits: Limits) -> None:
    """Wire-side checks of a ``put_avatar`` before anything is cast or built: index
    arrays are integers within range in their own dtype (an int64 ``2**32 + 2`` or a
    float ``2.7`` would otherwise be cast to a valid-looking index), textures are at
    least :data:`MIN_TEXTURE_SIDE` pixels per side. Raises :class:`InvalidAvatar`."""
    for name, target in INDEX_ARRAYS.items():
        a = arrays.get(name)
        if a is None:
            continue
        if a.dtype.kind not in "iu":
            raise InvalidAvatar(f"'{name}' must hold integer indices, got {a.dtype}; send int32 indices.")
        if target is None:
            n = len(body.get("texture_sets") or [])
        else:
            t = arrays.get(target)
            n = int(t.shape[0]) if t is not None and t.ndim >= 1 else 0
        if a.size and (int(a.min()) < 0 or int(a.max()) >= n):
            what = {"faces": "Triangle indices", "uv_faces": "UV indices",
                    "face_material": "Material indices"}[name]
            raise InvalidAvatar(f"{what} must lie in [0, {n}); found {int(a.min())}..{int(a.max())}.",
                                details={"array": name})
    for name, a in arrays.items():
        if not name.startswith("texture_"):
            continue
        if a.ndim >= 2 and max(a.shape[:2]) > limits.max_texture_size:
            raise TooLarge(f"Texture '{name}' is {a.shape[1]}x{a.shape[0]}, larger than this "
                           f"server's limit of {limits.max_texture_size}; scale it down.")
        if a.ndim < 2 or min(a.shape[:2]) < MIN_TEXTURE_SIDE:
            raise InvalidAvatar(f"Texture '{name}' has shape {list(a.shape)}; a texture must be at least "
                                f"{MIN_TEXTURE_SIDE}x{MIN_TEXTURE_SIDE} pixels.", details={"array": name})


def check_image(name: str, a: np.ndarray, max_side: int) -> None:
    """An image array is [H,W] or [H,W,C] (C in 1..4) no larger than ``max_side``."""
    if a.ndim not in (2, 3) or (a.ndim == 3 and not 1 <= a.shape[2] <= 4):
        raise BadMessage(f"Image '{name}' must have shape [H,W] or [H,W,C] with C <= 4, "
                         f"got {list(a.shape)}.")
    if max(a.shape[:2]) > max_side:
        raise TooLarge(f"Image '{name}' is {a.shape[1]}x{a.shape[0]}, larger than this server's "
                       f"limit of {max_side} pixels per side; scale it down.")


def check_body(msg: Message, limits: Limits, *, from_client: bool) -> None:
    """Per-kind body schema and limits. Raises :class:`BadMessage` / :class:`TooLarge`."""
    b, k = msg.body, msg.kind
    if from_client:
        if k == "hello":
            _short_str(b, "client", optional=True)
        elif k in ("has_avatar",):
            _short_str(b, "avatar_id")
        elif k == "put_avatar":
            sets = _req(b, "texture_sets", list, "a list of texture set descriptions")
            if not all(isinstance(t, dict) for t in sets):
                raise BadMessage("Each texture set must be a map {name, base_color}.")
            names = _req(b, "blendshape_names", list, "a list of names", optional=True) or []
            if not all(isinstance(n, str) and len(n) <= 256 for n in names):
                raise BadMessage("Blendshape names must be strings of at most 256 characters.")
            check_avatar_arrays(b, msg.arrays, limits)
        elif k == "submit":
            _short_str(b, "job", max_len=64)
            params = _req(b, "params", dict, "a map of job parameters", optional=True)
            check_params_bounds(params or {}, limits)
            for name, a in msg.arrays.items():
                if "image" in name:
                    check_image(name, a, limits.max_image_side)
        elif k in ("cancel",):
            _short_str(b, "job_id")
        elif k == "status":
            _short_str(b, "job_id", optional=True)
        return
    # server -> client
    if k in ("progress", "result", "cancel", "submit"):
        _short_str(b, "job_id")
    if k == "progress":
        _req(b, "step", int, "an integer", optional=True)
        _req(b, "total", int, "an integer", optional=True)
        p = msg.arrays.get("preview")
        if p is not None:
            if p.dtype != np.uint8:
                raise BadMessage("A progress preview must be uint8.")
            check_image("preview", p, MAX_PREVIEW_SIDE)
    elif k == "error":
        _short_str(b, "code", max_len=64)
        _req(b, "message", str, "a sentence")
    elif k == "hello":
        _req(b, "limits", dict, "a map of limits")
