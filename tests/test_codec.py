"""Array codec and message validation: round trips for every allowed dtype and
edge shapes, and every rejection path of shared.protocol.decode."""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from shared import PROTOCOL_VERSION, codec, protocol
from shared.errors import BadMessage, TooLarge, VersionMismatch

LIMITS = protocol.Limits()
DTYPES = sorted(codec.ALLOWED_DTYPES)


def roundtrip(arrays: dict, kind: str = "submit", body=None, limits=LIMITS) -> protocol.Message:
    frames = protocol.encode(kind, "req-1", body or {"job": "selfcheck", "params": {}}, arrays)
    # bytes() copies exactly what a socket would carry
    return protocol.decode([bytes(f) for f in frames], limits, from_client=True)


def header_with(descs, **over) -> bytes:
    h = {"v": PROTOCOL_VERSION, "id": "x", "kind": "submit", "body": {"job": "selfcheck"},
         "arrays": descs}
    h.update(over)
    return msgpack.packb(h)


def test_allow_list_is_exactly_the_documented_dtypes():
    assert DTYPES == sorted(["|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<i8",
                             "<f2", "<f4", "<f8"])


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_roundtrip_every_dtype_and_edge_shape(dtype, data):
    dt = codec.ALLOWED_DTYPES[dtype]
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6))
    elements = (st.floats(allow_nan=False, allow_infinity=False, width=dt.itemsize * 8)
                if dt.kind == "f" else None)
    a = data.draw(hnp.arrays(dt, shape, elements=elements))
    out = roundtrip({"a": a}).arrays["a"]
    assert out.dtype == dt and out.shape == a.shape
    np.testing.assert_array_equal(out, a)


@settings(max_examples=40, deadline=None)
@given(a=hnp.arrays(st.sampled_from([np.float32, np.int16, np.uint8, np.float64]),
                    hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=7),
                    elements=st.integers(0, 100)),
       step=st.integers(1, 3))
def test_non_contiguous_input_arrives_equal(a, step):
    views = {"strided": a[::step], "transposed": a.T, "reversed": a[::-1]}
    out = roundtrip(views).arrays
    for k, v in views.items():
        assert out[k].flags.c_contiguous
        np.testing.assert_array_equal(out[k], v)


def test_big_endian_and_native_inputs_travel_little_endian():
    a = np.arange(10, dtype=">f8") / 3
    out = roundtrip({"a": a, "b": np.arange(4, dtype=">i4")}).arrays
    assert out["a"].dtype.str == "<f8" and out["b"].dtype.str == "<i4"
    np.testing.assert_array_equal(out["a"], a)
    np.testing.assert_array_equal(out["b"], [0, 1, 2, 3])


def test_zero_d_and_zero_size_keep_their_shapes():
    out = roundtrip({"s": np.float32(2.5), "e": np.zeros((0, 3), np.int32),
                     "e2": np.zeros((4, 0, 2), np.bool_)}).arrays
    assert out["s"].shape == () and float(out["s"]) == 2.5
    assert out["e"].shape == (0, 3) and out["e2"].shape == (4, 0, 2)


@pytest.mark.parametrize("bad", [np.array([object()]), np.zeros(2, np.complex64),
                                 np.zeros(2, [("x", "<f4"), ("y", "<i4")]), np.zeros(2, "V4"),
                                 np.zeros(2, "datetime64[s]"), np.array(["text"])])
def test_disallowed_dtypes_refused_when_sending(bad):
    with pytest.raises(BadMessage):
        protocol.encode("submit", "x", {"job": "selfcheck"}, {"a": bad})


def test_large_array_zero_copy_over_real_sockets():
    """64 MiB through a real ZeroMQ pair: sent and received without copies, equal."""
    ctx = zmq.Context()
    a_sock, b_sock = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    try:
        port = a_sock.bind_to_random_port("tcp://127.0.0.1")
        b_sock.connect(f"tcp://127.0.0.1:{port}")
        big = np.random.default_rng(0).random((4096, 4096), dtype=np.float32)
        a_sock.send_multipart(protocol.encode("submit", "x", {"job": "selfcheck"}, {"big": big}),
                              copy=False)
        frames = b_sock.recv_multipart(copy=False)
        out = protocol.decode(frames, LIMITS, from_client=True).arrays["big"]
        # a view on the received frame, not a copy
        assert np.shares_memory(out, np.frombuffer(frames[1].buffer, np.uint8))
        np.testing.assert_array_equal(out, big)
    finally:
        a_sock.close(0)
        b_sock.close(0)
        ctx.term()


# --- rejections ------------------------------------------------------------------

def decode_raw(frames, limits=LIMITS):
    return protocol.decode(frames, limits, from_client=True)


@pytest.mark.parametrize("dtype", [">f4", "|O", "<c8", "|V4", "float32", "<M8[s]", 7, None])
def test_disallowed_dtype_in_header_refused(dtype):
    with pytest.raises(BadMessage, match="not allowed"):
        decode_raw([header_with([{"name": "a", "dtype": dtype, "shape": [1]}]), b"\0" * 8])


@pytest.mark.parametrize("shape", [[-1], [1.5], ["3"], [True], [1] * 9, 3, None])
def test_malformed_shapes_refused(shape):
    with pytest.raises(BadMessage, match="shape"):
        decode_raw([header_with([{"name": "a", "dtype": "<f4", "shape": shape}]), b""])


def test_huge_declared_shape_refused_before_allocating():
    huge = [2 ** 40, 2 ** 40, 2 ** 40]
    with pytest.raises(TooLarge) as e:
        decode_raw([header_with([{"name": "a", "dtype": "<f8", "shape": huge}]), b"\0" * 8])
    assert e.value.details["declared_bytes"] == str(math.prod(huge) * 8)
    protocol.encode_error(e.value, "x")  # still fits in an error reply


def test_total_over_limit_refused_even_if_each_array_fits():
    lim = LIMITS.replace(max_message_bytes=1000)
    descs = [{"name": f"a{i}", "dtype": "|u1", "shape": [600]} for i in range(2)]
    with pytest.raises(TooLarge):
        decode_raw([header_with(descs), b"\0" * 600, b"\0" * 600], lim)


def test_frame_length_must_match_header():
    with pytest.raises(BadMessage, match="declares 40 bytes"):
        decode_raw([header_with([{"name": "a", "dtype": "<f4", "shape": [10]}]), b"\0" * 39])


@pytest.mark.parametrize("n_frames", [0, 2])
def test_frame_count_must_match_header(n_frames):
    with pytest.raises(BadMessage, match="describes 1 arrays"):
        decode_raw([header_with([{"name": "a", "dtype": "|u1", "shape": [1]}])] + [b"\0"] * n_frames)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", ["<f2", "<f4", "<f8"])
def test_non_finite_floats_refused(dtype, value):
    a = np.zeros(5, dtype)
    a[3] = value
    with pytest.raises(BadMessage, match="NaN or infinite"):
        decode_raw([header_with([{"name": "a", "dtype": dtype, "shape": [5]}]), a.tobytes()])


def test_bool_bytes_other_than_0_1_refused():
    with pytest.raises(BadMessage, match="bool"):
        decode_raw([header_with([{"name": "a", "dtype": "|b1", "shape": [3]}]), b"\0\1\2"])


def test_duplicate_array_names_refused():
    d = {"name": "a", "dtype": "|u1", "shape": [1]}
    with pytest.raises(BadMessage, match="unique"):
        decode_raw([header_with([d, dict(d)]), b"\0", b"\0"])


def test_wrong_version_is_a_version_mismatch():
    with pytest.raises(VersionMismatch) as e:
        decode_raw([header_with([], v=PROTOCOL_VERSION + 1)])
    assert e.value.details["expected"] == PROTOCOL_VERSION


@pytest.mark.parametrize("frame0", [b"", b"\xc1", b"\x93\x01\x02", msgpack.packb([1, 2]),
                                    msgpack.packb({"v": PROTOCOL_VERSION})[:-1]])
def test_garbage_headers_refused(frame0):
    with pytest.raises(BadMessage):
        decode_raw([frame0])


@pytest.mark.parametrize("over", [{"id": 5}, {"id": "x" * 65}, {"kind": "nope"}, {"kind": "progress"},
                                  {"body": [1]}, {"arrays": {"a": 1}}, {"body": {"job": 3}},
                                  {"body": {"job": "selfcheck", "params": []}}])
def test_wrong_field_types_refused(over):
    with pytest.raises(BadMessage):
        decode_raw([header_with([], **over)])


def test_msgpack_extension_types_refused():
    h = {"v": PROTOCOL_VERSION, "id": "x", "kind": "hello", "body": {"t": msgpack.ExtType(5, b"x")},
         "arrays": []}
    with pytest.raises(BadMessage):
        decode_raw([msgpack.packb(h)])


def test_submit_limits_on_prompts_cameras_and_images():
    lim = LIMITS.replace(max_prompts=2, max_prompt_length=10, max_cameras=1, max_image_side=8)
    too_many = {"job": "stylize", "params": {"terms": [{"text": "a"}] * 3}}
    with pytest.raises(TooLarge, match="style prompts"):
        roundtrip({}, body=too_many, limits=lim)
    with pytest.raises(TooLarge, match="characters"):
        roundtrip({}, body={"job": "stylize", "params": {"terms": [{"text": "x" * 11}]}}, limits=lim)
    with pytest.raises(TooLarge, match="cameras"):
        roundtrip({}, body={"job": "stylize", "params": {"cameras": [{}, {}]}}, limits=lim)
    with pytest.raises(TooLarge, match="pixels per side"):
        roundtrip({"style_image_0": np.zeros((9, 4, 3), np.uint8)},
                  body={"job": "stylize", "params": {}}, limits=lim)


def test_limits_are_data_and_round_trip():
    lim = LIMITS.replace(max_vertices=7)
    d = lim.to_dict()
    assert d["max_vertices"] == 7 and protocol.Limits.from_dict({**d, "future_key": 1}) == lim
    # sized for the transport benchmark avatar
    assert LIMITS.max_vertices >= 50_000 and LIMITS.max_faces >= 100_000
    assert LIMITS.max_blendshapes >= 52 and LIMITS.max_texture_size >= 2048


# --- issue 14.5: headers are bounded while they are built ------------------------------------

def test_header_container_budget_and_lengths():
    many = msgpack.packb([[[]] * 1100 for _ in range(64)])  # ~70k lists in 70 KB
    with pytest.raises(TooLarge, match="lists and maps"):
        codec.unpack_header(many, 1 << 20)
    with pytest.raises(TooLarge, match="items"):
        codec.unpack_header(msgpack.packb(list(range(codec.MAX_CONTAINER_LEN + 1))), 1 << 20)
    # a list claiming more items than the header has bytes is malformed, not large
    with pytest.raises(BadMessage):
        codec.unpack_header(b"\xdd\xff\xff\xff\xff\x90", 1 << 20)
    ok = msgpack.packb({"a": [{"x": []}] * 30_000})
    assert len(codec.unpack_header(ok, 1 << 20)["a"]) == 30_000


def test_peek_id_skips_the_rest_of_a_bomb():
    n = 1_000_000
    frame = (b"\x82" + msgpack.packb("body") + b"\xdd" + n.to_bytes(4, "big") + b"\x90" * n
             + msgpack.packb("id") + msgpack.packb("req-7"))
    assert protocol.peek_id([frame]) == "req-7"
    assert protocol.peek_id([b"\xc1"]) == "" and protocol.peek_id([]) == ""


# --- issue 14.4 / 14.6: params bounds and put_avatar's wire checks -----------------------------

def test_params_bounds_apply_to_every_text_list_and_map():
    lim = LIMITS.replace(max_prompt_length=10, max_list_items=5)
    protocol.check_params_bounds({"name": "x" * 10, "l": [1] * 5, "m": {str(i): i for i in range(5)}}, lim)
    for bad, what in (({"name": "x" * 11}, "characters"), ({"l": [1] * 6}, "items"),
                      ({"m": {str(i): i for i in range(6)}}, "entries"), ({"x" * 11: 1}, "characters"),
                      ({"styles": [["a"]] * 6}, "items")):
        with pytest.raises(TooLarge, match=what):
            protocol.check_params_bounds(bad, lim)


def test_avatar_index_arrays_are_checked_in_their_own_dtype():
    v = np.zeros((4, 3), np.float32)
    body = {"texture_sets": [{"name": "t", "base_color": [1, 1, 1]}]}
    good = {"vertices": v, "uvs": np.zeros((4, 2), np.float32), "faces": np.array([[0, 1, 2]], np.int64),
            "uv_faces": np.array([[0, 1, 2]], np.uint16), "face_material": np.zeros(1, np.int32),
            "texture_0": np.zeros((2, 2, 3), np.uint8)}
    protocol.check_avatar_arrays(body, good, LIMITS)
    from shared.errors import InvalidAvatar

    for name, arr, match in (("faces", np.array([[0, 1, 2 ** 32 + 2]], np.int64), "Triangle indices"),
                             ("faces", np.array([[0, 1, 2.7]], np.float64), "integer indices"),
                             ("uv_faces", np.array([[0, 1, 4]], np.int32), "UV indices"),
                             ("face_material", np.ones(1, np.int32), "Material indices"),
                             ("texture_0", np.zeros((1, 9, 3), np.uint8), "at least 2x2"),
                             ("texture_0", np.zeros((0, 0, 3), np.uint8), "at least 2x2")):
        with pytest.raises(InvalidAvatar, match=match):
            protocol.check_avatar_arrays(body, dict(good, **{name: arr}), LIMITS)
