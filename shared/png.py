"""Minimal PNG writer and reader on numpy arrays (no Pillow: Blender's Python loads it).

Writes 8-bit grey/grey+alpha/RGB/RGBA and 16-bit grey, row 0 = top (the wire's and
the file's convention), with optional ``tEXt`` chunks (``text={"key": "value"}``:
Latin-1, keys 1-79 characters) so a file can say where it came from, e.g. that
the test guidance model made it. Reading handles what this module writes plus
Blender's own 8-bit renders (all five PNG filters), enough for side-by-sides.
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np

_SIG = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def _text_chunk(key: str, value: str) -> bytes:
    k = str(key).encode("latin-1", "replace")[:79]
    if not k:
        raise ValueError("A PNG text key must not be empty.")
    return _chunk(b"tEXt", k + b"\x00" + str(value).encode("latin-1", "replace"))


def encode_png(img: np.ndarray, level: int = 3, text: dict | None = None) -> bytes:
    """``img`` [H,W] or [H,W,C] (C in 1..4) uint8, or [H,W(,1)] uint16 -> PNG bytes."""
    a = np.asarray(img)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3:
        raise ValueError(f"Cannot write a PNG from {a.dtype} {list(a.shape)}.")
    h, w, c = a.shape
    if a.dtype == np.uint16 and c == 1:
        depth, rows = 16, np.ascontiguousarray(a.astype(">u2")).view(np.uint8).reshape(h, w * 2)
    elif a.dtype == np.uint8 and c in _COLOR_TYPE:
        depth, rows = 8, a.reshape(h, w * c)
    else:
        raise ValueError(f"Cannot write a PNG from {a.dtype} {list(a.shape)}.")
    raw = np.empty((h, rows.shape[1] + 1), np.uint8)
    raw[:, 0] = 0  # filter: none
    raw[:, 1:] = rows
    ihdr = struct.pack(">IIBBBBB", w, h, depth, _COLOR_TYPE[c], 0, 0, 0)
    texts = b"".join(_text_chunk(k, v) for k, v in (text or {}).items())
    return (_SIG + _chunk(b"IHDR", ihdr) + texts + _chunk(b"IDAT", zlib.compress(raw.tobytes(), level))
            + _chunk(b"IEND", b""))


def write_png(path: str, img: np.ndarray, text: dict | None = None) -> None:
    """Write atomically (temporary file beside ``path``, then rename): a failure never
    leaves a half-written PNG."""
    data = encode_png(img, text=text)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _chunks(data: bytes, path: str):
    if data[:8] != _SIG:
        raise ValueError(f"{path} is not a PNG file.")
    pos = 8
    while pos + 8 <= len(data):
        n, tag = struct.unpack(">I4s", data[pos:pos + 8])
        yield tag, data[pos + 8:pos + 8 + n]
        if tag == b"IEND":
            return
        pos += 12 + n


def read_png_text(path: str) -> dict[str, str]:
    """The ``tEXt`` chunks of a PNG file as {key: value}."""
    out = {}
    for tag, body in _chunks(open(path, "rb").read(), path):
        if tag == b"tEXt" and b"\x00" in body:
            k, v = body.split(b"\x00", 1)
            out[k.decode("latin-1")] = v.decode("latin-1")
    return out


def read_png(path: str) -> np.ndarray:
    """PNG file -> [H,W,C] uint8 (8-bit) or uint16 (16-bit), row 0 = top.
    Non-interlaced, non-palette images only."""
    idat, hdr = [], None
    for tag, body in _chunks(open(path, "rb").read(), path):
        if tag == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat.append(body)
    if hdr is None:
        raise ValueError(f"{path}: no PNG header.")
    w, h, depth, ctype, _, _, interlace = hdr
    chans = {0: 1, 4: 2, 2: 3, 6: 4}.get(ctype)
    if chans is None or interlace or depth not in (8, 16):
        raise ValueError(f"{path}: unsupported PNG (colour type {ctype}, depth {depth}).")
    bpp = chans * depth // 8
    stride = w * bpp
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(h, stride + 1)
    out = np.zeros((h, stride), np.int32)
    prev = np.zeros(stride, np.int32)
    for y in range(h):
        ft, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if ft == 0:
            cur = line
        elif ft == 2:
            cur = (line + prev) & 255
        else:
            cur = np.zeros(stride, np.int32)
            for x in range(stride):
                a = cur[x - bpp] if x >= bpp else 0
                b = prev[x]
                c = prev[x - bpp] if x >= bpp else 0
                if ft == 1:
                    p = a
                elif ft == 3:
                    p = (a + b) >> 1
                else:
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[x] = (line[x] + p) & 255
        out[y] = cur
        prev = cur
    px = out.astype(np.uint8)
    if depth == 16:
        return px.reshape(h, w * chans, 2).view(">u2").astype(np.uint16).reshape(h, w, chans)
    return px.reshape(h, w, chans)
