"""Expression capture from photos and videos with the real MediaPipe face mesh and the
small ("test") regressor configuration trained here in seconds on the engine's renders."""

from __future__ import annotations

import numpy as np
import pytest

from shared.errors import InvalidParams, TooLarge
from shared.expression import ExpressionFromVideoRequest, check_frames
from shared.protocol import Limits

from backend.avatar import sample_avatar
from backend.avatar.blendshapes import sample_track
from backend.expression import media
from backend.expression import regressor as rg
from backend.expression.capture import (clip_neutral, frame_landmarks, gaussian_smooth, mouth_features,
                                        run_expression_from_video)
from backend.expression.posing import Poser


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    # one folder for the whole session, so the CLI tests reuse the regressor trained here
    d = tmp_path_factory.getbasetemp() / "expression-cache"
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture(scope="module")
def reg(cache):
    return rg.load_regressor("test", cache_dir=cache / "expression")


@pytest.fixture(scope="module")
def clip():
    """The sample track (every 2nd frame) on the default avatar with a slow head turn, as rendered frames."""
    poser = Poser(sample_avatar(texture_size=256, with_track=False))
    tr = sample_track()
    W = np.stack([tr.weights[::2, tr.names.index(n)] for n in poser.names], -1)
    yaw = 14.0 * np.sin(np.arange(len(W)) / 6.0)
    rot = np.stack([np.zeros_like(yaw), np.zeros_like(yaw), yaw], -1)
    frames = np.concatenate([rg.render_batch(poser, W[i:i + 12], rot[i:i + 12], 224, 1.0)
                             for i in range(0, len(W), 12)])
    return frames, W, yaw, poser.names


def test_regressor_is_cached_and_reloads_identically(reg, cache):
    files = list((cache / "expression").glob("regressor_*.pt"))
    assert len(files) == 1
    again = rg.load_regressor("test", cache_dir=cache / "expression")
    x = np.random.default_rng(0).normal(size=(4, len(reg.mean))).astype(np.float32) * reg.std + reg.mean
    np.testing.assert_allclose(again.predict(x), reg.predict(x), atol=1e-6)
    assert reg.train_figures["faces_found"] >= 0.9 * reg.train_figures["frames"]


def test_video_capture_follows_a_known_track_and_head_turn(clip, reg, tmp_path):
    frames, W, yaw, names = clip
    path = media.write_video(tmp_path / "clip.mp4", frames, fps=12)
    decoded, fps, still = media.read_frames(path, 100)
    assert decoded.shape == frames.shape and fps == pytest.approx(12.0) and not still
    res = run_expression_from_video(decoded, ExpressionFromVideoRequest(fps=fps, regressor="test", start_frame=5),
                                    regressor=reg)
    assert res.metadata["calibration"] == "auto" and res.metadata["calibrated"] is True
    assert res.frames[0] == 5 and res.weights.shape == (len(frames), len(res.names))
    assert res.detected.all() and res.metadata["detected_fraction"] == 1.0
    P = np.stack([res.weights[:, res.names.index(n)] for n in names], -1)
    jaw = names.index("jawOpen")
    assert np.abs(P[:, jaw] - W[:, jaw]).mean() < 0.2
    assert np.corrcoef(P[:, jaw], W[:, jaw])[0, 1] > 0.5
    assert np.abs(res.head_rotation[:, 2] - yaw).mean() < 6.0       # degrees, Blender Z = yaw
    assert np.sign(res.head_rotation[np.argmax(yaw), 2]) == 1.0
    assert res.metadata["jitter"] <= res.metadata["jitter_raw"] + 1e-9


def test_neutral_frame_calibration(clip, reg):
    frames, W, _, names = clip
    req = ExpressionFromVideoRequest(regressor="test", neutral_frame=0)
    res = run_expression_from_video(frames, req, regressor=reg)
    assert res.metadata["calibrated"] is True and res.metadata["calibration"] == "neutral_frame"
    jaw = names.index("jawOpen")
    P = res.weights[:, res.names.index("jawOpen")]
    assert np.corrcoef(P, W[:, jaw])[0, 1] > 0.5
    with pytest.raises(InvalidParams, match="neutral_frame"):
        ExpressionFromVideoRequest(regressor="test", neutral_frame=len(frames)).validate(None, {"frames": frames})


def test_photo_capture_on_a_real_photo_is_plausible(reg):
    from skimage import data

    res = run_expression_from_video(data.astronaut()[None], ExpressionFromVideoRequest(regressor="test"),
                                    regressor=reg)
    w = dict(zip(res.names, res.weights[0]))
    assert res.weights.shape == (1, len(res.names)) and res.metadata["still_images"]
    assert res.metadata["calibration"] == "none"
    assert w["jawOpen"] < 0.3 and w["eyeBlinkLeft"] < 0.5 and w["eyeBlinkRight"] < 0.5


def test_plain_model_on_request_and_auto_neutral_is_robust_to_sparse_expressions(clip, reg):
    frames = clip[0]
    res = run_expression_from_video(frames, ExpressionFromVideoRequest(regressor="test"), regressor=reg,
                                    auto_calibrate=False)
    assert res.metadata["calibration"] == "none" and res.metadata["calibrated"] is False
    rng = np.random.default_rng(0)
    base = rng.normal(size=8).astype(np.float32)
    feats = np.repeat(base[None], 40, 0)
    feats[rng.random((40, 8)) < 0.3] += 5.0          # 30% of the frames carry an expression per feature
    np.testing.assert_allclose(rg.auto_neutral(feats), base, atol=1e-6)


def test_clip_neutral_sees_past_a_smile_held_for_most_of_the_clip(reg):
    """The default avatar smiles in 18 of 24 frames: the median of the mouth features is the smile,
    :func:`clip_neutral` takes the mouth from the frames the plain model calls mouth-neutral."""
    from backend.expression import features as ft

    poser = Poser(sample_avatar(texture_size=256, with_track=False))
    W = np.zeros((24, poser.K), np.float32)
    for n in ("mouthSmileLeft", "mouthSmileRight"):
        W[6:, poser.names.index(n)] = np.linspace(0.7, 1.0, 18)
    yaw = 8.0 * np.sin(np.arange(24) / 5.0)
    rot = np.stack([np.zeros(24), np.zeros(24), yaw], -1)
    frames = np.concatenate([rg.render_batch(poser, W[i:i + 12], rot[i:i + 12], 224, 1.0) for i in (0, 12)])
    f, _, found = ft.features_batch(frame_landmarks(frames, still=False), reg.template, frames)
    assert found.all()
    m, truth = mouth_features(), f[:6].mean(0)
    med, est = rg.auto_neutral(f), clip_neutral(reg, f)
    assert m.sum() > 0 and not m.all()
    np.testing.assert_array_equal(est[~m], med[~m])                  # eyes and brows keep the median
    assert np.abs(est[m] - truth[m]).mean() < 0.5 * np.abs(med[m] - truth[m]).mean()
    k = reg.names.index("mouthSmileLeft")
    assert reg.predict(f[6:], est)[:, k].mean() > reg.predict(f[6:], med)[:, k].mean() + 0.2


def test_brow_profiles_follow_the_brows_where_the_mesh_does_not():
    """A full browDown on the default avatar: the brow profiles' darkness centres drop (eye widths)."""
    from backend.expression import features as ft
    from backend.face.landmarks import face_landmarks

    poser = Poser(sample_avatar(texture_size=256, with_track=False))
    W = np.zeros((3, poser.K), np.float32)
    W[1, [poser.names.index("browDownLeft"), poser.names.index("browDownRight")]] = 1.0
    W[2, poser.names.index("browInnerUp")] = 1.0
    imgs = rg.render_batch(poser, W, np.array([[0, 0, 0], [4, 0, 12], [-4, 0, -12]], float), 256, 1.0)
    lms = [face_landmarks(im) for im in imgs]
    tpl = ft.normalize_template(lms[0])
    F = np.stack([ft.features(lm, tpl, im)[0] for lm, im in zip(lms, imgs)])
    assert F.shape[1] == ft.num_features()
    centres = ft.brow_centres(F).reshape(3, -1)                          # [3, 2*C] left eye, right eye
    C = len(ft.PROFILE_COLS)
    assert (centres[1] < centres[0] - 0.05).all()                          # brows down
    assert (centres[2, [0, C]] > centres[0, [0, C]] + 0.05).all()           # inner brows up


def test_no_face_and_bad_frames_are_typed_errors(reg):
    noise = np.random.default_rng(1).integers(0, 255, (2, 96, 96, 3), dtype=np.uint8)
    with pytest.raises(InvalidParams, match="No face"):
        run_expression_from_video(noise, ExpressionFromVideoRequest(regressor="test"), regressor=reg)
    with pytest.raises(InvalidParams):
        check_frames(noise.astype(np.float32))
    with pytest.raises(InvalidParams):
        check_frames(None)
    with pytest.raises(TooLarge):
        check_frames(np.zeros((5, 40, 40, 3), np.uint8), Limits().replace(max_frames=4))
    for bad in ({"regressor": "huge"}, {"smoothing": -1.0}, {"fps": 0}, {"head_rotation": 1}):
        with pytest.raises(InvalidParams):
            ExpressionFromVideoRequest.from_params({**ExpressionFromVideoRequest().to_params(), **bad}).validate()


def test_media_reads_images_folders_and_refuses_unknown_files(tmp_path, clip):
    from PIL import Image

    frames = clip[0][:3]
    (tmp_path / "imgs").mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / "imgs" / f"{i:02d}.png")
    got, fps, still = media.read_frames(tmp_path / "imgs", 10)
    assert got.shape == frames.shape and fps is None and still
    np.testing.assert_array_equal(got, frames)
    one, _, _ = media.read_frames(tmp_path / "imgs" / "00.png", 10)
    assert one.shape == (1,) + frames.shape[1:]
    with pytest.raises(TooLarge):
        media.read_frames(tmp_path / "imgs", 2)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(InvalidParams):
        media.read_frames(tmp_path / "notes.txt", 10)
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(InvalidParams):
        media.read_frames(tmp_path / "broken.mp4", 10)


def test_gaussian_smoothing_keeps_constants_and_reduces_noise():
    x = np.ones((20, 2), np.float32)
    np.testing.assert_allclose(gaussian_smooth(x, 2.0), x, atol=1e-6)
    n = np.random.default_rng(0).normal(size=(200, 1)).astype(np.float32)
    assert np.abs(np.diff(gaussian_smooth(n, 1.5), 2, axis=0)).mean() < 0.3 * np.abs(np.diff(n, 2, axis=0)).mean()
