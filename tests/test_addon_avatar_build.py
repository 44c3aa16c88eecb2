"""An avatar from the backend becomes Blender data (avatar_build): mesh with UVs,
shape keys, a material with the base-colour image, an action for the expression
track; round trip against the add-on's own extraction; nothing left on failure."""

from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from addon_scene import counts, make_avatar  # noqa: E402

from blender_addon import avatar_build, scene_io  # noqa: E402
from shared import avatar as mm_avatar  # noqa: E402
from shared import errors  # noqa: E402

pytestmark = pytest.mark.blender


def test_built_avatar_round_trips_through_the_wire_and_extraction(scene):
    src = make_avatar("Src", subdiv=2)
    scene.frame_start, scene.frame_end = 1, 10
    av = scene_io.extract_avatar([src], scene=scene)
    body, arrays = mm_avatar.to_wire(av)
    back = mm_avatar.from_wire(body, arrays)
    objs = avatar_build.build(bpy.context, back, name="Built",
                              labels={"metamorph_guidance_is_test_model": True})
    obj = objs[0]
    assert obj.users_collection[0].name == avatar_build.AVATARS_COLLECTION
    assert [k.name for k in obj.data.shape_keys.key_blocks] == ["Basis", "jawOpen", "smile"]
    assert obj["metamorph_guidance_is_test_model"]
    img = obj.data.materials[0].node_tree.nodes["Principled BSDF"].inputs["Base Color"] \
        .links[0].from_node.image
    assert img.packed_file is not None and tuple(img.size) == (16, 16)
    again = scene_io.extract_avatar([obj], scene=scene)
    assert mm_avatar.content_hash(again) == mm_avatar.content_hash(av)
    assert again.track.names == av.track.names
    assert np.allclose(again.track.weights, av.track.weights, atol=1e-5)


def test_invalid_avatar_creates_nothing(scene):
    rng = np.random.default_rng(0)
    v = rng.normal(size=(6, 3)).astype(np.float32)
    f = np.array([[0, 1, 2], [3, 4, 9]], np.int32)  # 9 is out of range
    av = mm_avatar.AvatarData(vertices=v, faces=f, uvs=np.zeros((6, 2)), uv_faces=f % 6,
                              face_material=np.zeros(2, np.int32),
                              texture_sets=[mm_avatar.TextureSet("skin", np.zeros((4, 4, 3), np.uint8))])
    before = counts()
    with pytest.raises(errors.InvalidAvatar):
        avatar_build.build(bpy.context, av)
    assert counts() == before
