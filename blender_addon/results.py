"""Turn a :class:`shared.stylize.StylizeResult` into Blender data: the stylized copy.

Apply makes a stylized *copy* of the avatar's meshes in the "Metamorph Results"
collection and never writes to the originals: the copy's rest shape gets the
neutral offsets, every expression shape key its own stylized offsets, and the copy
plays the original's shape-key action (the same action by default, so later edits
to the original's keys carry over; a copy of it with the ``copy_action``
preference). Its materials are copies whose base colour uses the stylized images
(packed, sRGB). Everything is checked before anything is created, and whatever was
created is removed again if a step fails (:class:`datablocks.Created`), so a result
is applied whole or not at all. The calling operator (``UNDO``) makes it one undo step.
"""

from __future__ import annotations

import bpy
import numpy as np

from . import animation, images
from ._shared import errors
from .datablocks import Created
from .selection import RESULTS_COLLECTION


def style_name(result) -> str:
    name = result.body.get("name")
    name = name.strip() if isinstance(name, str) else ""
    return name or "Stylized"


def check_result(objects, result) -> None:
    """Raise :class:`shared.errors.InvalidAvatar` when ``result`` does not fit ``objects``
    (vertex count changed since upload, wrong shapes or types, NaNs)."""
    n = sum(len(o.data.vertices) for o in objects)
    body = result.body
    for key, typ in (("texture_sets", list), ("blendshape_names", list)):
        if not isinstance(body.get(key, []), typ) or \
                not all(isinstance(x, str) for x in body.get(key, [])):
            raise errors.InvalidAvatar(f"The result's '{key}' is not a list of names.")
    off = np.asarray(result.neutral_offsets)
    if off.ndim != 2 or off.shape[1] != 3 or not np.issubdtype(off.dtype, np.floating):
        raise errors.InvalidAvatar(f"The result's neutral offsets are {off.dtype} {list(off.shape)}, "
                                   f"expected float [{n}, 3] (one xyz offset per vertex).")
    if off.shape[0] != n:
        raise errors.InvalidAvatar(
            f"The result has offsets for {off.shape[0]} vertices but the avatar's meshes have {n}; "
            "the meshes changed since the job was sent. Run it again.")
    names = list(body.get("blendshape_names", []))
    bo = np.asarray(result.blendshape_offsets)
    if bo.shape != (len(names), n, 3):
        raise errors.InvalidAvatar(f"The result's shape-key offsets have shape {list(bo.shape)}, "
                                   f"expected {[len(names), n, 3]}.")
    if not (np.isfinite(off).all() and np.isfinite(bo).all()):
        raise errors.InvalidAvatar("The result's offsets contain NaN or infinite values.")
    sets = list(body.get("texture_sets", []))
    if len(result.textures) != len(sets):
        raise errors.InvalidAvatar("The result's textures do not match its texture sets.")
    for t in result.textures:
        t = np.asarray(t)
        if t.dtype != np.uint8 or t.ndim != 3 or t.shape[2] not in (3, 4) or 0 in t.shape:
            raise errors.InvalidAvatar(f"A stylized texture must be [H,W,3] uint8 sRGB, got "
                                       f"{t.dtype} {list(t.shape)}.")


def results_collection(scene, made: Created | None = None):
    coll = bpy.data.collections.get(RESULTS_COLLECTION)
    if coll is None:
        coll = bpy.data.collections.new(RESULTS_COLLECTION)
        if made is not None:
            made.add(bpy.data.collections, coll)
    if coll.name not in scene.collection.children:
        scene.collection.children.link(coll)
    return coll


def _set_base_image(mat, image, uv_map: str | None):
    """Make ``image`` the base colour of ``mat`` (a copy): replace the image node
    feeding Principled BSDF's Base Color, or add one."""
    nt = mat.node_tree
    if nt is None:
        mat.use_nodes = True
        nt = mat.node_tree
    bsdf = next((n for n in nt.nodes if n.type == "BSDF_PRINCIPLED"), None)
    if bsdf is None:
        bsdf = nt.nodes.new("ShaderNodeBsdfPrincipled")
        out = next((n for n in nt.nodes if n.type == "OUTPUT_MATERIAL"), None) or \
            nt.nodes.new("ShaderNodeOutputMaterial")
        nt.links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
    sock = bsdf.inputs["Base Color"]
    node = None
    if sock.is_linked and sock.links[0].from_node.type == "TEX_IMAGE":
        node = sock.links[0].from_node
    if node is None:
        node = nt.nodes.new("ShaderNodeTexImage")
        node.location = (bsdf.location.x - 350, bsdf.location.y)
        nt.links.new(node.outputs["Color"], sock)
        if uv_map:
            uv = nt.nodes.new("ShaderNodeUVMap")
            uv.uv_map = uv_map
            uv.location = (node.location.x - 250, node.location.y)
            nt.links.new(uv.outputs["UV"], node.inputs["Vector"])
    node.image = image
    return node


def apply_result(scene, objects, result, name: str | None = None, made: Created | None = None,
                 copy_action: bool = False, uv_overrides: dict | None = None,
                 labels: dict | None = None) -> list:
    """Create the stylized copy of ``objects`` (the avatar's meshes, in upload order)
    from ``result``. Returns the new objects. Raises InvalidAvatar before creating
    anything when the result does not fit; removes what it made on any failure.
    ``made``: an outer :class:`Created` to record into (the caller rolls back);
    ``uv_overrides``: {source name: per-loop UVs [L,2]} for meshes stylized through an
    unwrapped copy; ``labels``: custom properties put on every new object and mesh."""
    check_result(objects, result)
    name = name or style_name(result)
    if made is not None:
        return _apply(scene, objects, result, name, made, copy_action, uv_overrides, labels)
    with Created() as own:
        return _apply(scene, objects, result, name, own, copy_action, uv_overrides, labels)


def _stylize_keys(key, n, neutral_l, shape_off, names, local, sl):
    """Write every key block: its delta to its relative key plus its own offset, so
    chains of relative keys stay consistent."""
    ref = key.reference_key
    old = {}
    buf = np.empty(n * 3, np.float32)
    for kb in key.key_blocks:
        kb.data.foreach_get("co", buf)
        old[kb.name] = buf.reshape(n, 3).copy()
    new = {ref.name: old[ref.name] + neutral_l}

    def stylized(kb, depth=0):
        if kb.name in new:
            return new[kb.name]
        rel = kb.relative_key if kb.relative_key is not None else ref
        if rel == kb or depth > len(key.key_blocks):
            base, delta = new[ref.name], old[kb.name] - old[ref.name]
        else:
            base, delta = stylized(rel, depth + 1), old[kb.name] - old[rel.name]
        off = local(shape_off[names.index(kb.name), sl]) if kb.name in names else 0.0
        new[kb.name] = base + delta + off
        return new[kb.name]

    for kb in key.key_blocks:
        kb.data.foreach_set("co", stylized(kb).ravel())


def _apply(scene, objects, result, name, made, copy_action, uv_overrides, labels):
    out_coll = results_collection(scene, made)
    sets = [str(s) for s in result.body.get("texture_sets", [])]
    imgs = [made.add(bpy.data.images, images.from_array(f"{name} {ts}", np.ascontiguousarray(tex)))
            for ts, tex in zip(sets, result.textures)]

    def image_for(mat_name: str | None):
        if mat_name in sets:
            return imgs[sets.index(mat_name)]
        return imgs[0] if len(imgs) == 1 else None

    names = list(result.body.get("blendshape_names", []))
    neutral = np.asarray(result.neutral_offsets, np.float32)
    shape_off = np.asarray(result.blendshape_offsets, np.float32)
    mat_copies: dict[str, object] = {}
    copies = []
    start = 0
    for src in objects:
        n = len(src.data.vertices)
        sl = slice(start, start + n)
        start += n
        mesh = made.add(bpy.data.meshes, src.data.copy())
        mesh.name = f"{name} {src.data.name}"
        obj = made.add(bpy.data.objects, src.copy())
        obj.data = mesh
        obj.name = name if len(objects) == 1 else f"{name} {src.name}"
        for c in obj.users_collection:
            c.objects.unlink(obj)
        out_coll.objects.link(obj)
        obj["metamorph_style"] = name
        obj["metamorph_source"] = src.name
        for k, v in (labels or {}).items():
            obj[k] = v
            mesh[k] = v
        if uv_overrides and src.name in uv_overrides:
            uvl = mesh.uv_layers.new(name="UVMap")
            uvl.uv.foreach_set("vector", np.asarray(uv_overrides[src.name], np.float32).ravel())
            mesh.uv_layers.active = uvl

        # Offsets arrive in world space (the avatar is extracted in world space);
        # a displacement maps back to object space through the inverse linear part.
        lin = np.array(src.matrix_world, dtype=np.float64)[:3, :3]
        to_local = np.linalg.inv(lin).T if abs(np.linalg.det(lin)) > 1e-12 else np.eye(3)
        identity = np.allclose(to_local, np.eye(3), rtol=0, atol=1e-12)

        def local(d):
            if identity:  # the usual case; skips 50k x 3 matmuls per shape key
                return d
            return (d.astype(np.float64) @ to_local).astype(np.float32)

        neutral_l = local(neutral[sl])
        rest = np.empty(n * 3, np.float32)
        src.data.vertices.foreach_get("co", rest)
        mesh.vertices.foreach_set("co", (rest.reshape(n, 3) + neutral_l).ravel())
        key = mesh.shape_keys
        if key is not None:
            _stylize_keys(key, n, neutral_l, shape_off, names, local, sl)
            act = animation.share_action(src.data.shape_keys.animation_data, key, copy=copy_action)
            if act is not None:
                made.add(bpy.data.actions, act)
        if src.animation_data is not None and src.animation_data.action is not None:
            act = animation.share_action(src.animation_data, obj, copy=copy_action)
            if act is not None:
                made.add(bpy.data.actions, act)
        mesh.update()

        uv_map = mesh.uv_layers.active.name if mesh.uv_layers.active else None
        for slot_i, slot in enumerate(obj.material_slots):
            m = slot.material
            if m is None:
                continue
            im = image_for(m.name)
            if im is None:
                continue
            if m.name not in mat_copies:
                mc = made.add(bpy.data.materials, m.copy())
                mc.name = f"{name} {m.name}"
                _set_base_image(mc, im, uv_map)
                mat_copies[m.name] = mc
            # Slots may link the material to the object or to the mesh; set it where it lives.
            if slot.link == "OBJECT":
                obj.material_slots[slot_i].material = mat_copies[m.name]
            else:
                mesh.materials[slot_i] = mat_copies[m.name]
        if not obj.material_slots and imgs:
            mc = made.add(bpy.data.materials, bpy.data.materials.new(f"{name} material"))
            _set_base_image(mc, imgs[0], uv_map)
            mesh.materials.append(mc)
        copies.append(obj)

    # Keep parenting inside the avatar (eyes parented to the head...); a parent outside
    # it (an armature, a bone, an empty) stays: the copy follows the same rig.
    by_src = {s.name: c for s, c in zip(objects, copies)}
    for c in copies:
        if c.parent is not None and c.parent.name in by_src:
            mw = c.matrix_world.copy()
            c.parent = by_src[c.parent.name]
            c.matrix_world = mw
    return copies


def follows_a_rig(copies) -> bool:
    """True when a copy is skinned or parented outside the result (it must stay where
    the rig puts it)."""
    mine = set(copies)
    return any((c.parent is not None and c.parent not in mine) or
               any(m.type == "ARMATURE" and m.object is not None for m in c.modifiers)
               for c in copies)


def place_beside(copies, sources, gap: float = 0.1) -> float:
    """Move the copies' root objects along +X by the avatar's width plus ``gap`` of
    it, so the copy stands beside the original; returns the offset (0 when the copy
    follows a rig). The offset is recorded (``metamorph_offset``) so exports undo it."""
    if not copies or follows_a_rig(copies):
        return 0.0
    from .rig import world_bounds
    lo, hi = world_bounds(sources)
    dx = float(hi[0] - lo[0]) * (1.0 + gap) or 0.5
    for c in copies:
        if c.parent is None:
            c.location.x += dx
            c["metamorph_offset"] = dx
    return dx


def record_result(scene, name: str, objects, folder: str = "", metadata: dict | None = None) -> None:
    """Add (or refresh) the entry for ``name`` in the panel's results list."""
    s = scene.metamorph
    item = next((r for r in s.results if r.name == name), None)
    if item is None:
        item = s.results.add()
        item.name = name
    item.object_names = ";".join(o.name for o in objects)
    item.folder = folder
    md = metadata or {}
    item.guidance = str(md.get("guidance", ""))
    item.is_test_model = bool(md.get("guidance_is_test_model"))
    s.active_result = list(s.results).index(item)


def result_objects(item) -> list:
    return [bpy.data.objects[n] for n in item.object_names.split(";") if n in bpy.data.objects]


def missing_objects(item) -> list[str]:
    return [n for n in item.object_names.split(";") if n and n not in bpy.data.objects]


def unique_style_name(base: str) -> str:
    """``base``, or ``base.001``... so a second run of the same prompt keeps the first."""
    coll = bpy.data.collections.get(RESULTS_COLLECTION)
    taken = {o.get("metamorph_style") for o in coll.all_objects} if coll else set()
    taken |= {r.name for sc in bpy.data.scenes for r in getattr(sc, "metamorph").results} \
        if hasattr(bpy.types.Scene, "metamorph") else set()
    if base not in taken:
        return base
    i = 1
    while f"{base}.{i:03d}" in taken:
        i += 1
    return f"{base}.{i:03d}"
