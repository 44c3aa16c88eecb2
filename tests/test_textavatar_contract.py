"""The avatar-from-text request contract (shared/text_avatar.py): bounds, refusals, fallbacks."""

import pytest

from shared.errors import InvalidParams, TooLarge
from shared.protocol import Limits
from shared.text_avatar import MAX_PROMPT_CHARS, AvatarFromTextRequest


def test_one_prompt_serves_all_and_split_prompts_are_kept():
    r = AvatarFromTextRequest("a wise old wizard").validate()
    assert r.prompts() == {k: "a wise old wizard" for k in ("shape", "appearance", "face", "back")}
    r = AvatarFromTextRequest("a wizard", shape_prompt="a long nose", appearance_prompt="  ").validate()
    assert r.prompts()["shape"] == "a long nose" and r.prompts()["appearance"] == "a wizard"


def test_params_round_trip():
    r = AvatarFromTextRequest("a wizard", face_prompt="a bearded face", steps=7, seed=3, settings={"resolution": 32})
    assert AvatarFromTextRequest.from_params(r.to_params()) == r


@pytest.mark.parametrize("prompt", ["", "   \n"])
def test_empty_prompt_is_refused(prompt):
    with pytest.raises(InvalidParams, match="empty"):
        AvatarFromTextRequest(prompt).validate()


def test_over_long_prompts_are_refused():
    with pytest.raises(TooLarge, match="prompt"):
        AvatarFromTextRequest("a" * (MAX_PROMPT_CHARS + 1)).validate()
    with pytest.raises(TooLarge, match="back_prompt"):
        AvatarFromTextRequest("a wizard", back_prompt="b" * (MAX_PROMPT_CHARS + 1)).validate()
    with pytest.raises(TooLarge):  # the server's own limit applies when lower
        AvatarFromTextRequest("a" * 50).validate(Limits().replace(max_prompt_length=20))


@pytest.mark.parametrize("field,value,match", [
    ("geometry_weight", -1.0, "geometry_weight"), ("texture_weight", float("nan"), "texture_weight"),
    ("steps", 1.5, "steps"), ("identity", 2.0, "identity"), ("preset", "fast", "preset"),
    ("sculpt", "yes", "sculpt"), ("codebook_entries", 4, "codebook_entries"),
    ("codebook_samples", 10, "codebook_samples"), ("settings", {"resolution": "big"}, "resolution"),
])
def test_bad_fields_are_refused_with_their_name(field, value, match):
    with pytest.raises(InvalidParams, match=match):
        AvatarFromTextRequest("a wizard", **{field: value}).validate()


def test_zero_weights_and_malformed_params_are_refused():
    with pytest.raises(InvalidParams, match="both 0"):
        AvatarFromTextRequest("a wizard", geometry_weight=0.0, texture_weight=0.0).validate()
    with pytest.raises(InvalidParams, match="Unknown"):
        AvatarFromTextRequest.from_params({"prompt": "a wizard", "colour": "red"})
    with pytest.raises(InvalidParams, match="missing"):
        AvatarFromTextRequest.from_params({"shape_prompt": "a wizard"})
    with pytest.raises(InvalidParams, match="text"):
        AvatarFromTextRequest.from_params({"prompt": 5}).validate()
