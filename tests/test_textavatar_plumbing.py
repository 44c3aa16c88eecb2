"""Avatar from text end to end with the labelled test guidance model (test-tiny) at tiny
settings: the CLI writes every output atomically and labels it, the server job returns an
importable avatar over real ZeroMQ, bad input gets a typed error and one sentence."""

import json

import numpy as np
import pytest
from PIL import Image

from shared.errors import InvalidParams, TooLarge
from shared.text_avatar import JOB_KIND, AvatarFromTextRequest, AvatarFromTextResult
from backend.cli import main

TINY_CODEBOOK = {"codebook_entries": 8, "codebook_samples": 40, "codebook_render_size": 32}
TINY_SETTINGS = {"resolution": 32, "width": 16, "render_size": 48}


def _cli_args(out, cache, *extra):
    return ["avatar-from-text", "a wise old wizard with a long nose", "--out", str(out), "--guidance", "test-tiny",
            "--cache-dir", str(cache), "--device", "cpu", "--steps", "2", "--texture-size", "64",
            "--codebook-entries", "8", "--codebook-samples", "40", "--codebook-render-size", "32",
            *[a for k, v in TINY_SETTINGS.items() for a in ("--setting", f"{k}={v}")], *extra]


def test_cli_writes_the_avatar_params_and_a_labelled_contact_sheet(tmp_path, capsys):
    out = tmp_path / "wizard"
    assert main(_cli_args(out, tmp_path / "cache", "--shape-prompt", "a long nose")) == 0
    names = {p.name for p in out.iterdir()}
    assert {"avatar.glb", "entry.glb", "params.json", "result.json", "contact_sheet.png", "stylized"} <= names
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial folders left
    params = json.loads((out / "params.json").read_text())
    assert params["guidance_is_test_model"] is True and "warning" in params
    assert len(params["top"]) == 5 and params["chosen"] == params["top"][0] and len(params["absolute_top"]) == 5
    assert params["prompts"]["shape"] == "a long nose" and params["prompts"]["appearance"].startswith("a wise")
    assert params["codebook"]["built"] is True and params["codebook"]["entries"] == 8
    result = json.loads((out / "result.json").read_text())
    assert result["stylization"]["guidance_is_test_model"] is True and result["stylization"]["steps"] == 2
    sheet = np.asarray(Image.open(out / "contact_sheet.png"))
    assert (sheet[:20, :, 0] > 120).mean() > 0.5 and (sheet[:20, :, 1] < 60).mean() > 0.5  # red caption
    from backend.avatar import load_avatar
    av = load_avatar(out / "avatar.glb")
    assert len(av.blendshape_names) > 0 and av.track is not None
    assert list((tmp_path / "cache" / "textavatar").glob("codebook-test-tiny-*.npz"))  # cached for the next run
    assert json.loads(capsys.readouterr().out)["guidance_is_test_model"] is True


def test_cli_refuses_bad_input_with_one_sentence(tmp_path, capsys):
    assert main(["avatar-from-text", "  ", "--out", str(tmp_path / "x"), "--guidance", "test-tiny"]) == 2
    assert "empty" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(_cli_args(blocker, tmp_path / "cache")) == 2
    assert "not a folder" in capsys.readouterr().err and blocker.read_text() == "not a folder"
    assert main(_cli_args(tmp_path / "y", tmp_path / "cache", "--setting", "resolution")) == 2
    assert main(["avatar-from-text", "a wizard", "--out", str(tmp_path / "z"), "--guidance", "ViT-B-32:openai",
                 "--no-download", "--cache-dir", str(tmp_path / "cache")]) == 3  # weights unavailable
    assert not (tmp_path / "z").exists()


def _params(**kw):
    return AvatarFromTextRequest("a wise old wizard with a long nose", guidance="test-tiny", steps=2, texture_size=64,
                                 settings=dict(TINY_SETTINGS), **TINY_CODEBOOK, **kw).to_params()


def test_server_job_returns_an_importable_labelled_avatar(client):
    progress = []
    m = client.wait(client.submit(JOB_KIND, _params()), timeout_s=300, on_progress=progress.append)
    res = AvatarFromTextResult.from_wire(m.body["result"], m.arrays)
    av = res.avatar()
    assert av.vertices.shape[1] == 3 and len(av.blendshape_names) == av.blendshapes.shape[0] > 0
    assert av.track is not None and av.texture_sets[0].image.shape == (64, 64, 3)
    b = res.body
    assert b["guidance_is_test_model"] is True and b["stylization"]["guidance_is_test_model"] is True
    assert [t["rank"] for t in b["top"]] == [1, 2, 3, 4, 5] and b["chosen"]["index"] == b["top"][0]["index"]
    assert res.arrays["contact_sheet"].dtype == np.uint8 and res.arrays["contact_sheet"].ndim == 3
    stages = {p.body.get("stage") for p in progress}
    assert {"codebook", "sculpt"} <= stages


def test_server_refuses_bad_requests_at_submit(client):
    with pytest.raises(InvalidParams, match="empty"):
        client.submit(JOB_KIND, _params() | {"prompt": ""})
    with pytest.raises(TooLarge):
        client.submit(JOB_KIND, _params() | {"face_prompt": "x" * 5000})
    with pytest.raises(InvalidParams, match="files"):
        client.submit(JOB_KIND, _params() | {"guidance": "local-dir:/etc"})
    with pytest.raises(InvalidParams, match="setting"):
        client.submit(JOB_KIND, _params() | {"settings": {"resolution": 10 ** 6}})
    assert client.wait(client.submit("selfcheck", {"steps": 1}), timeout_s=60).body["result"]["steps"] == 1
