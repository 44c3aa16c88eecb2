"""Scene properties: what the panel edits and a job reads, saved with the .blend.

Bounds, defaults and menu items come from the request contract
(:mod:`shared.stylize`), read when the add-on registers (not when this module is
imported), so a change there is a change here. Transient state (connection, job
progress) is on the window manager instead: :mod:`state`.
"""

from __future__ import annotations

import bpy
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, FloatProperty,
                       IntProperty, PointerProperty, StringProperty)

from . import panel_create, state
from ._shared import passes as mm_passes
from ._shared import stylize

# "//" (next to the .blend) in path properties: an explicit option since Blender 4.5.
PATH_OPTIONS = {"PATH_SUPPORTS_BLEND_RELATIVE"} if bpy.app.version >= (4, 5, 0) else set()

FRAME_SOURCES = [
    ("ACTION", "Avatar's animation", "The keyframe range of the avatar's shape-key animation"),
    ("TIMELINE", "Timeline", "The scene's frame range"),
    ("CUSTOM", "Custom", "The start and end set here"),
]


def is_test_model(name: str) -> bool:
    """Guidance models whose outputs are not a real stylization (labelled everywhere)."""
    return name == stylize.TEST_GUIDANCE or str(name).endswith(":untrained")


_guidance_items: list = []  # Blender needs the strings of dynamic enum items kept alive


def guidance_items(self, context):
    """The guidance models the connected backend reported in hello; the test model
    marked as such. Without a connection: the current choice only."""
    names = list(state.hello(context).get("guidance_models") or [])
    current = self.guidance or stylize.DEFAULT_GUIDANCE
    if current not in names:
        names.insert(0, current)
    items = []
    for i, n in enumerate(names):
        if is_test_model(n):
            items.append((n, f"{n} (test model)", "Checks the pipeline only: its images are not a "
                          "real stylization, and every output says so", "ERROR", i))
        else:
            items.append((n, n, f"Guide with {n}", "NONE", i))
    _guidance_items[:] = items
    return _guidance_items


def _guidance_get(self):
    for it in _guidance_items or guidance_items(self, bpy.context):
        if it[0] == self.guidance:
            return it[4]
    return 0


def _guidance_set(self, value):
    for it in _guidance_items or guidance_items(self, bpy.context):
        if it[4] == value:
            self.guidance = it[0]
            return


class MetamorphStyleTerm(bpy.types.PropertyGroup):
    pass  # annotations set in register() from shared.stylize


class MetamorphResult(bpy.types.PropertyGroup):
    # name (inherited) = style name
    object_names: StringProperty(name="Objects", description="Result objects, ';'-separated")
    folder: StringProperty(name="Folder", subtype="DIR_PATH",
                           description="This result's files: passes, textures, export, renders")
    guidance: StringProperty(name="Guidance", description="Guidance model that made this result")
    is_test_model: BoolProperty(name="Test model", description="Made by the test guidance model: "
                                "not a real stylization")
    select: BoolProperty(name="Select", default=True,
                         description="Include this result in turntable renders and exports")


class MetamorphSettings(bpy.types.PropertyGroup):
    pass  # annotations set in register() from shared.stylize


def _term_annotations() -> dict:
    S = stylize
    return {
        "kind": EnumProperty(name="Kind", items=[("TEXT", "Text", "A text prompt"),
                                                 ("IMAGE", "Image", "A reference image")],
                             default="TEXT", description="Text prompt or reference image"),
        "text": StringProperty(name="Prompt", default="", maxlen=S.MAX_PROMPT_LENGTH,
                               description="What the style should look like, e.g. 'a bronze statue'"),
        "image": PointerProperty(name="Image", type=bpy.types.Image,
                                 description="A reference image of the style"),
        "weight": FloatProperty(name="Weight", default=S.DEFAULT_WEIGHT, min=S.MIN_WEIGHT,
                                max=S.MAX_WEIGHT, soft_min=0.0, soft_max=2.0,
                                description="How strongly this term pulls (negative: away from it)"),
    }


def _settings_annotations() -> dict:
    S = stylize
    return {
        # What to stylize
        "avatar_collection": PointerProperty(
            name="Avatar", type=bpy.types.Collection,
            description="Collection holding the avatar's meshes (head, eyes, teeth...); "
                        "empty = the selected meshes"),
        "rig_collection": PointerProperty(name="Camera rig", type=bpy.types.Collection,
                                          description="Collection of cameras the backend renders from"),
        "rig_count": IntProperty(name="Cameras per ring", default=8, min=1, max=S.MAX_CAMERAS,
                                 description="Cameras in each elevation ring of a new rig"),
        "rig_elevations": StringProperty(name="Elevations", default="0, 25, -20",
                                         description="Elevation of each ring in degrees, comma-separated"),
        "rig_distance": FloatProperty(name="Distance", default=0.0, min=0.0, unit="LENGTH",
                                      description="Camera distance from the head; 0 = frame the head"),
        "rig_lights": BoolProperty(name="Three-point lights", default=False,
                                   description="Add a key, fill and rim light to the rig (for Eevee "
                                               "and Cycles turntables in a scene without lights)"),
        # Expressions
        "frame_source": EnumProperty(name="Expression frames", items=FRAME_SOURCES, default="ACTION",
                                     description="Which frames' expressions are stylized"),
        "frame_start": IntProperty(name="Start", default=1, min=-S.MAX_FRAME_NUMBER,
                                   max=S.MAX_FRAME_NUMBER, description="First expression frame"),
        "frame_end": IntProperty(name="End", default=1, min=-S.MAX_FRAME_NUMBER,
                                 max=S.MAX_FRAME_NUMBER, description="Last expression frame"),
        "frame_step": IntProperty(name="Step", default=10, min=1,
                                  description="Stylize every n-th frame of the range"),
        # Style
        "terms": CollectionProperty(type=MetamorphStyleTerm),
        "active_term": IntProperty(default=0),
        "identity": FloatProperty(name="Identity", default=S.DEFAULT_IDENTITY, min=S.MIN_IDENTITY,
                                  max=S.MAX_IDENTITY,
                                  description="How much of the original survives (0 = free restyle)"),
        "steps": IntProperty(name="Steps", default=S.DEFAULT_STEPS, min=S.MIN_STEPS, max=S.MAX_STEPS,
                             description="Stylize: adaptation steps (0 = the preset's default)"),
        "iterations": IntProperty(name="Iterations", default=S.DEFAULT_ITERATIONS,
                                  min=S.MIN_ITERATIONS, max=S.MAX_ITERATIONS,
                                  description="Prepare: meta-training iterations (0 = the preset's "
                                              "default)"),
        "preset": EnumProperty(name="Quality",
                               items=[(k, k.capitalize(), d) for k, d in S.PRESET_DESCRIPTIONS.items()],
                               default=S.DEFAULT_PRESET,
                               description="Quality preset of the backend's engine"),
        "seed": IntProperty(name="Seed", default=S.DEFAULT_SEED, min=0, max=S.MAX_SEED,
                            description="Random seed (same seed and settings = same result)"),
        "guidance": StringProperty(name="Guidance", default=S.DEFAULT_GUIDANCE,
                                   maxlen=S.MAX_GUIDANCE_LENGTH,
                                   description="Guidance model the backend loads (open_clip name:tag)"),
        "guidance_menu": EnumProperty(name="Guidance", items=guidance_items, get=_guidance_get,
                                      set=_guidance_set,
                                      description="Guidance models the connected backend offers"),
        "texture_size": IntProperty(name="Texture size", default=S.DEFAULT_TEXTURE_SIZE,
                                    min=S.MIN_TEXTURE_SIZE, max=S.MAX_TEXTURE_SIZE,
                                    description="Side of each stylized texture in pixels"),
        "allow_upscale": BoolProperty(name="Upscale textures", default=False,
                                      description="Allow stylized textures larger than the "
                                                  "avatar's own (off: capped at their size)"),
        "use_passes": BoolProperty(name="Passes", default=True,
                                   description="Bring back rendered passes (saved under the "
                                               "result's folder and loaded as images)"),
        "passes": EnumProperty(name="Pass list", options={"ENUM_FLAG"},
                               items=[(p, p.capitalize(), f"The {p} pass") for p in S.PASS_NAMES],
                               default=set(mm_passes.DEFAULT_PASSES),
                               description="Which passes to render"),
        "pass_resolution": IntProperty(name="Pass resolution", default=S.DEFAULT_PASS_RESOLUTION,
                                       min=S.MIN_PASS_RESOLUTION, max=S.MAX_PASS_RESOLUTION,
                                       description="Side of each rendered pass in pixels"),
        "style_name": StringProperty(name="Name", default="", maxlen=S.MAX_NAME_LENGTH,
                                     description="Result name (defaults to the first prompt)"),
        "unwrap_copy": BoolProperty(name="Unwrap a copy", default=False,
                                    description="Meshes without UVs: stylize a Smart-UV-unwrapped "
                                                "copy (the original is never changed)"),
        "output_dir": StringProperty(name="Output folder", default="", subtype="DIR_PATH",
                                     options=PATH_OPTIONS,
                                     description="Where passes, exports and renders go; "
                                                 "empty = the preferences' folder"),
        # Results
        "results": CollectionProperty(type=MetamorphResult),
        "active_result": IntProperty(default=0),
        "side_by_side": BoolProperty(name="Side by side", default=False,
                                     description="Also render the original and join both images"),
        "tt_use_scene_range": BoolProperty(name="Timeline range", default=True,
                                           description="Turntables render the scene's frame range"),
        "tt_frame_start": IntProperty(name="Start", default=1, description="First turntable frame"),
        "tt_frame_end": IntProperty(name="End", default=48, description="Last turntable frame"),
        **panel_create.settings_annotations(),  # Create & Animate (shared.photo/text_avatar/expression)
    }


classes = (MetamorphStyleTerm, MetamorphResult, MetamorphSettings)


def register():
    """Build the annotations from the contract now, then register (order matters:
    the settings hold collections of the other two)."""
    MetamorphStyleTerm.__annotations__ = _term_annotations()
    MetamorphSettings.__annotations__ = _settings_annotations()
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.metamorph = PointerProperty(type=MetamorphSettings)


def unregister():
    del bpy.types.Scene.metamorph
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
