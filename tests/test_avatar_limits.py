"""File attacks on avatar import and user images (issue 14, items 10 and 11).

References stay inside the file's folder; sizes are checked before work starts,
against the same :class:`shared.protocol.Limits` the server uses. Every file here
is real (written to disk, read by the real loaders).
"""

import base64
import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from backend.avatar import load_avatar
from backend.avatar.images import read_image
from shared.errors import InvalidAvatar, InvalidParams, TooLarge
from shared.protocol import Limits

TRI = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
TRI_UV = np.array([[0, 0], [1, 0], [0, 1]], np.float32)


def _png_bytes(w, h, rgb=(10, 200, 30)):
    bio = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), rgb, np.uint8)).save(bio, format="PNG")
    return bio.getvalue()


def _huge_png(w, h) -> bytes:
    """A valid, fully decodable 1-bit greyscale PNG of w x h black pixels (a few hundred KB
    for 30000^2: zeros compress well), i.e. what a decompression bomb looks like."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    row = b"\x00" * (1 + (w + 7) // 8)
    c = zlib.compressobj(9)
    idat = b"".join(c.compress(row * 1000) for _ in range(h // 1000)) + c.compress(row * (h % 1000)) + c.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def bomb_png():
    return _huge_png(30000, 30000)


def _gltf(folder, *, buffer_uri=None, image=None, image_uri=None, name="a.gltf", index_count=None):
    """A one-triangle .gltf. buffer_uri: where its geometry buffer lives (default a data
    URI); image: PNG bytes embedded as a data URI; image_uri: an external texture."""
    blob = TRI.tobytes() + TRI_UV.tobytes() + np.arange(3, dtype=np.uint32).tobytes()
    if buffer_uri is None:
        uri = "data:application/octet-stream;base64," + base64.b64encode(blob).decode()
    else:
        uri = buffer_uri
    doc = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
           "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "indices": 2,
                                       "material": 0}]}],
           "buffers": [{"byteLength": len(blob), "uri": uri}],
           "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": 36},
                           {"buffer": 0, "byteOffset": 36, "byteLength": 24},
                           {"buffer": 0, "byteOffset": 60, "byteLength": 12}],
           "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
                          "min": [0, 0, 0], "max": [1, 1, 0]},
                         {"bufferView": 1, "componentType": 5126, "count": 3, "type": "VEC2"},
                         {"bufferView": 2, "componentType": 5125, "count": index_count or 3, "type": "SCALAR"}],
           "materials": [{"name": "m", "pbrMetallicRoughness": {}}]}
    if image is not None or image_uri is not None:
        src = image_uri if image_uri is not None else "data:image/png;base64," + base64.b64encode(image).decode()
        doc["images"] = [{"uri": src}]
        doc["textures"] = [{"source": 0}]
        doc["materials"][0]["pbrMetallicRoughness"]["baseColorTexture"] = {"index": 0}
    p = os.path.join(folder, name)
    with open(p, "w") as f:
        json.dump(doc, f)
    return p, blob


# --------------------------------------------------------------------------- item 10: references
def test_gltf_buffer_and_image_references_must_stay_in_the_files_folder(tmp_path):
    inner = tmp_path / "avatar"
    (inner / "tex").mkdir(parents=True)
    _, blob = _gltf(str(inner))
    (tmp_path / "outside.bin").write_bytes(blob)
    (tmp_path / "outside.png").write_bytes(_png_bytes(4, 4, (255, 0, 0)))
    (inner / "tex" / "skin.png").write_bytes(_png_bytes(4, 4, (0, 0, 255)))
    (inner / "geo.bin").write_bytes(blob)

    # inside the folder (a sub-folder, a percent-encoded name) is fine
    p, _ = _gltf(str(inner), buffer_uri="geo%2Ebin", image_uri="tex/skin.png", name="ok.gltf")
    av = load_avatar(p)
    assert (av.texture_sets[0].image == (0, 0, 255)).all()

    bad = {"../outside.bin": "buffer", os.path.join(str(tmp_path), "outside.bin"): "buffer",
           "tex/../../outside.bin": "buffer", "file:///etc/passwd": "buffer", "%2E%2E/outside.bin": "buffer",
           "../outside.png": "image", os.path.join(str(tmp_path), "outside.png"): "image"}
    for uri, kind in bad.items():
        kw = {"buffer_uri": uri} if kind == "buffer" else {"image_uri": uri}
        p, _ = _gltf(str(inner), name="bad.gltf", **kw)
        with pytest.raises(InvalidAvatar) as e:
            load_avatar(p)
        assert "bad.gltf" in e.value.message and uri in e.value.message, uri
        assert "outside the file's folder" in e.value.message and e.value.details["uri"] == uri


def test_gltf_reference_through_a_symlink_out_of_the_folder_is_refused(tmp_path):
    inner = tmp_path / "avatar"
    inner.mkdir()
    _, blob = _gltf(str(inner))
    (tmp_path / "secret.bin").write_bytes(blob)
    os.symlink(tmp_path / "secret.bin", inner / "link.bin")
    p, _ = _gltf(str(inner), buffer_uri="link.bin", name="sym.gltf")
    with pytest.raises(InvalidAvatar, match=r"sym\.gltf.*'link\.bin' leads outside"):
        load_avatar(p)


OBJ = "mtllib {mtl}\nv 0 0 0\nv 1 0 0\nv 1 1 0\nvt 0 0\nvt 1 0\nvt 1 1\nusemtl m\nf 1/1 2/2 3/3\n"


def test_obj_material_library_and_texture_references_must_stay_in_the_files_folder(tmp_path):
    inner = tmp_path / "avatar"
    inner.mkdir()
    Image.fromarray(np.full((4, 4, 3), (255, 0, 0), np.uint8)).save(tmp_path / "outside.png")
    (tmp_path / "outside.mtl").write_text("newmtl m\nKd 1 1 1\nmap_Kd avatar/x.png\n")
    (inner / "a.obj").write_text(OBJ.format(mtl="../outside.mtl"))
    with pytest.raises(InvalidAvatar, match=r"a\.obj.*'\.\./outside\.mtl' leads outside"):
        load_avatar(inner / "a.obj")
    for ref in ("../outside.png", str(tmp_path / "outside.png")):
        (inner / "b.mtl").write_text(f"newmtl m\nKd 1 1 1\nmap_Kd -s 1 1 1 {ref}\n")
        (inner / "b.obj").write_text(OBJ.format(mtl="b.mtl"))
        with pytest.raises(InvalidAvatar) as e:
            load_avatar(inner / "b.obj")
        assert "b.obj" in e.value.message and ref in e.value.message
    # the same texture inside the folder loads
    Image.fromarray(np.full((4, 4, 3), (255, 0, 0), np.uint8)).save(inner / "in.png")
    (inner / "b.mtl").write_text("newmtl m\nKd 1 1 1\nmap_Kd in.png\n")
    av = load_avatar(inner / "b.obj")
    assert (av.texture_sets[0].image == (255, 0, 0)).all()


# --------------------------------------------------------------------------- item 11: sizes
def test_gltf_texture_over_the_limit_is_refused_from_its_header(tmp_path, bomb_png):
    # a 30000x30000 PNG: a typed error, not PIL's DecompressionBombError
    p, _ = _gltf(str(tmp_path), image=bomb_png, name="bomb.gltf")
    with pytest.raises(TooLarge, match=r"bomb\.gltf.*texture.*8192 pixels per side"):
        load_avatar(p)
    (tmp_path / "bomb.png").write_bytes(bomb_png)
    p, _ = _gltf(str(tmp_path), image_uri="bomb.png", name="bomb_ext.gltf")
    with pytest.raises(TooLarge, match=r"bomb_ext\.gltf.*bomb\.png"):
        load_avatar(p)
    # below PIL's bomb bound but over the server's texture limit: named with its size
    p, _ = _gltf(str(tmp_path), image=_png_bytes(100, 60), name="big.gltf")
    with pytest.raises(TooLarge, match=r"big\.gltf.*100x60 pixels, more than the limit of 64"):
        load_avatar(p, limits={"max_texture_size": 64})


def test_gltf_mesh_over_the_server_limits_is_refused_before_decoding(tmp_path):
    lim = Limits()
    # the index accessor declares one triangle more than the server allows (its buffer
    # holds only 3 indices: the declared count alone is enough to refuse)
    p, _ = _gltf(str(tmp_path), name="many.gltf", index_count=3 * (lim.max_faces + 1))
    with pytest.raises(TooLarge, match=rf"many\.gltf.*{lim.max_faces + 1} triangles.*{lim.max_faces}"):
        load_avatar(p)


def _obj_with_faces(path, n_faces):
    head = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\n"
    with open(path, "wb") as f:
        f.write(head)
        line = b"f 1/1 2/2 3/3\n"
        step = 100_000
        for k in range(0, n_faces, step):
            f.write(line * min(step, n_faces - k))
    return path


def test_obj_declaring_more_faces_than_the_server_allows_is_refused_before_parsing(tmp_path):
    lim = Limits()
    p = _obj_with_faces(tmp_path / "many.obj", lim.max_faces + 1)
    with pytest.raises(TooLarge, match=rf"many\.obj.*more than {lim.max_faces} faces"):
        load_avatar(p)
    # explicit limits (what the server passes) apply the same way, to vertices too
    with pytest.raises(TooLarge, match=r"more than 2 vertices"):
        load_avatar(_obj_with_faces(tmp_path / "small.obj", 1), limits={"max_vertices": 2})


def test_obj_texture_over_the_limit_is_refused_from_its_header(tmp_path, bomb_png):
    (tmp_path / "bomb.png").write_bytes(bomb_png)
    (tmp_path / "m.mtl").write_text("newmtl m\nKd 1 1 1\nmap_Kd bomb.png\n")
    (tmp_path / "a.obj").write_text(OBJ.format(mtl="m.mtl"))
    with pytest.raises(TooLarge, match=r"a\.obj.*bomb\.png"):
        load_avatar(tmp_path / "a.obj")


# --------------------------------------------------------------------------- read_image
def test_read_image_applies_exif_orientation_downscales_and_returns_srgb_rgb(tmp_path):
    img = np.zeros((300, 200, 3), np.uint8)
    img[:100] = (255, 0, 0)                      # red on top as stored
    pil = Image.fromarray(img)
    exif = pil.getexif()
    exif[0x0112] = 6                             # "rotate 90 CW to view"
    pil.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    a = read_image(tmp_path / "phone.jpg", 150, purpose="selfie")
    assert a.dtype == np.uint8 and a.shape == (100, 150, 3) and a.flags.c_contiguous
    # upright: the stored top (red) is now on the right
    assert a[50, 140, 0] > 200 and a[50, 140, 1] < 60 and a[50, 10, 0] < 60
    # smaller images are not enlarged; palette + alpha become RGB
    Image.fromarray(np.full((20, 30, 4), (1, 2, 3, 0), np.uint8)).convert("P").save(tmp_path / "p.png")
    b = read_image(tmp_path / "p.png", 512, purpose="style image")
    assert b.shape == (20, 30, 3) and b.dtype == np.uint8
    # 16-bit greyscale is scaled, not clipped
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(tmp_path / "g16.png")
    assert (read_image(tmp_path / "g16.png", 64, purpose="style image") == 255).all()


def test_read_image_refuses_oversized_and_unreadable_files_with_typed_errors(tmp_path, bomb_png):
    (tmp_path / "bomb.png").write_bytes(bomb_png)
    with pytest.raises(TooLarge, match=r"bomb\.png.*style image.*4096 pixels per side"):
        read_image(tmp_path / "bomb.png", 512, purpose="style image")
    # 9000x9000: refused from the header, with its size, before decoding ~240 MB of pixels
    (tmp_path / "big.png").write_bytes(_huge_png(9000, 9000))
    with pytest.raises(TooLarge, match=r"big\.png: the style image is 9000x9000 pixels") as e:
        read_image(tmp_path / "big.png", 512, purpose="style image")
    assert e.value.details["max_side"] == Limits().max_image_side
    # the caller's limits decide (the server's, when it has others)
    (tmp_path / "s.png").write_bytes(_png_bytes(50, 40))
    with pytest.raises(TooLarge, match="50x40"):
        read_image(tmp_path / "s.png", 32, purpose="selfie", limits=Limits(max_image_side=48))
    with pytest.raises(InvalidParams, match=r"missing\.png.*does not exist"):
        read_image(tmp_path / "missing.png", 64, purpose="selfie")
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(InvalidParams, match=r"junk\.png.*not a readable image"):
        read_image(tmp_path / "junk.png", 64, purpose="selfie")
    (tmp_path / "cut.png").write_bytes(_png_bytes(64, 64)[:80])
    with pytest.raises(InvalidParams, match=r"cut\.png.*cannot be decoded"):
        read_image(tmp_path / "cut.png", 64, purpose="selfie")
    with pytest.raises(InvalidParams, match="folder"):
        read_image(tmp_path, 64, purpose="selfie")


@pytest.mark.filterwarnings("ignore::UserWarning")      # PIL warns about the damaged EXIF it skips
def test_damaged_user_images_only_raise_typed_errors(tmp_path):
    """Random byte damage and truncation of a JPEG with EXIF and of a PNG: every outcome is
    an image or InvalidParams/TooLarge naming the file, never another exception."""
    from shared.errors import MetamorphError

    rng = np.random.default_rng(3)
    pil = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    exif = pil.getexif()
    exif[0x0112] = 8
    jpg, png = io.BytesIO(), io.BytesIO()
    pil.save(jpg, format="JPEG", exif=exif)
    pil.save(png, format="PNG")
    p = tmp_path / "damaged.img"
    outcomes = {"read": 0, "refused": 0}
    for data in (jpg.getvalue(), png.getvalue()):
        for _ in range(60):
            d = bytearray(data)
            for _ in range(int(rng.integers(1, 8))):
                d[int(rng.integers(0, min(len(d), 400)))] = int(rng.integers(0, 256))   # headers mostly
            if rng.random() < 0.3:
                d = d[: int(rng.integers(0, len(d)))]
            p.write_bytes(bytes(d))
            try:
                a = read_image(p, 32, purpose="selfie")
                assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3 and max(a.shape[:2]) <= 32
                outcomes["read"] += 1
            except MetamorphError as e:
                assert "damaged.img" in e.message
                outcomes["refused"] += 1
    assert outcomes["refused"] > 10


@pytest.mark.parametrize("shape", [(1, 16, 3), (16, 1, 3)])
def test_a_one_pixel_wide_texture_is_refused_on_the_file_path_as_on_upload(tmp_path, shape):
    """The CLI's file path refuses what ``put_avatar`` refuses (shared.avatar.MIN_TEXTURE_SIDE)."""
    from backend.avatar import save_glb
    from backend.style.testing import tiny_avatar
    from shared.avatar import TextureSet

    av = tiny_avatar()
    av.texture_sets[0] = TextureSet(av.texture_sets[0].name, np.zeros(shape, np.uint8))
    path = tmp_path / "thin.glb"
    save_glb(av, str(path))
    with pytest.raises(InvalidAvatar, match="at least 2x2"):
        load_avatar(str(path))
