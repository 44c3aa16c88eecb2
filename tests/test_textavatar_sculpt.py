"""The sculpting stage (backend/textavatar/sculpt.py run by the stylization engine) against
known embeddings: deterministic stand-in encoders with planted targets. Texturing must move a
planted colour the planted way and geometry a planted head width (both signs, so the tests
can fail), the expression blendshapes must keep working, the guidance must be split by pass."""

import numpy as np
import pytest
import torch

from shared.stylize import StyleTerm, StylizeRequest
from shared.text_avatar import NEUTRAL_PROMPT
from backend.style import bake
from backend.style.engine import run_stylize
from backend.textavatar import augment, standin, views
from backend.textavatar.codebook import entry_avatar
from backend.textavatar.pipeline import sculpt_frames
from backend.textavatar.sampling import anchor_vector
from backend.textavatar.sculpt import SculptConfig, SculptLoop

TINY = {"resolution": 32, "width": 16, "render_size": 64}
S = 64
SI = standin.STAT_INDEX


@pytest.fixture(scope="module")
def avatar():
    torch.set_num_threads(1)
    return entry_avatar(anchor_vector(), 64, with_track=True)


def _cams(av):
    rig = views.rig(av, S)
    return [rig[i] for i in views.CODEBOOK_VIEWS]


def _stats(av, p, cams, lights=None):
    out = views.render_avatar(av, cams, S, passes=(p,), lights=lights)
    return standin.image_stats(out[p]).mean(0).numpy()


def _sculpt(av, delta, geometry_weight, texture_weight, steps=12, tmp=None, shape_delta=None):
    """Sculpt ``av`` towards the anchor statistics (of its grey renders) + ``delta``
    (the shape prompt: + ``shape_delta`` when given)."""
    enc = standin.LinearStatsEncoder()
    base = _stats(av, "grey", _cams(av))
    enc.plant(NEUTRAL_PROMPT, base, fallback=True)  # also the engine's own neutral prompt
    enc.plant("target", base + delta)
    enc.plant("shape", base + (delta if shape_delta is None else shape_delta))
    loop = SculptLoop({"shape": "shape", "appearance": "target", "face": "target", "back": "target"},
                      SculptConfig(geometry_weight=geometry_weight, texture_weight=texture_weight))
    req = StylizeRequest("t", [StyleTerm("text", 1.0, "target")], views.rig(av, 224), frames=sculpt_frames(av),
                         identity=0.0, steps=steps, texture_size=64, passes=["color"], pass_resolution=16,
                         settings=dict(TINY))
    res = run_stylize(av, req, guidance=enc, cache_dir=tmp, adapt_fn=loop)
    return enc, loop, res, bake.stylized_avatar(av, res)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_texturing_moves_the_planted_attribute_the_planted_way(avatar, sign, tmp_path):
    d = np.zeros(len(standin.STAT_NAMES), np.float32)
    d[SI["centre_red"]], d[SI["centre_green"]] = 0.3 * sign, -0.3 * sign  # "redder" (or "less red")
    # the shape prompt asks the opposite: it guides grey renders only, so the texture ignores it
    _, loop, res, out = _sculpt(avatar, d, geometry_weight=1.0, texture_weight=1.0, tmp=tmp_path, shape_delta=-d)
    cams = _cams(avatar)
    before, after = _stats(avatar, "color", cams), _stats(out, "color", cams)
    red = SI["centre_red"], SI["centre_green"]
    change = (after[red[0]] - after[red[1]]) - (before[red[0]] - before[red[1]])
    assert sign * change > 0.02, f"red - green moved by {change:+.4f}, planted sign {sign:+}"
    md = res.body["metadata"]
    assert md["steps"] == 12 and md["guidance_is_test_model"] is True
    # expressions keep working: same shape keys, none dampened much (reported as by stylize)
    assert out.blendshape_names == avatar.blendshape_names and out.blendshapes.shape == avatar.blendshapes.shape
    assert 0.8 < md["expression_dampening"] < 1.25
    s = loop.summary()
    assert s["face_closeup_steps"] == 3 and s["views"] == 24 and s["back_views"] > 0


def test_lights_backgrounds_and_closeups_vary_as_published():
    """Random key light within the cone round the camera, random ambient, white / black /
    noise / blurred-checkerboard backgrounds, face close-ups from the frontal cameras."""
    gen = torch.Generator().manual_seed(0)
    lights = [augment.random_lights(gen) for _ in range(50)]
    z = np.array([lt.directions[0][2] for lt in lights])
    assert (z >= np.cos(np.radians(augment.LIGHT_CONE_DEG)) - 1e-6).all() and z.std() > 0.02
    amb = np.array([lt.ambient[0] for lt in lights])
    assert amb.min() >= augment.AMBIENT_RANGE[0] and amb.max() <= augment.AMBIENT_RANGE[1] and amb.std() > 0.05
    bg = augment.random_backgrounds(40, 16, 16, gen)
    flat = bg.reshape(40, -1)
    assert (flat.min(1).values == 1).any() and (flat.max(1).values == 0).any()  # white and black
    assert (flat.std(1) > 0.2).any()  # noise
    av = entry_avatar(anchor_vector(), 64)
    rig = views.rig(av, 64)
    kinds = augment.view_kinds(rig, av.vertices, av.blendshapes)
    assert kinds[0] == "front" and kinds[4] == "back" and kinds[2] == "side"
    close = augment.face_closeups(rig, kinds)
    assert close and all(c.lens > 2 * rig[0].lens for c in close)
    with pytest.raises(Exception, match="face"):
        SculptLoop({"shape": "a", "appearance": "b", "back": "c"})


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_sculpting_follows_a_planted_head_width_through_the_outline(avatar, sign, tmp_path):
    """Geometry alone (texture weight 0), guided on grey renders by the silhouette stand-in
    with the shape prompt planted as the outline of a wider (or narrower) head: the sculpted
    head's frontal outline grows (or shrinks). Gradients reach the outline only because the
    sculpt renders are antialiased (without it both signs came out wrong)."""
    from backend.avatar.params import AvatarParams

    P = AvatarParams.from_vector(anchor_vector())
    other = entry_avatar(AvatarParams(**{**P.to_dict(), "head_width": sign}).to_vector(), 64)
    cams = _cams(avatar)

    def outline(a):
        return standin.silhouette_stats(views.render_avatar(a, cams, S, passes=("grey",),
                                                            background=(1.0, 1.0, 1.0))["grey"]).mean(0).numpy()

    def area(a):
        return float(views.render_avatar(a, cams[:1], 128, passes=("alpha",))["alpha"].sum())

    enc = standin.SilhouetteStatsEncoder()
    enc.plant(NEUTRAL_PROMPT, outline(avatar), fallback=True)
    enc.plant("shape", outline(other))
    loop = SculptLoop({"shape": "shape", "appearance": "shape", "face": "shape", "back": "shape"},
                      SculptConfig(geometry_weight=1.0, texture_weight=0.0, backgrounds=("white",)))
    rig = views.rig(avatar, 224)
    req = StylizeRequest("t", [StyleTerm("text", 1.0, "shape")], [rig[i] for i in views.CODEBOOK_VIEWS],
                         frames=sculpt_frames(avatar), identity=0.0, steps=24, texture_size=64, passes=["color"],
                         pass_resolution=16, settings=dict(TINY))
    res = run_stylize(avatar, req, guidance=enc, cache_dir=tmp_path, adapt_fn=loop)
    out = bake.stylized_avatar(avatar, res)
    a0, a1, target = area(avatar), area(out), area(other)
    assert sign * (target - a0) > 100                        # the planted head is wider (narrower)
    assert sign * (a1 - a0) > 10, f"outline area {a0:.0f} -> {a1:.0f}, planted {target:.0f}"
    assert res.body["metadata"]["guidance_is_test_model"] is True
    assert loop.summary()["backgrounds"] == ("white",)
    with pytest.raises(Exception, match="backgrounds"):
        SculptLoop(loop.prompts, SculptConfig(backgrounds=("purple",)))
