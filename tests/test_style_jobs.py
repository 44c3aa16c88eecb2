"""The server's stylize/prepare jobs over real ZeroMQ sockets (conftest's
`metamorph serve` subprocess), with the test guidance model at tiny settings."""

import pytest

from shared.errors import Cancelled, InvalidParams
from shared.stylize import StyleTerm, StylizeRequest, StylizeResult
from backend.style.rig import turntable
from backend.style.testing import tiny_avatar

TINY = {"resolution": 32, "width": 16, "render_size": 48}


def req(av, aid, **kw):
    r = StylizeRequest(aid, kw.pop("terms", [StyleTerm("text", 1.0, "a bronze statue")]),
                       turntable(av.vertices, 2, (0.0,), 360.0, resolution=64), frames=[0.0, 3.0],
                       guidance="test-tiny", texture_size=32, pass_resolution=32, settings=dict(TINY), **kw)
    return r.to_params()


def test_stylize_job_streams_progress_and_returns_the_result(client):
    av = tiny_avatar()
    aid = client.put_avatar(av)
    jid = client.submit("stylize", req(av, aid, steps=3))
    progress = []
    m = client.wait(jid, timeout_s=300, on_progress=lambda p: progress.append(p))
    res = StylizeResult.from_wire(m.body["result"], m.arrays)
    assert res.neutral_offsets.shape == (av.num_vertices, 3)
    assert res.blendshape_offsets.shape == (3, av.num_vertices, 3)
    assert res.passes["color"].shape == (2, 2, 32, 32, 3) and len(res.textures) == 2
    assert res.body["metadata"]["guidance_is_test_model"] is True
    stages = [p.body.get("stage") for p in progress]
    assert "adapt" in stages


def test_bad_stylize_params_are_refused_at_submit(client):
    av = tiny_avatar()
    aid = client.put_avatar(av)
    with pytest.raises(InvalidParams, match="style_image_0"):
        client.submit("stylize", req(av, aid, terms=[StyleTerm("image", 1.0, image_index=0)]))
    p = req(av, aid)
    p["settings"] = {"resolution": 100000}
    with pytest.raises(InvalidParams, match="resolution"):
        client.submit("stylize", p)
    p = req(av, aid)
    p["guidance"] = "local-dir:/etc"
    with pytest.raises(InvalidParams, match="cannot name files"):
        client.submit("stylize", p)


def test_cancelled_stylize_job_ends_and_server_keeps_serving(client):
    av = tiny_avatar()
    aid = client.put_avatar(av)
    jid = client.submit("stylize", req(av, aid, steps=5000))
    with pytest.raises(Cancelled):
        for m in client.iter_job(jid, timeout_s=300):
            if m.kind == "progress" and m.body.get("stage") == "adapt":
                client.cancel(jid)
    jid2 = client.submit("selfcheck", {"steps": 1})
    assert client.wait(jid2, timeout_s=60).body["result"]["steps"] == 1


def test_prepare_job_writes_a_meta_checkpoint(client):
    av = tiny_avatar()
    aid = client.put_avatar(av)
    jid = client.submit("prepare", {"avatar_id": aid, "guidance": "test-tiny", "iterations": 2,
                                    "styles": ["a zombie", "a robot"], "settings": dict(TINY, inner_steps=1)})
    info = client.wait(jid, timeout_s=300).body["result"]
    assert info["iterations"] == 2 and info["guidance_is_test_model"] is True and info["styles"] == 2
    # The next stylize of this avatar with this guidance starts from the meta-learned init.
    m = client.wait(client.submit("stylize", req(av, aid, steps=1)), timeout_s=300)
    assert m.body["result"]["metadata"]["init"] == "meta"


def test_server_refuses_to_start_with_a_missing_checkpoint_file(tmp_path):
    from conftest import start_server

    with pytest.raises(RuntimeError, match="no such file"):
        start_server("--clip-checkpoint", f"ViT-B-32={tmp_path / 'missing.bin'}", tmp_path=tmp_path)


def test_operator_configured_checkpoint_serves_a_guidance_model_offline(tmp_path):
    """`serve --clip-checkpoint NAME=PATH`: clients name the model, the server
    loads the operator's file (clients can never name paths)."""
    import torch

    from conftest import start_server
    from backend.style.guidance import TEST_MODEL, load_guidance

    weights = tmp_path / "tiny.pt"  # real weights of the tiny CLIP architecture
    torch.save(load_guidance(TEST_MODEL).model.state_dict(), weights)
    srv = start_server("--clip-checkpoint", f"metamorph-test-tiny={weights}", tmp_path=tmp_path / "srv",
                       env={"HF_HUB_OFFLINE": "1"})
    try:
        c = srv.client()
        assert c.hello()["guidance_models"][0] == "metamorph-test-tiny"
        av = tiny_avatar()
        params = req(av, c.put_avatar(av), steps=1)
        params["guidance"] = "metamorph-test-tiny"
        m = c.wait(c.submit("stylize", params), timeout_s=300)
        md = m.body["result"]["metadata"]
        assert md["guidance"] == "metamorph-test-tiny" and md["guidance_is_test_model"] is False
        c.close()
    finally:
        srv.stop()
