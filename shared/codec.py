"""Arrays <-> raw frames, and the msgpack header, with nothing pickled.

An array travels as one raw frame holding its C-ordered little-endian bytes,
described in the header by ``{"name", "dtype", "shape"}``. Only the dtypes in
:data:`ALLOWED_DTYPES` may travel; anything else (object, void, structured,
complex, big-endian on the wire) is refused, so decoding never builds Python
objects from peer-controlled bytes.

Decoding checks, in this order and before any array is built:
the dtype is allowed, the shape is a short list of non-negative ints, the
declared byte count (computed with Python ints, so it cannot overflow) fits the
budget, the frame holds exactly that many bytes. Float arrays must be finite;
bool arrays must hold only 0/1 bytes.

Pure functions; the only dependency besides the standard library is numpy and
msgpack.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import msgpack
import numpy as np

from .errors import BadMessage, TooLarge

# Wire names are numpy's ``dtype.str`` of the little-endian type ("|" for
# single-byte types, whose byte order does not apply).
ALLOWED_DTYPES: dict[str, np.dtype] = {
    np.dtype(t).newbyteorder("<").str: np.dtype(t).newbyteorder("<")
    for t in ("bool", "u1", "i1", "u2", "i2", "u4", "i4", "i8", "f2", "f4", "f8")
}
"""Wire dtype string -> numpy dtype: ``|b1 |u1 |i1 <u2 <i2 <u4 <i4 <i8 <f2 <f4 <f8``."""

MAX_NDIM = 8


def wire_dtype(dtype) -> str:
    """The wire name of ``dtype`` (native or big-endian inputs map to the
    little-endian name). Raises :class:`BadMessage` if the dtype may not travel."""
    dt = np.dtype(dtype)
    if dt.fields is not None or dt.subdtype is not None:
        raise BadMessage(f"Structured/sub-array dtype {dt} cannot be sent; send plain arrays.")
    name = dt.newbyteorder("<").str if dt.byteorder in "<>=" else dt.str
    if name not in ALLOWED_DTYPES:
        raise BadMessage(f"dtype {dt} is not allowed on the wire; use one of "
                         f"{sorted(ALLOWED_DTYPES)}.")
    return name


def wire_array(arr) -> np.ndarray:
    """``arr`` as a C-contiguous little-endian array of an allowed dtype.

    No copy when it already is one (the common case), so large arrays are sent
    zero-copy. Keeps 0-d shapes (``np.ascontiguousarray`` would make them 1-d).
    """
    a = np.asarray(arr)
    dt = ALLOWED_DTYPES[wire_dtype(a.dtype)]
    if a.dtype != dt:
        a = a.astype(dt)
    if not a.flags.c_contiguous:
        a = a.copy(order="C")
    return a


def describe(name: str, arr: np.ndarray) -> dict:
    """Header entry for a wire-ready array (see :func:`wire_array`)."""
    return {"name": name, "dtype": arr.dtype.str, "shape": [int(s) for s in arr.shape]}


def as_frame(arr: np.ndarray) -> memoryview:
    """A flat byte view of a wire-ready array, for ``send_multipart(copy=False)``."""
    return memoryview(arr.reshape(-1).view(np.uint8))


def declared_nbytes(desc: Mapping) -> int:
    """Bytes an array descriptor declares; raises :class:`BadMessage` if malformed.

    Uses Python ints so ``[2**40, 2**40]`` gives a huge number rather than an
    overflow; callers compare it with their budget before allocating anything.
    """
    if not isinstance(desc, Mapping):
        raise BadMessage("Each entry of 'arrays' must be a map {name, dtype, shape}.")
    name, dtype, shape = desc.get("name"), desc.get("dtype"), desc.get("shape")
    if not isinstance(name, str) or not name or len(name) > 128:
        raise BadMessage("An array entry has no valid 'name' (a string of 1..128 characters).")
    if not isinstance(dtype, str) or dtype not in ALLOWED_DTYPES:
        raise BadMessage(f"Array '{name}' has dtype {dtype!r}, which is not allowed; use one of "
                         f"{sorted(ALLOWED_DTYPES)}.", details={"array": name})
    if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise BadMessage(f"Array '{name}' has shape {shape!r}; a shape is a list of at most "
                         f"{MAX_NDIM} non-negative integers.", details={"array": name})
    return math.prod(shape) * ALLOWED_DTYPES[dtype].itemsize


def _frame_buffer(frame) -> memoryview:
    buf = getattr(frame, "buffer", None)  # zmq.Frame received with copy=False
    return memoryview(buf if buf is not None else frame)


def array_from_frame(desc: Mapping, frame) -> np.ndarray:
    """Build the (zero-copy) array a descriptor announces from one frame.

    Raises :class:`BadMessage` when the frame length is not exactly the declared
    byte count, a float array holds NaN/inf, or a bool array holds bytes other
    than 0/1.
    """
    want = declared_nbytes(desc)
    buf = _frame_buffer(frame)
    if buf.nbytes != want:
        raise BadMessage(f"Array '{desc['name']}' declares {want} bytes "
                         f"({desc['dtype']} {desc['shape']}) but its frame holds {buf.nbytes}.",
                         details={"array": desc["name"]})
    dt = ALLOWED_DTYPES[desc["dtype"]]
    flat = np.frombuffer(buf.cast("B") if buf.format != "B" or buf.ndim != 1 else buf, dtype=np.uint8)
    a = flat.view(dt).reshape(desc["shape"])
    check_values(desc["name"], a)
    return a


def check_values(name: str, a: np.ndarray) -> None:
    """Raise :class:`BadMessage` if a float array is not finite or a bool array
    holds bytes other than 0/1."""
    if a.dtype.kind == "f" and a.size and not np.isfinite(a).all():
        raise BadMessage(f"Array '{name}' contains NaN or infinite values; fix the source data.",
                         details={"array": name})
    if a.dtype.kind == "b" and a.size and a.view(np.uint8).max() > 1:
        raise BadMessage(f"Array '{name}' is bool but holds bytes other than 0 and 1.",
                         details={"array": name})


def encode_arrays(arrays: Mapping[str, Any] | None) -> tuple[list[dict], list[memoryview]]:
    """Named arrays -> (header descriptors, frames). Frames are zero-copy views of
    the (wire-ready) arrays, so keep the arrays alive until the send completes
    (pyzmq's ``copy=False`` holds a reference for you)."""
    descs, frames = [], []
    for name, arr in (arrays or {}).items():
        a = wire_array(arr)
        descs.append(describe(str(name), a))
        frames.append(as_frame(a))
    return descs, frames


def decode_arrays(descs: list, frames: list, max_bytes: int, max_arrays: int = 256
                  ) -> dict[str, np.ndarray]:
    """Header descriptors + raw frames -> named arrays, all checks first.

    Raises :class:`TooLarge` when the declared total exceeds ``max_bytes`` (checked
    over all descriptors before building any array), :class:`BadMessage` for any
    mismatch between the header and the frames.
    """
    if not isinstance(descs, list):
        raise BadMessage("Header field 'arrays' must be a list of {name, dtype, shape}.")
    if len(descs) > max_arrays:
        raise TooLarge(f"The message carries {len(descs)} arrays, more than the limit of {max_arrays}.")
    total = 0
    for d in descs:
        total += declared_nbytes(d)
    if total > max_bytes:
        raise TooLarge(f"The message declares {total} bytes of arrays, more than this limit of "
                       f"{max_bytes} bytes; send less data or raise the server's limit.",
                       # as text beyond 2**63: msgpack cannot carry bigger ints
                       details={"declared_bytes": total if total < 2 ** 63 else str(total),
                                "max_bytes": max_bytes})
    names = [d["name"] for d in descs]
    if len(set(names)) != len(names):
        raise BadMessage("Array names in a message must be unique.")
    if len(frames) != len(descs):
        raise BadMessage(f"The header describes {len(descs)} arrays but {len(frames)} array frames "
                         f"followed it.")
    return {d["name"]: array_from_frame(d, f) for d, f in zip(descs, frames)}


def pack_header(header: Mapping) -> bytes:
    """msgpack bytes of a header map (bin for bytes, str for text)."""
    return msgpack.packb(header, use_bin_type=True)


def _no_ext(code, data):
    raise ValueError("msgpack extension types are not allowed")


MAX_HEADER_CONTAINERS = 65_536
"""Lists + maps one header may hold in all. An empty list costs ~60 bytes of memory
for 1 byte of msgpack, so without a bound a 4 MB header of millions of empty lists
costs hundreds of MB; with it a header costs a small multiple of its size."""
MAX_CONTAINER_LEN = 65_536  # items in any one list or map of a header


class _Budget:
    """Counts the lists and maps msgpack builds and stops it once over the budget
    (the hooks run as each container is completed, before the next is built)."""

    def __init__(self, limit: int):
        self.left = limit

    def __call__(self, obj):
        self.left -= 1
        if self.left < 0:
            raise _OverBudget
        return obj


class _OverBudget(Exception):
    pass


def unpack_header(frame, max_bytes: int) -> Any:
    """Unpack a header frame, its size checked first and its structure bounded while it
    is built (:data:`MAX_HEADER_CONTAINERS`, :data:`MAX_CONTAINER_LEN`, msgpack's own
    nesting limit). Raises :class:`TooLarge` or :class:`BadMessage`."""
    buf = _frame_buffer(frame)
    if buf.nbytes > max_bytes:
        raise TooLarge(f"The message header is {buf.nbytes} bytes, more than the limit of {max_bytes}.")
    budget = _Budget(MAX_HEADER_CONTAINERS)
    try:
        # Extension types could build arbitrary objects (timestamps...): refuse them.
        return msgpack.unpackb(buf, raw=False, strict_map_key=True, use_list=True,
                               ext_hook=_no_ext, timestamp=0, list_hook=budget, object_hook=budget,
                               max_str_len=max_bytes, max_bin_len=max_bytes,
                               max_array_len=MAX_CONTAINER_LEN, max_map_len=MAX_CONTAINER_LEN)
    except _OverBudget:
        raise TooLarge(f"The message header holds more than {MAX_HEADER_CONTAINERS} lists and maps; "
                       f"send large data as arrays, not as nested lists.") from None
    except ValueError as e:
        claimed = str(e).split(" exceeds max", 1)
        # msgpack's max_*_len refusal: too large if it could be real, malformed if it claims
        # more items than the header has bytes.
        if len(claimed) == 2 and claimed[0].isdigit() and int(claimed[0]) <= buf.nbytes:
            raise TooLarge(f"A list or map in the message header has more than {MAX_CONTAINER_LEN} "
                           f"items; send large data as arrays.") from None
        raise BadMessage(f"The message header is not valid msgpack ({type(e).__name__}).") from None
    except Exception as e:  # msgpack raises several types (ExtraData, StackError, ValueError...)
        raise BadMessage(f"The message header is not valid msgpack ({type(e).__name__}).") from None


def peek_field(frame, key: str, max_bytes: int) -> Any:
    """The value of top-level ``key`` of a header map without building the rest (the
    other values are skipped, not materialized), or None. For the request id of a
    message that failed to decode."""
    buf = _frame_buffer(frame)
    if buf.nbytes > max_bytes:
        return None
    try:
        u = msgpack.Unpacker(raw=False, strict_map_key=True, ext_hook=_no_ext, timestamp=0,
                             max_buffer_size=max(buf.nbytes, 1), max_array_len=MAX_CONTAINER_LEN,
                             max_map_len=MAX_CONTAINER_LEN)
        u.feed(buf)
        for _ in range(u.read_map_header()):
            if u.unpack() == key:
                v = u.unpack()
                return v if isinstance(v, (str, int, float, bool)) else None
            u.skip()
    except Exception:  # a malformed header has no id to give
        return None
    return None


def total_nbytes(arrays: Iterable[np.ndarray]) -> int:
    return sum(int(a.nbytes) for a in arrays)
