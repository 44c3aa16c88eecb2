"""Scene properties: what the panel edits and what a job reads.

Everything lives on ``scene.metamorph`` so it is saved with the .blend file.
Job progress is stored here too (written by the main thread only) so the panel
and the status bar can draw it.
"""

from __future__ import annotations

import bpy
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, FloatProperty,
                       IntProperty, PointerProperty, StringProperty)


class MetamorphStyleTerm(bpy.types.PropertyGroup):
    kind: EnumProperty(name="Kind", items=[("TEXT", "Text", "A text prompt"),
                                           ("IMAGE", "Image", "A reference image")],
                       default="TEXT")
    text: StringProperty(name="Prompt", default="")
    image: PointerProperty(name="Image", type=bpy.types.Image)
    weight: FloatProperty(name="Weight", default=1.0, min=0.0, soft_max=2.0)


class MetamorphResult(bpy.types.PropertyGroup):
    # name (inherited) = style name
    object_names: StringProperty(name="Objects", description="Result objects, ';'-separated")
    folder: StringProperty(name="Folder", subtype="DIR_PATH")
    select: BoolProperty(name="Select", default=True,
                         description="Include this result in turntable renders and exports")


class MetamorphSettings(bpy.types.PropertyGroup):
    # What to stylize
    avatar_collection: PointerProperty(
        name="Avatar", type=bpy.types.Collection,
        description="Collection holding the avatar's meshes (head, eyes, teeth...); "
                    "empty = the selected meshes")
    rig_collection: PointerProperty(name="Camera rig", type=bpy.types.Collection,
                                    description="Collection of cameras the backend renders from")
    rig_count: IntProperty(name="Cameras per ring", default=8, min=1, max=64)
    rig_elevations: StringProperty(name="Elevations", default="0, 25, -20",
                                   description="Elevation of each ring in degrees, comma-separated")
    rig_distance: FloatProperty(name="Distance", default=0.0, min=0.0, unit="LENGTH",
                                description="Camera distance from the head; 0 = frame the head")

    # Expressions
    use_scene_range: BoolProperty(name="Use timeline range", default=True)
    frame_start: IntProperty(name="Start", default=1)
    frame_end: IntProperty(name="End", default=1)
    frame_step: IntProperty(name="Step", default=10, min=1)

    # Style
    terms: CollectionProperty(type=MetamorphStyleTerm)
    active_term: IntProperty(default=0)
    identity: FloatProperty(name="Identity", default=0.5, min=0.0, max=1.0,
                            description="How much of the original survives (0 = free restyle)")
    steps: IntProperty(name="Steps", default=0, min=0, max=10000,
                       description="Adaptation steps (0 = the preset's default)")
    preset: EnumProperty(name="Quality", items=[("draft", "Draft", "Fast, for iteration"),
                                                ("quality", "Quality", "Slower, for finals")])
    seed: IntProperty(name="Seed", default=0, min=0)
    guidance: StringProperty(name="Guidance", default="ViT-B-32:laion2b_s34b_b79k",
                             description="Guidance model the backend loads")
    texture_size: IntProperty(name="Texture size", default=1024, min=16, max=8192)
    pass_resolution: IntProperty(name="Pass resolution", default=512, min=8, max=4096)
    style_name: StringProperty(name="Name", default="",
                               description="Result name (defaults to the first prompt)")

    output_dir: StringProperty(name="Output folder", default="", subtype="DIR_PATH",
                               description="Where passes, exports and renders go; "
                                           "empty = the preferences' folder")

    # Job state (main thread only)
    connection: StringProperty(default="not connected")
    device: StringProperty(default="")
    job_kind: StringProperty(default="")
    job_stage: StringProperty(default="")
    job_step: IntProperty(default=0)
    job_total: IntProperty(default=0)
    job_loss: FloatProperty(default=0.0)
    job_message: StringProperty(default="")
    job_preview: StringProperty(default="", description="Name of the preview image datablock")

    # Results
    results: CollectionProperty(type=MetamorphResult)
    active_result: IntProperty(default=0)
    side_by_side: BoolProperty(name="Side by side", default=False,
                               description="Also render the original and join both images")


classes = (MetamorphStyleTerm, MetamorphResult, MetamorphSettings)


def register():
    bpy.types.Scene.metamorph = PointerProperty(type=MetamorphSettings)


def unregister():
    del bpy.types.Scene.metamorph
