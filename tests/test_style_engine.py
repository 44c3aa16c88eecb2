"""The stylize run end to end: result shapes and orders, image guidance,
written outputs, the stylized GLB re-imported with its morph targets, and the
`metamorph stylize` command (test guidance model, tiny resolutions)."""

import json
import re

import numpy as np
import pytest

from shared.avatar import content_hash
from shared.stylize import StyleTerm, StylizeRequest
from backend.style import bake
from backend.style.engine import run_stylize
from backend.style.rig import default_rig, turntable
from backend.style.testing import tiny_avatar



OV = dict(resolution=32, width=16, render_size=48)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("style_cache")


def request(av, terms, **kw):
    kw.setdefault("cameras", turntable(av.vertices, 3, (0.0,), 360.0, resolution=64))
    kw.setdefault("frames", [0.0, 2.0])
    return StylizeRequest("local", terms, guidance="test-tiny", texture_size=kw.pop("texture_size", 48),
                          pass_resolution=kw.pop("pass_resolution", 40), **kw)


def test_result_has_the_contract_shapes_orders_and_labels(cache):
    av = tiny_avatar()
    h0 = content_hash(av)
    v0 = av.vertices.copy()
    req = request(av, [StyleTerm("text", 1.0, "a bronze statue")], steps=4)
    res = run_stylize(av, req, cache_dir=cache, overrides=OV)
    assert content_hash(av) == h0 and np.array_equal(av.vertices, v0)  # original untouched
    V, K = av.num_vertices, len(av.blendshape_names)
    assert [t.shape for t in res.textures] == [(48, 48, 3)] * 2 and all(t.dtype == np.uint8 for t in res.textures)
    assert res.neutral_offsets.shape == (V, 3) and res.neutral_offsets.dtype == np.float32
    assert res.blendshape_offsets.shape == (K, V, 3)
    assert res.body["blendshape_names"] == av.blendshape_names
    assert res.body["texture_sets"] == ["skin", "hair"]
    # Each blendshape's offsets sit where that blendshape moves (order kept) and stay bounded.
    bs_norm = np.linalg.norm(av.blendshapes, axis=-1)
    off_norm = np.linalg.norm(res.blendshape_offsets, axis=-1)
    assert np.all(off_norm <= 0.5 * bs_norm + 1e-7)
    P = res.passes
    assert set(P) == {"color", "albedo", "normal", "depth", "alpha", "original"}
    assert P["color"].shape == (3, 2, 40, 40, 3) and P["color"].dtype == np.uint8
    assert P["normal"].shape == (3, 2, 40, 40, 3) and P["normal"].dtype == np.float16
    assert P["depth"].shape == (3, 2, 40, 40, 1) and P["depth"].dtype == np.float32
    assert P["alpha"].shape == (3, 2, 40, 40, 1) and P["alpha"].dtype == np.uint8
    cover = P["alpha"][..., 0] > 127
    assert cover.mean() > 0.05 and (P["depth"][..., 0][cover] > 0).all()
    md = res.body["metadata"]
    assert md["guidance"] == "test-tiny" and md["guidance_is_test_model"] is True and "warning" in md
    assert md["steps"] == 4 and len(md["losses"]) == 4 and md["init"] == "identity"
    assert 0.5 <= md["expression_dampening"] <= 1.5
    assert md["prompts"][0]["text"] == "a bronze statue"
    # The wire form round-trips.
    body, arrays = res.to_wire()
    assert arrays["blendshape_offsets"].shape == (K, V, 3) and "pass_color" in arrays


def test_image_guided_run_moves_colour_toward_the_style_image(cache):
    av = tiny_avatar()
    img = np.zeros((64, 64, 3), np.uint8)
    img[..., 1], img[..., 2] = 90, 220  # blue style image
    req = request(av, [StyleTerm("image", 1.0, image_index=0)], steps=25, identity=0.0,
                  cameras=default_rig(av.vertices), passes=["color", "original", "alpha"])
    res = run_stylize(av, req, {0: img}, cache_dir=cache, overrides=OV)
    a = res.passes["alpha"][..., 0] > 127
    before = res.passes["original"][a].astype(float).mean(0)
    after = res.passes["color"][a].astype(float).mean(0)
    target = img.reshape(-1, 3).astype(float).mean(0)
    d0, d1 = np.linalg.norm(before - target), np.linalg.norm(after - target)
    assert d1 < d0 - 5.0, (before, after, target)


def test_outputs_and_stylized_glb_reimport_with_morph_targets(cache, tmp_path, monkeypatch):
    from backend.avatar import load_avatar

    av = tiny_avatar()
    req = request(av, [StyleTerm("text", 1.0, "a marble sculpture")], steps=2)
    res = run_stylize(av, req, cache_dir=cache, overrides=OV)
    files = bake.write_outputs(av, res, tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "result.json").read_text())
    assert summary["metadata"]["guidance_is_test_model"] is True
    assert (tmp_path / "out" / "contact_sheet.png").is_file() and len(files["textures"]) == 2
    # The pass file layout of shared.passes (the one the add-on reads): camera 2, frame 1.
    from shared import passes as mm_passes
    cam2 = mm_passes.camera_names(res.body["cameras"])[2]
    assert mm_passes.pass_path(str(tmp_path / "out"), cam2, "color", res.body["frames"][1]) in files["passes"]
    back = load_avatar(files["glb"])
    assert back.blendshape_names == av.blendshape_names
    sty = bake.stylized_avatar(av, res)
    # glTF splits vertices on UV seams: match every imported vertex to its source vertex.
    d = np.linalg.norm(back.vertices[:, None] - sty.vertices[None], axis=-1)
    src = d.argmin(1)
    assert d.min(1).max() < 1e-5
    assert np.allclose(back.blendshapes, sty.blendshapes[:, src], atol=1e-5)
    assert np.abs(res.blendshape_offsets).max() > 0  # the morph targets carry the stylized deltas
    # Written atomically: a failure part-way leaves nothing; a rewrite replaces the folder whole.
    files2 = bake.write_outputs(av, res, tmp_path / "out", write_glb=False)
    assert "glb" not in files2 and not (tmp_path / "out" / "stylized.glb").exists()

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(bake, "contact_sheet", broken)
    with pytest.raises(OSError):
        bake.write_outputs(av, res, tmp_path / "other")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_cli_stylizes_an_imported_glb(tmp_path, cache, capsys):
    from backend.avatar import save_glb
    from backend.cli import main

    save_glb(tiny_avatar(), str(tmp_path / "in.glb"))
    rc = main(["stylize", "--avatar", str(tmp_path / "in.glb"), "--prompt", "a bronze statue", "--guidance",
               "test-tiny", "--steps", "2", "--uv-resolution", "32", "--views", "2",
               "--texture-size", "64", "--pass-resolution", "48", "--cache-dir", str(cache),
               "--out", str(tmp_path / "out")])
    assert rc == 0
    r = json.loads((tmp_path / "out" / "result.json").read_text())
    assert r["metadata"]["steps"] == 2 and r["files"]["glb"] and r["files"]["contact_sheet"]
    # One progress bar per stage with its elapsed<remaining time.
    err = capsys.readouterr().err
    for bar in (r"adapting: 100%.* 2/2 \[\d+:\d+<\d+:\d+",
                r"baking: 100%.* 2/2 \[\d+:\d+<\d+:\d+"):
        assert re.search(bar, err), (bar, err[-2000:])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temporary folder left


def test_cli_stops_with_clear_error_when_guidance_weights_are_missing(tmp_path, capsys):
    from backend.cli import main

    rc = main(["stylize", "--avatar", "sample", "--prompt", "a bronze statue", "--no-download",
               "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 3 and "guidance_unavailable" in err and "--clip-checkpoint" in err
    assert not (tmp_path / "out").exists()  # nothing written from untrained guidance


def test_bad_camera_and_params_are_typed_errors(cache):
    from dataclasses import replace as dc_replace

    from shared.errors import InvalidParams

    av = tiny_avatar()
    cams = turntable(av.vertices, 1, (0.0,), 360.0)
    with pytest.raises(InvalidParams, match="Camera 0"):
        run_stylize(av, request(av, [StyleTerm("text", 1.0, "x")], cameras=[dc_replace(cams[0], lens=0.0)]),
                    cache_dir=cache, overrides=OV)
    with pytest.raises(InvalidParams, match="empty prompt"):
        run_stylize(av, request(av, [StyleTerm("text", 1.0, "  ")]), cache_dir=cache, overrides=OV)
    with pytest.raises(InvalidParams, match="Identity"):
        run_stylize(av, request(av, [StyleTerm("text", 1.0, "x")], identity=2.0), cache_dir=cache, overrides=OV)
