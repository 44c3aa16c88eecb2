"""The server's expression_from_text / expression_from_video jobs over real ZeroMQ sockets
(conftest's `metamorph serve` subprocess): results, labels and refusals at submit."""

from __future__ import annotations

import numpy as np
import pytest

from shared.errors import InvalidParams, TooLarge
from shared.expression import ExpressionFromTextRequest, ExpressionFromVideoRequest, ExpressionResult

from backend.avatar import sample_avatar


def _text_req(aid, **kw):
    return ExpressionFromTextRequest(avatar_id=aid, text=kw.pop("text", "smiling"), fps=8, duration_s=1.0,
                                     guidance="test-tiny", steps=2,
                                     settings={"render_size": 48, "views": 1, "intensities": 1}, **kw).to_params()


def test_text_job_returns_a_labelled_track(client):
    av = sample_avatar(texture_size=128, with_track=False)
    aid = client.put_avatar(av)
    m = client.wait(client.submit("expression_from_text", _text_req(aid)), timeout_s=300)
    res = ExpressionResult.from_wire(m.body["result"], m.arrays)
    assert res.weights.shape == (8, len(res.names)) and "jawOpen" in res.names
    assert res.metadata["guidance_is_test_model"] is True and len(res.candidates) == 5
    assert res.frames[0] == 1.0


def test_bad_expression_requests_are_refused_at_submit(client):
    av = sample_avatar(texture_size=64, with_track=False)
    aid = client.put_avatar(av)
    with pytest.raises(InvalidParams):
        client.submit("expression_from_text", {**_text_req(aid), "guidance": "local-dir:/etc"})
    with pytest.raises(InvalidParams):
        client.submit("expression_from_text", {**_text_req(aid), "fps": "fast"})
    with pytest.raises(InvalidParams):
        client.submit("expression_from_video", ExpressionFromVideoRequest(regressor="test").to_params())
    with pytest.raises(InvalidParams):
        client.submit("expression_from_video", ExpressionFromVideoRequest(regressor="test").to_params(),
                      {"frames": np.zeros((2, 40, 40), np.uint8)})
    with pytest.raises(TooLarge):
        client.submit("expression_from_video", ExpressionFromVideoRequest(regressor="test").to_params(),
                      {"frames": np.zeros((600, 32, 32, 3), np.uint8)})
    # the server keeps serving
    assert client.wait(client.submit("selfcheck", {"steps": 1}), timeout_s=60).body["result"]["steps"] == 1


def test_video_job_on_a_real_photo(client):
    from PIL import Image
    from skimage import data

    photo = np.asarray(Image.fromarray(data.astronaut()).resize((256, 256)))[None]
    m = client.wait(client.submit("expression_from_video", ExpressionFromVideoRequest(regressor="test").to_params(),
                                  {"frames": photo}), timeout_s=300)
    res = ExpressionResult.from_wire(m.body["result"], m.arrays)
    assert res.weights.shape == (1, len(res.names)) and res.detected.tolist() == [1]
    assert res.head_rotation.shape == (1, 3) and res.metadata["regressor"] == "test"
