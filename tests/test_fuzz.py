"""Robustness: thousands of malformed messages against a live server subprocess.

Each family of malformed input has the error codes it may get back. Every
message must be answered with a typed error (or, for frames over MAXMSGSIZE,
dropped by libzmq), the server must stay up with bounded memory, and a
well-formed request must still succeed afterwards.

Issue 14's families on top: header amplification and deep parameters (in the
malformed mix), routing-id takeover, a per-client quota flood, guidance-name
growth, and hostile glTF/OBJ files (references outside their folder, a PNG that
declares 30000x30000, an OBJ over the limits).
"""

from __future__ import annotations

import random
import threading
import time
import uuid

import msgpack
import numpy as np
import psutil
import pytest
import zmq

from conftest import start_server
from shared import PROTOCOL_VERSION, avatar, protocol
from shared.errors import ERRORS_BY_CODE, Busy, InvalidParams, ServerUnavailable

MAX_MSG = 4 << 20  # the fuzz server's max_message_bytes (= ZMQ MAXMSGSIZE)
PER_FAMILY = 110
BAD = {"bad_message"}
SIZE = {"bad_message", "too_large"}


def hdr(kind="hello", body=None, arrays=(), **over) -> dict:
    h = {"v": PROTOCOL_VERSION, "id": "fz", "kind": kind, "body": {} if body is None else body,
         "arrays": list(arrays)}
    h.update(over)
    return h


def pack(h) -> bytes:
    return msgpack.packb(h, use_bin_type=True)


def junk(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


# --- families: rng -> (frames, allowed error codes or None = any well-formed reply) ------------

def f_random_bytes(rng):
    return [junk(rng, rng.randint(0, 300))], BAD | {"version_mismatch"}


def f_random_multipart(rng):
    return [junk(rng, rng.randint(0, 100)) for _ in range(rng.randint(2, 6))], BAD | {"version_mismatch"}


def f_not_a_map(rng):
    return [pack(rng.choice([1, -1, "hello", [1, 2, 3], None, 2.5, b"bin", True, [hdr()]]))], BAD


def f_wrong_field_types(rng):
    key = rng.choice(["id", "kind", "body", "arrays"])
    val = rng.choice([None, 5, 2.5, [1], b"x", "y" * 100, True])  # never a map: body must be one
    h = hdr("has_avatar")
    h[key] = val
    return [pack(h)], BAD


def f_missing_fields(rng):
    h = hdr("has_avatar")
    for k in rng.sample(sorted(h), rng.randint(1, 4)):
        del h[k]
    return [pack(h)], BAD | {"version_mismatch"}


def f_wrong_version(rng):
    v = rng.choice([0, 2, 999, -1, "1", None, True, 1.0, [1], PROTOCOL_VERSION + rng.randint(1, 10 ** 6)])
    return [pack(hdr(v=v))], {"version_mismatch"}


def f_unknown_kind(rng):
    kind = rng.choice(["", "HELLO", "progress", "result", "error", "shutdown", "x" * 300,
                       "".join(rng.choices("abcdefgh_", k=rng.randint(1, 20)))])
    return [pack(hdr(kind))], BAD


def f_frame_count_mismatch(rng):
    n_desc = rng.randint(0, 4)
    descs = [{"name": f"a{i}", "dtype": "|u1", "shape": [2]} for i in range(n_desc)]
    n_frames = rng.choice([k for k in range(6) if k != n_desc])
    return [pack(hdr("submit", {"job": "selfcheck"}, descs))] + [b"\0\0"] * n_frames, BAD


def f_frame_length_mismatch(rng):
    dtype = rng.choice(["|u1", "<f4", "<i8", "<f2"])
    shape = [rng.randint(1, 20), rng.randint(1, 5)]
    want = int(np.prod(shape)) * np.dtype(dtype).itemsize
    got = rng.choice([0, want - 1, want + 1, want * 2, rng.randint(0, 500)])
    if got == want:
        got += 3
    return [pack(hdr("submit", {"job": "selfcheck"}, [{"name": "a", "dtype": dtype, "shape": shape}])),
            b"\0" * got], BAD


def f_huge_shapes(rng):
    shape = rng.choice([[2 ** 40], [2 ** 31, 2 ** 31], [2 ** 62, 4], [10 ** 6] * 4,
                        [MAX_MSG + 1], [-5], [2 ** 64 - 1], [1.5e300], [3] * 30])
    return [pack(hdr("submit", {"job": "selfcheck"}, [{"name": "a", "dtype": "|u1", "shape": shape}])),
            b"\0" * 8], SIZE


def f_bad_dtypes(rng):
    dtype = rng.choice([">f4", ">i8", "|O", "<c8", "<c16", "|V8", "<M8[s]", "<U4", "|S3", "float32",
                        "f", "", None, 4, ["<f4"], {"descr": "<f4"}, "<f16", "<u8" + "x"])
    return [pack(hdr("submit", {"job": "selfcheck"}, [{"name": "a", "dtype": dtype, "shape": [2]}])),
            b"\0" * 8], BAD


def f_nan_arrays(rng):
    dtype = rng.choice(["<f2", "<f4", "<f8"])
    a = np.array([rng.random() for _ in range(rng.randint(1, 50))], dtype)
    a[rng.randrange(len(a))] = rng.choice([np.nan, np.inf, -np.inf])
    kind = rng.choice(["submit", "put_avatar"])
    body = {"job": "selfcheck"} if kind == "submit" else {"texture_sets": []}
    return [pack(hdr(kind, body, [{"name": "vertices", "dtype": dtype, "shape": [len(a)]}])),
            a.tobytes()], BAD


def f_truncated_header(rng):
    full = pack(hdr("submit", {"job": "selfcheck", "params": {"steps": 3, "pad": "p" * 50}}))
    return [full[:rng.randint(1, len(full) - 1)]], BAD


def f_bad_params(rng):
    params, codes = rng.choice([
        ({"steps": "three"}, {"invalid_params"}), ({"steps": -4}, {"invalid_params"}),
        ({"steps": 10 ** 12}, {"invalid_params"}), ({"step_delay_s": [1]}, {"invalid_params"}),
        ({"transform": "explode"}, {"invalid_params"}), ({"fail": "yes"}, {"invalid_params"}),
        ({"terms": [{"text": "t"}] * 100}, {"too_large"}),
        ({"terms": [{"text": "z" * 5000}]}, {"too_large"}),
        ({"cameras": [{}] * 1000}, {"too_large"}),
        ({"avatar_id": "0" * 64}, {"unknown_avatar"}), ({"avatar_id": 5}, {"invalid_params"}),
    ])
    job = rng.choice(["selfcheck", "selfcheck", "nope", ""])
    if job != "selfcheck":
        codes = {"invalid_params", "too_large"}
    return [pack(hdr("submit", {"job": job, "params": params}))], codes


def f_unknown_ids(rng):
    kind = rng.choice(["cancel", "status"])
    jid = rng.choice(["", "0" * 32, "x" * 64, "".join(rng.choices("0123456789abcdef", k=32))])
    return [pack(hdr(kind, {"job_id": jid}))], {"unknown_job"}


def f_bad_avatar(rng):
    av = _base_avatar()
    body, arrays = avatar.to_wire(av)
    arrays = dict(arrays)
    what = rng.choice(["drop", "index", "shape", "texture_dtype", "body", "names"])
    codes = {"invalid_avatar"}
    if what == "drop":
        del arrays[rng.choice(["vertices", "faces", "uvs", "texture_0"])]
    elif what == "index":
        arrays["faces"] = arrays["faces"].copy()
        arrays["faces"][0, 0] = rng.choice([-1, 4, 10 ** 6])
    elif what == "shape":
        arrays["vertices"] = np.zeros((4, rng.choice([2, 4])), np.float32)
    elif what == "texture_dtype":
        arrays["texture_0"] = np.zeros((8, 8, 3), np.float32)
    elif what == "names":
        body = dict(body, blendshape_names=rng.choice([[1, 2], ["a", "a"], ["x" * 300], "ab", [None]]))
        codes = {"invalid_avatar", "bad_message"}
    else:
        body = dict(body, texture_sets=rng.choice([5, "x", [{"name": 1}], [{}], [3]]))
        codes = {"invalid_avatar", "bad_message"}
    return protocol.encode("put_avatar", "fz", body, arrays), codes


def f_deep_nesting(rng):
    depth = rng.choice([2000, 10 ** 5])
    nested = b"\x91" * depth + b"\xc0"
    # {"v": 1, "id": <nested>, ...} built by hand: the packer itself refuses such depth
    h = pack({"v": PROTOCOL_VERSION, "kind": "hello"})
    frame = bytes([h[0] + 1]) + h[1:] + pack("id") + nested
    return [frame], SIZE


def f_bit_flips(rng):
    frames = protocol.encode("has_avatar", "fz", {"avatar_id": "a" * 64})
    b = bytearray(frames[0])
    for _ in range(rng.randint(1, 4)):
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    return [bytes(b)], None  # may still be a valid has_avatar: any well-formed reply


def f_bad_bools_and_wrong_array_names(rng):
    if rng.random() < 0.5:
        return [pack(hdr("submit", {"job": "selfcheck"}, [{"name": "m", "dtype": "|b1", "shape": [4]}])),
                bytes([0, 1, rng.randint(2, 255), 0])], BAD
    name = rng.choice(["", None, 5, "n" * 200])
    return [pack(hdr("submit", {"job": "selfcheck"}, [{"name": name, "dtype": "|u1", "shape": [1]}])),
            b"\0"], BAD


def f_amplification(rng):
    """A small header that would build many containers: empty lists/maps in params."""
    n = rng.choice([2_000, 20_000, 60_000])
    item = rng.choice([b"\x90", b"\x80", b"\x91\x90"])
    params = b"\x81" + pack("x") + b"\xdd" + n.to_bytes(4, "big") + item * n
    h = pack({"v": PROTOCOL_VERSION, "id": "fz", "kind": "submit", "arrays": [],
              "body": {"job": "selfcheck"}})
    body_at = h.index(pack("body"))
    # rebuild {"body": {"job": ..., "params": <params>}} by hand: the packer would materialize it
    frame = h[:body_at] + pack("body") + b"\x82" + pack("job") + pack("selfcheck") + pack("params") + params
    return [frame], SIZE


def f_deep_params(rng):
    depth = rng.randint(protocol.MAX_PARAMS_DEPTH + 1, 200)
    x: list = []
    for _ in range(depth):
        x = [x] if rng.random() < 0.5 else {"k": x}
    return [pack(hdr("submit", {"job": "selfcheck", "params": {"x": x}}))], SIZE


FAMILIES = [f_random_bytes, f_random_multipart, f_not_a_map, f_wrong_field_types, f_missing_fields,
            f_wrong_version, f_unknown_kind, f_frame_count_mismatch, f_frame_length_mismatch,
            f_huge_shapes, f_bad_dtypes, f_nan_arrays, f_truncated_header, f_bad_params,
            f_unknown_ids, f_bad_avatar, f_deep_nesting, f_bit_flips, f_bad_bools_and_wrong_array_names,
            f_amplification, f_deep_params]

_AV = None


def _base_avatar():
    global _AV
    if _AV is None:
        v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
        f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int32)
        _AV = avatar.AvatarData(v, f, v[:, :2].copy(), f.copy(), np.zeros(4, np.int32),
                                [avatar.TextureSet("t", np.zeros((8, 8, 3), np.uint8))])
    return _AV


class RssSampler(threading.Thread):
    """Peak resident memory of a process, sampled every 20 ms."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = self.proc.memory_info().rss
        self.done = threading.Event()

    def run(self):
        while not self.done.wait(0.02):
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    sp = start_server("--limit", f"max_message_bytes={MAX_MSG}", "--limit", "max_header_bytes=65536",
                      "--limit", "max_list_items=1000",
                      tmp_path=tmp_path_factory.mktemp("fuzz"))
    yield sp
    sp.stop()


def test_fuzz_thousands_of_malformed_messages(fuzz_server):
    sp = fuzz_server
    rng = random.Random(20261121)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(sp.endpoint)
    sampler = RssSampler(sp.pid)
    baseline = sampler.peak
    sampler.start()
    sent, answered, by_code = 0, 0, {}
    try:
        cases = [(fam.__name__, *fam(rng)) for fam in FAMILIES for _ in range(PER_FAMILY)]
        rng.shuffle(cases)
        for start in range(0, len(cases), 50):  # pipelined: 50 in flight, answered in order
            batch = cases[start:start + 50]
            for _, frames, _ in batch:
                sock.send_multipart(frames, copy=False)
            sent += len(batch)
            for name, frames, codes in batch:
                assert sock.poll(20_000), f"no answer to a {name} message"
                reply = protocol.decode(sock.recv_multipart(copy=False), protocol.CLIENT_LIMITS,
                                        from_client=False)
                answered += 1
                if codes is None:
                    assert reply.kind in ("error", "has_avatar"), name
                    if reply.kind == "error":
                        assert reply.body["code"] in set(ERRORS_BY_CODE) - {"internal"}, reply.body
                        by_code[reply.body["code"]] = by_code.get(reply.body["code"], 0) + 1
                    continue
                assert reply.kind == "error", f"{name} got a {reply.kind} reply: {reply.body}"
                assert reply.id in ("", "fz"), reply.id  # the request id, when it could be read
                code = reply.body["code"]
                assert code in codes, f"{name}: {code} not in {codes}: {reply.body['message']}"
                assert reply.body["message"]  # a sentence for a person
                by_code[code] = by_code.get(code, 0) + 1

        # Frames over MAXMSGSIZE: libzmq drops the connection; no reply, no allocation here.
        for _ in range(3):
            sock.send_multipart([pack(hdr("submit", {"job": "selfcheck"},
                                          [{"name": "a", "dtype": "|u1", "shape": [MAX_MSG + 1]}])),
                                 np.zeros(MAX_MSG + 1, np.uint8)], copy=False)
            sent += 1
            assert not sock.poll(300), "an oversized message was answered instead of dropped"

        assert sp.alive
        # A well-formed request still works (the DEALER reconnected by itself).
        sampler.done.set()
        with sp.client(timeout_s=20) as c:
            c.hello()
            x = np.arange(6, dtype=np.float32)
            jid = c.submit("selfcheck", {"steps": 2}, {"x": x})
            result = c.wait(jid, timeout_s=30)
            np.testing.assert_array_equal(result.arrays["x"], 2 * x + 1)
    finally:
        sampler.done.set()
        sock.close(0)
        ctx.term()
    sampler.join(1)
    peak_mb, base_mb = sampler.peak / 2 ** 20, baseline / 2 ** 20
    print(f"\nfuzz: {sent} malformed messages sent, {answered} answered (typed errors by code: "
          f"{dict(sorted(by_code.items()))}; the rest valid after bit flips), 3 oversized dropped; "
          f"server RSS {base_mb:.0f} MB before, peak {peak_mb:.0f} MB")
    assert sent >= 2000 and answered >= 2000
    assert sp.alive
    assert peak_mb - base_mb < 512, f"server memory grew by {peak_mb - base_mb:.0f} MB"


def test_fuzz_routing_id_takeover(fuzz_server):
    """Intruders presenting victims' routing ids never see or touch the victims' jobs."""
    from test_server_hardening import ask, raw_socket, receive

    victims = []
    for _ in range(4):
        ident = uuid.uuid4().bytes
        s = raw_socket(fuzz_server.endpoint, ident)
        jid = ask(s, "submit", {"job": "selfcheck", "params": {"steps": 2000, "step_delay_s": 0.05}}).body["job_id"]
        victims.append((ident, s, jid))
    intruders = [raw_socket(fuzz_server.endpoint, ident) for ident, _, _ in victims for _ in range(3)]
    try:
        for k, intruder in enumerate(intruders):
            jid = victims[k // 3][2]
            intruder.send_multipart(protocol.encode(random.choice(["status", "cancel"]), "fz", {"job_id": jid}))
        assert all(receive(i, 0.1) == [] for i in intruders)
        for ident, s, jid in victims:
            assert ask(s, "status", {"job_id": jid}).body["jobs"][0]["state"] in ("queued", "running")
            assert ask(s, "cancel", {"job_id": jid}).body["state"] in ("cancelled", "cancelling")
    finally:
        for s in intruders + [v[1] for v in victims]:
            s.close(0)
    assert fuzz_server.alive


def test_fuzz_per_client_quota_flood(fuzz_server):
    with fuzz_server.client() as greedy, fuzz_server.client() as other:
        quota = greedy.hello()["max_jobs_per_client"]
        codes = []
        for _ in range(40):
            try:
                greedy.submit("selfcheck", {"steps": 2000, "step_delay_s": 0.05})
                codes.append("ok")
            except Busy:
                codes.append("busy")
        assert codes.count("ok") == quota and codes.count("busy") == 40 - quota
        theirs = other.submit("selfcheck", {"steps": 1})  # the queue itself is not full
        for row in greedy.status()["jobs"]:
            if row["state"] in ("queued", "running"):
                greedy.cancel(row["job_id"])
        assert other.wait(theirs, timeout_s=60).body["result"]["steps"] == 1


def test_fuzz_guidance_name_growth(fuzz_server):
    proc = psutil.Process(fuzz_server.pid)
    before = proc.memory_info().rss
    with fuzz_server.client() as c:
        c.hello()
        for i in range(200):
            name = random.choice([f"test-tiny:{i}", f"hf-hub:org/model-{i}", f"local-dir:/m/{i}", f"ViT-B-32:tag{i}",
                                  f"/weights/{i}.bin", f"model-{i}"])
            with pytest.raises(InvalidParams):
                c.submit("selfcheck", {"steps": 1, "guidance": name})
        assert c.status()["jobs"] == []
    grown = (proc.memory_info().rss - before) / 2 ** 20
    assert grown < 20, f"200 guidance names grew the server by {grown:.0f} MB"


def test_client_detects_a_killed_server(fuzz_server):
    """Runs last of the tests that use the fuzz server: SIGKILL, no goodbye; the heartbeat notices."""
    with fuzz_server.client(heartbeat_s=0.2, server_timeout_s=1.0) as c:
        c.hello()
        fuzz_server.kill()
        t0 = time.monotonic()
        with pytest.raises(ServerUnavailable, match="No answer from the Metamorph server"):
            while time.monotonic() - t0 < 10:
                c.poll(0.05)
        assert time.monotonic() - t0 < 2.5


# --- the file attacks (issue 14.10 / 14.11): hostile glTF/OBJ files are typed errors ---------------

def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` and whose data is one tiny
    zlib stream: decoding it would allocate width*height bytes; checking it must not."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _gltf(buffer_uri: str, image_uri: str | None) -> dict:
    doc = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
           "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "indices": 2}]}],
           "buffers": [{"uri": buffer_uri, "byteLength": 68}],
           "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": 36},
                           {"buffer": 0, "byteOffset": 36, "byteLength": 24},
                           {"buffer": 0, "byteOffset": 60, "byteLength": 6}],
           "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
                          "min": [0, 0, 0], "max": [1, 1, 0]},
                         {"bufferView": 1, "componentType": 5126, "count": 3, "type": "VEC2"},
                         {"bufferView": 2, "componentType": 5123, "count": 3, "type": "SCALAR"}]}
    if image_uri is not None:
        doc["meshes"][0]["primitives"][0]["material"] = 0
        doc["materials"] = [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}]
        doc["textures"] = [{"source": 0}]
        doc["images"] = [{"uri": image_uri}]
    return doc


def test_fuzz_file_attacks(tmp_path):
    """Every hostile file is refused with a typed error naming it; nothing outside the
    file's folder is read into the avatar, and no image is decoded past the limits."""
    import json

    from shared.errors import MetamorphError

    pytest.importorskip("torch")  # the avatar readers live in the backend
    from backend.avatar.io import load_avatar

    outside, inside = tmp_path / "outside", tmp_path / "model"
    outside.mkdir()
    inside.mkdir()
    geometry = (np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32).tobytes()
                + np.array([[0, 0], [1, 0], [0, 1]], np.float32).tobytes() + np.array([0, 1, 2], np.uint16).tobytes()
                + b"\0\0")
    (outside / "secret.bin").write_bytes(geometry)
    (inside / "mesh.bin").write_bytes(geometry)
    from PIL import Image

    Image.new("RGB", (8, 8), (255, 0, 0)).save(outside / "secret.png")
    Image.new("RGB", (8, 8), (0, 255, 0)).save(inside / "ok.png")
    (inside / "bomb.png").write_bytes(_png_header_only(30_000, 30_000))
    rng = random.Random(1410)
    cases = []
    for buffer_uri in ("../outside/secret.bin", str(outside / "secret.bin"), f"file://{outside}/secret.bin",
                       "..%2Foutside%2Fsecret.bin", "sub/../../outside/secret.bin"):
        cases.append(("buffer " + buffer_uri, _gltf(buffer_uri, None)))
    for image_uri in ("../outside/secret.png", str(outside / "secret.png"), "..\\outside\\secret.png",
                      "bomb.png"):
        cases.append(("image " + image_uri, _gltf("mesh.bin", image_uri)))
    rng.shuffle(cases)
    for i, (what, doc) in enumerate(cases):
        path = inside / f"case{i}.gltf"
        path.write_text(json.dumps(doc))
        with pytest.raises(MetamorphError) as e:
            load_avatar(path)
        assert e.value.code in ("invalid_avatar", "too_large"), (what, e.value.code)
        assert str(path) in e.value.message, (what, e.value.message)
    # the same file with its references inside its folder loads
    good = inside / "good.gltf"
    good.write_text(json.dumps(_gltf("mesh.bin", "ok.png")))
    av = load_avatar(good)
    assert av.num_vertices == 3 and av.texture_sets[0].image[0, 0, 1] == 255
    # an OBJ over the limits is refused from its declared counts, before it is built
    obj = inside / "big.obj"
    obj.write_text("".join(f"v {i} 0 0\n" for i in range(300)) + "vt 0 0\n"
                   + "".join(f"f {i + 1}/1 {i + 2}/1 {i + 3}/1\n" for i in range(298)))
    with pytest.raises(MetamorphError) as e:
        load_avatar(obj, limits={"max_faces": 100})
    assert e.value.code == "too_large"
