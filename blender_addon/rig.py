"""Camera rigs: a turntable of cameras around the avatar's head, and reading
Blender cameras into :class:`shared.camera.Camera`.
"""

from __future__ import annotations

import math

import bpy
import numpy as np
from mathutils import Matrix, Vector

from . import animation
from ._shared import camera as mm_camera

ORBIT_NAME = "MM Orbit"
RIG_NAME = "Metamorph Rig"
RIG_MARK = "metamorph_rig"  # custom property on rigs this add-on made (and may replace)


def world_bounds(objects) -> tuple[np.ndarray, np.ndarray]:
    """World-space axis-aligned bounds ``(min[3], max[3])`` in metres of the meshes' vertices."""
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    bpy.context.view_layer.update()  # matrix_world is stale right after a transform edit
    for o in objects:
        n = len(o.data.vertices)
        if n == 0:
            continue
        co = np.empty(n * 3, np.float32)
        o.data.vertices.foreach_get("co", co)
        m = np.array(o.matrix_world, dtype=np.float64)
        w = co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3]
        lo = np.minimum(lo, w.min(0))
        hi = np.maximum(hi, w.max(0))
    if not np.isfinite(lo).all():
        raise ValueError("The avatar has no vertices to frame.")
    return lo, hi


def head_frame(objects) -> tuple[Vector, float]:
    """Centre (world, metres) and size of the avatar's head: the top of the
    bounds, as tall as the avatar is wide (a head-only avatar is all head)."""
    lo, hi = world_bounds(objects)
    width = max(hi[0] - lo[0], hi[1] - lo[1], 1e-3)
    size = min(hi[2] - lo[2], width * 1.3) or width
    centre = Vector(((lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, hi[2] - size / 2))
    return centre, float(max(size, width))


def look_at(location: Vector, target: Vector) -> Matrix:
    """Camera-to-world matrix at ``location`` looking at ``target`` with world Z up
    (Blender cameras look down local -Z, +Y up)."""
    quat = (location - target).to_track_quat("Z", "Y")
    return Matrix.Translation(location) @ quat.to_matrix().to_4x4()


def parse_elevations(text: str) -> list[float]:
    """"0, 25, -20" -> [0.0, 25.0, -20.0] degrees; raises ValueError with a readable message."""
    try:
        vals = [float(t) for t in text.replace(";", ",").split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"Elevations must be numbers in degrees separated by commas, got '{text}'.")
    if not vals or any(abs(v) >= 90 for v in vals):
        raise ValueError("Give at least one elevation, each strictly between -90 and 90 degrees.")
    return vals


def create_turntable_rig(scene, objects, count: int = 8, elevations=(0.0, 25.0, -20.0),
                         distance: float = 0.0, lens: float = 50.0,
                         name: str = RIG_NAME, replace=None, lights: bool = False):
    """Create a collection of ``count`` cameras per elevation ring (degrees) around
    the head of ``objects``, plus an orbit camera animated once around the head
    over the scene's frame range. ``distance`` 0 frames the head. ``replace``: a rig
    made before by this add-on, removed first (rigs never pile up as .001, .002);
    ``lights``: add three-point lights. Returns the collection (linked to the
    scene's master collection)."""
    centre, size = head_frame(objects)
    remove_rig(replace)
    coll = bpy.data.collections.new(name)
    coll[RIG_MARK] = True
    scene.collection.children.link(coll)
    sensor = 36.0
    if distance <= 0:
        # Fit the head (plus a margin) in the smaller field of view.
        half_fov = math.atan(sensor / 2 / lens)
        distance = 0.65 * size / math.tan(half_fov) + size / 2
    clip_end = max(100.0, distance * 4)

    def new_camera(cam_name):
        data = bpy.data.cameras.new(cam_name)
        data.lens = lens
        data.sensor_width = sensor
        data.clip_start = max(1e-3, distance * 0.01)
        data.clip_end = clip_end
        obj = bpy.data.objects.new(cam_name, data)
        coll.objects.link(obj)
        return obj

    for r, elev in enumerate(elevations):
        e = math.radians(elev)
        for i in range(count):
            a = 2 * math.pi * i / count
            # Camera 0 of each ring faces the avatar's front (Blender's -Y).
            loc = centre + distance * Vector((math.sin(a) * math.cos(e), -math.cos(a) * math.cos(e),
                                              math.sin(e)))
            cam = new_camera(f"MM Cam r{r} {i:02d}")
            cam.matrix_world = look_at(loc, centre)

    # Orbit: an empty at the head spinning once over the timeline carries a camera.
    pivot = bpy.data.objects.new("MM Orbit Pivot", None)
    coll.objects.link(pivot)
    pivot.location = centre
    orbit = new_camera(ORBIT_NAME)
    orbit["metamorph_orbit"] = True
    orbit.parent = pivot
    orbit.matrix_parent_inverse = Matrix.Identity(4)
    orbit.matrix_basis = look_at(Vector((0.0, -distance, 0.0)), Vector((0.0, 0.0, 0.0)))
    f0, f1 = scene.frame_start, scene.frame_end
    pivot.rotation_euler = (0.0, 0.0, 0.0)
    pivot.keyframe_insert("rotation_euler", index=2, frame=f0)
    # One full turn ending one frame after the range so the loop does not repeat a frame.
    pivot.rotation_euler = (0.0, 0.0, 2 * math.pi)
    pivot.keyframe_insert("rotation_euler", index=2, frame=f1 + 1)
    for fc in _object_fcurves(pivot):
        for kp in fc.keyframe_points:
            kp.interpolation = "LINEAR"
    pivot.rotation_euler = (0.0, 0.0, 0.0)
    if lights:
        add_three_point_lights(coll, centre, size, distance)
    return coll


def _object_fcurves(obj):
    return animation.id_fcurves(obj)


def remove_rig(coll) -> bool:
    """Delete a rig this add-on made (its cameras, camera data, lights, pivot and the
    pivot's action) and its collection. A collection it did not make is left alone;
    returns whether something was removed."""
    if coll is None or not coll.get(RIG_MARK):
        return False
    for o in list(coll.objects):
        data = o.data
        act = o.animation_data.action if o.animation_data else None
        bpy.data.objects.remove(o)
        if data is not None and data.users == 0:
            (bpy.data.cameras if isinstance(data, bpy.types.Camera) else bpy.data.lights).remove(data)
        if act is not None and act.users == 0:
            bpy.data.actions.remove(act)
    bpy.data.collections.remove(coll)
    return True


def add_three_point_lights(coll, centre: Vector, size: float, distance: float) -> list:
    """Key, fill and rim area lights aimed at the head (for Eevee/Cycles turntables of a
    scene without lights). Power scales with the distance so the head is lit alike at
    any size."""
    made = []
    for name, az, el, power in (("Key", -40.0, 30.0, 1.0), ("Fill", 50.0, 10.0, 0.4),
                                ("Rim", 170.0, 40.0, 0.7)):
        data = bpy.data.lights.new(f"MM {name} Light", "AREA")
        data.size = max(size, 0.05)
        data.energy = 40.0 * power * distance ** 2
        obj = bpy.data.objects.new(f"MM {name} Light", data)
        coll.objects.link(obj)
        a, e = math.radians(az), math.radians(el)
        loc = centre + distance * Vector((math.sin(a) * math.cos(e), -math.cos(a) * math.cos(e),
                                          math.sin(e)))
        obj.matrix_world = look_at(loc, centre)
        made.append(obj)
    return made


def camera_from_object(scene, obj, frame: float | None = None) -> "mm_camera.Camera":
    """A :class:`shared.camera.Camera` from a Blender camera object, at ``frame``
    (the scene's current frame when None; the frame is restored afterwards).

    Resolution is the scene's render size times its percentage; pixel aspect,
    shift, sensor fit and orthographic scale are read as Blender stores them.
    """
    if obj is None or obj.type != "CAMERA":
        raise ValueError(f"'{getattr(obj, 'name', obj)}' is not a camera.")
    current = scene.frame_current, scene.frame_subframe
    if frame is not None and float(frame) != current[0] + current[1]:
        scene.frame_set(int(math.floor(frame)), subframe=float(frame) - math.floor(frame))
    try:
        r = scene.render
        pct = r.resolution_percentage / 100.0
        cam = obj.data
        return mm_camera.Camera(
            matrix_world=np.array(obj.matrix_world, dtype=np.float64),
            type="ORTHO" if cam.type == "ORTHO" else "PERSP",
            lens=float(cam.lens), sensor_width=float(cam.sensor_width),
            sensor_height=float(cam.sensor_height), sensor_fit=str(cam.sensor_fit),
            shift_x=float(cam.shift_x), shift_y=float(cam.shift_y),
            ortho_scale=float(cam.ortho_scale), clip_start=float(cam.clip_start),
            clip_end=float(cam.clip_end),
            resolution_x=max(1, int(r.resolution_x * pct)),
            resolution_y=max(1, int(r.resolution_y * pct)),
            pixel_aspect_x=float(r.pixel_aspect_x), pixel_aspect_y=float(r.pixel_aspect_y),
            name=obj.name)
    finally:
        if frame is not None and (scene.frame_current, scene.frame_subframe) != current:
            scene.frame_set(current[0], subframe=current[1])


def cameras_for_request(scene, objects, resolution: int | None = None) -> list:
    """Cameras for a stylize request at the current frame; ``resolution`` (square,
    pixels) overrides the render size so passes come back at the pass resolution
    while keeping each camera's framing (fit is made explicit)."""
    out = []
    for o in objects:
        c = camera_from_object(scene, o)
        if resolution:
            from dataclasses import replace
            c = replace(c, resolution_x=int(resolution), resolution_y=int(resolution),
                        pixel_aspect_x=1.0, pixel_aspect_y=1.0)
        out.append(c)
    return out
