"""Turn a :class:`shared.stylize.StylizeResult` into Blender data.

Apply makes a stylized *copy* of the avatar's meshes in the "Metamorph Results"
collection and never writes to the originals: the copy's rest shape gets the
neutral offsets, every expression shape key its own stylized offsets (so the
copied shape-key action drives the copy exactly like the original), and its
materials are copies whose base colour uses the stylized images (packed, sRGB).
Everything is checked before anything is created, and whatever was created is
removed again if a step fails, so a result is applied whole or not at all.
The calling operator (``UNDO`` flag) makes it one undo step.
"""

from __future__ import annotations

import bpy
import numpy as np

from ._shared import errors
from .selection import RESULTS_COLLECTION


def style_name(result) -> str:
    name = str(result.body.get("name") or "").strip()
    return name or "Stylized"


def check_result(objects, result) -> None:
    """Raise :class:`shared.errors.InvalidAvatar` when ``result`` does not fit ``objects``
    (vertex count changed since upload, wrong shapes, NaNs)."""
    n = sum(len(o.data.vertices) for o in objects)
    off = np.asarray(result.neutral_offsets)
    if off.shape != (n, 3):
        raise errors.InvalidAvatar(
            f"The result has offsets for {off.shape[0] if off.ndim else 0} vertices but the "
            f"avatar's meshes have {n}; the meshes changed since the job was sent. Run it again.")
    names = list(result.body.get("blendshape_names", []))
    bo = np.asarray(result.blendshape_offsets)
    if bo.shape != (len(names), n, 3):
        raise errors.InvalidAvatar(f"The result's shape-key offsets have shape {list(bo.shape)}, "
                                   f"expected {[len(names), n, 3]}.")
    if not (np.isfinite(off).all() and np.isfinite(bo).all()):
        raise errors.InvalidAvatar("The result's offsets contain NaN or infinite values.")
    sets = list(result.body.get("texture_sets", []))
    if len(result.textures) != len(sets):
        raise errors.InvalidAvatar("The result's textures do not match its texture sets.")
    for t in result.textures:
        if t.dtype != np.uint8 or t.ndim != 3 or t.shape[2] not in (3, 4):
            raise errors.InvalidAvatar(f"A stylized texture must be [H,W,3] uint8 sRGB, got "
                                       f"{t.dtype} {list(t.shape)}.")


def image_from_array(name: str, img: np.ndarray, colorspace: str = "sRGB", pack: bool = True):
    """A new image datablock from ``img`` [H,W,3|4] uint8 (row 0 = top) or float
    (linear when ``colorspace`` is "Non-Color"/"Linear Rec.709"). Packed into the
    .blend so nothing depends on a temporary file."""
    h, w = img.shape[:2]
    im = bpy.data.images.new(name, width=w, height=h, alpha=img.shape[2] == 4,
                             float_buffer=img.dtype != np.uint8)
    im.colorspace_settings.name = colorspace
    rgba = np.ones((h, w, 4), np.float32)
    c = img.shape[2]
    # Blender's buffers start at the bottom row: write the rows flipped.
    if img.dtype == np.uint8:
        lut = np.arange(256, dtype=np.float32) / 255.0
        np.take(lut, img[::-1], out=rgba[..., :c])
    else:
        rgba[..., :c] = img[::-1]
    im.pixels.foreach_set(rgba.ravel())
    im.update()
    if pack:
        im.pack()
    return im


def results_collection(scene):
    coll = bpy.data.collections.get(RESULTS_COLLECTION)
    if coll is None:
        coll = bpy.data.collections.new(RESULTS_COLLECTION)
    if coll.name not in scene.collection.children:
        scene.collection.children.link(coll)
    return coll


def _copy_action(ad_src, ad_dst):
    """Give ``ad_dst`` its own copy of ``ad_src``'s action (same slot)."""
    if ad_src is None or ad_src.action is None:
        return None
    act = ad_src.action.copy()
    slot_id = ad_src.action_slot.identifier if getattr(ad_src, "action_slot", None) else None
    ad_dst.action = act
    if hasattr(ad_dst, "action_slot") and act.slots:
        slot = next((s for s in act.slots if s.identifier == slot_id), act.slots[0])
        if ad_dst.action_slot != slot:
            ad_dst.action_slot = slot
    return act


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


def apply_result(scene, objects, result, name: str | None = None) -> list:
    """Create the stylized copy of ``objects`` (the avatar's meshes, in upload order)
    from ``result``. Returns the new objects. Raises InvalidAvatar before creating
    anything when the result does not fit."""
    check_result(objects, result)
    name = name or style_name(result)
    created: list = []  # (collection, datablock) to remove if anything fails
    try:
        return _apply(scene, objects, result, name, created)
    except Exception:
        for coll, db in reversed(created):
            try:
                coll.remove(db)
            except (ReferenceError, RuntimeError):
                pass
        raise


def _apply(scene, objects, result, name, created):
    out_coll = results_collection(scene)
    sets = [str(s) for s in result.body.get("texture_sets", [])]
    images = []
    for i, (tsname, tex) in enumerate(zip(sets, result.textures)):
        im = image_from_array(f"{name} {tsname}", np.ascontiguousarray(tex))
        created.append((bpy.data.images, im))
        images.append(im)

    def image_for(mat_name: str | None):
        if mat_name in sets:
            return images[sets.index(mat_name)]
        return images[0] if len(images) == 1 else None

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
        mesh = src.data.copy()
        created.append((bpy.data.meshes, mesh))
        mesh.name = f"{name} {src.data.name}"
        obj = src.copy()
        created.append((bpy.data.objects, obj))
        obj.data = mesh
        obj.name = name if len(objects) == 1 else f"{name} {src.name}"
        for c in obj.users_collection:
            c.objects.unlink(obj)
        out_coll.objects.link(obj)
        obj["metamorph_style"] = name
        obj["metamorph_source"] = src.name

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
        new_rest = rest.reshape(n, 3) + neutral_l
        mesh.vertices.foreach_set("co", new_rest.ravel())
        key = mesh.shape_keys
        if key is not None:
            ref = key.reference_key
            old = {}
            buf = np.empty(n * 3, np.float32)
            for kb in key.key_blocks:
                kb.data.foreach_get("co", buf)
                old[kb.name] = buf.reshape(n, 3).copy()
            new = {ref.name: old[ref.name] + neutral_l}

            def stylized(kb, depth=0):
                # Each key keeps its delta to its relative key plus its own offset, so
                # chains of relative keys stay consistent.
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
            src_key = src.data.shape_keys
            if src_key.animation_data is not None:
                if key.animation_data is None:
                    key.animation_data_create()
                act = _copy_action(src_key.animation_data, key.animation_data)
                if act is not None:
                    created.append((bpy.data.actions, act))
        if src.animation_data is not None and src.animation_data.action is not None:
            act = _copy_action(src.animation_data, obj.animation_data)
            if act is not None:
                created.append((bpy.data.actions, act))
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
                mc = m.copy()
                created.append((bpy.data.materials, mc))
                mc.name = f"{name} {m.name}"
                _set_base_image(mc, im, uv_map)
                mat_copies[m.name] = mc
            # Slots may link the material to the object or to the mesh; set it where it lives.
            if slot.link == "OBJECT":
                obj.material_slots[slot_i].material = mat_copies[m.name]
            else:
                mesh.materials[slot_i] = mat_copies[m.name]
        if not obj.material_slots and images:
            mc = bpy.data.materials.new(f"{name} material")
            created.append((bpy.data.materials, mc))
            _set_base_image(mc, images[0], uv_map)
            mesh.materials.append(mc)
        copies.append(obj)

    # Keep parenting inside the avatar (eyes parented to the head...).
    by_src = {s.name: c for s, c in zip(objects, copies)}
    for c in copies:
        if c.parent is not None and c.parent.name in by_src:
            mw = c.matrix_world.copy()
            c.parent = by_src[c.parent.name]
            c.matrix_world = mw
    return copies


def record_result(scene, name: str, objects, folder: str = "") -> None:
    """Add (or refresh) the entry for ``name`` in the panel's results list."""
    s = scene.metamorph
    item = next((r for r in s.results if r.name == name), None)
    if item is None:
        item = s.results.add()
        item.name = name
    item.object_names = ";".join(o.name for o in objects)
    item.folder = folder
    s.active_result = list(s.results).index(item)


def result_objects(item) -> list:
    return [bpy.data.objects[n] for n in item.object_names.split(";") if n in bpy.data.objects]


def unique_style_name(base: str) -> str:
    """``base``, or ``base.001``... so a second run of the same prompt keeps the first."""
    coll = bpy.data.collections.get(RESULTS_COLLECTION)
    taken = {o.get("metamorph_style") for o in coll.all_objects} if coll else set()
    if base not in taken:
        return base
    i = 1
    while f"{base}.{i:03d}" in taken:
        i += 1
    return f"{base}.{i:03d}"
