"""The avatar_from_photo request contract and the job's cheap validation (no models)."""

import numpy as np
import pytest

from backend.jobs import handlers
from shared.errors import InvalidParams, TooLarge
from shared.photo import JOB_KIND, PhotoRequest, PhotoResult
from shared.protocol import Limits


def test_round_trip_and_defaults():
    r = PhotoRequest(face_index=2, imitator="test", search=False, fit_steps=50, seed=3)
    assert PhotoRequest.from_params(r.to_params()) == r
    assert PhotoRequest.from_params({}) == PhotoRequest()


@pytest.mark.parametrize("params", [
    {"face_index": "0"}, {"face_index": -2}, {"face_index": True}, {"imitator": "huge"}, {"search": 1},
    {"fit_steps": 10 ** 6}, {"seed": -1}, {"colour": 1}, [1, 2],
])
def test_bad_fields_are_invalid_params(params):
    with pytest.raises(InvalidParams):
        PhotoRequest.from_params(params)


def test_photo_array_checks():
    job = handlers()[JOB_KIND]
    assert job.needs_avatar is False
    ok = np.zeros((100, 80, 3), np.uint8)
    job.validate({}, {"photo": ok})
    with pytest.raises(InvalidParams):
        job.validate({}, {})
    with pytest.raises(InvalidParams):
        job.validate({}, {"photo": ok.astype(np.float32)})
    with pytest.raises(InvalidParams):
        job.validate({}, {"photo": ok[..., :1]})
    with pytest.raises(TooLarge):
        job.validate({}, {"photo": np.zeros((700, 600, 3), np.uint8)}, limits=Limits(max_image_side=640))


def test_result_wrapper_refuses_other_results():
    with pytest.raises(InvalidParams):
        PhotoResult.from_wire({"kind": "stylize"}, {})
