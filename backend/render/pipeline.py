"""The differentiable renderer: Blender cameras, z-buffer visibility, deferred shading.

Pipeline: project vertices (torch) -> triangle id per pixel centre (numba
z-buffer on detached CPU copies, no gradients) -> perspective-correct
barycentrics recomputed in torch at covered pixels -> interpolate UVs,
normals, depth -> bilinear texture lookup -> Lambert + ambient shading ->
scatter into images over the background. Gradients reach vertex positions
(through visible geometry and shading, not silhouettes), textures and the
background. Any device: only the projected vertices and the triangle ids
round-trip via the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from .camera import camera_batch, project, rotate, to_camera_space
from .fused import interp_cpu, sample_texture_cpu, shade_cpu, vertex_normals_cpu, vertex_stage_cpu
from .interpolate import fragments, interpolate
from .raster import rasterize
from .shade import DEFAULT_LIGHTS, Lights, lambert, sample_texture, unit_rows, vertex_normals
from .validate import check_inputs


@dataclass(frozen=True)
class RenderSettings:
    """The optional keywords of :func:`render` as one reusable object
    (``render(..., settings=RenderSettings(size=(224, 224), passes=("color", "alpha")))``)."""

    size: tuple[int, int] | None = None
    lights: Lights | None = None
    background: object = None
    passes: tuple[str, ...] = ("color",)
    grey_albedo: float = 0.8
    texture_wrap: str = "repeat"
    smooth_normals: bool = True
    two_sided: bool = True
    fused: bool = True


_DEFAULT_SETTINGS = RenderSettings()


def _is_default(value, default) -> bool:
    if value is default:
        return True
    # Plain values compare by ==; tensors/arrays are never the default (None).
    return isinstance(value, (bool, int, float, str, tuple)) and value == default


def _background(background, b, h, w, dtype, device, contiguous=True) -> torch.Tensor:
    """-> [B*H*W, 3] background colours (a contiguous tensor, or for a single colour
    with ``contiguous=False`` an expanded view: the fused shading copies it itself)."""
    if background is None and contiguous:
        return torch.zeros(b * h * w, 3, dtype=dtype, device=device)
    bg = torch.as_tensor((0.0, 0.0, 0.0) if background is None else background, dtype=dtype, device=device)
    if tuple(bg.shape) == (3,):
        bg = bg.reshape(1, 3).expand(b * h * w, 3)
        return bg.contiguous() if contiguous else bg
    if tuple(bg.shape) == (b, h, w, 3):
        return bg.reshape(b * h * w, 3)
    raise ValueError(f"background must be a colour [3] or images [B,H,W,3] = {[b, h, w, 3]}, got {list(bg.shape)}")


def render(vertices, faces, uvs, uv_faces, textures, face_material=None, cameras=(), size=None,
           lights: Lights | None = None, background=None, passes=("color",), *,
           grey_albedo: float = 0.8, texture_wrap: str = "repeat", smooth_normals: bool = True,
           two_sided: bool = True, fused: bool = True,
           settings: RenderSettings | None = None) -> dict[str, torch.Tensor]:
    """Render B views of a textured triangle mesh.

    vertices      [B,V,3] float tensor, world space (Blender: Z up, metres); may require grad
    faces         [F,3] int64; uvs [T,2] (origin bottom-left); uv_faces [F,3] int64
    textures      list of [H_i,W_i,3] linear colour tensors, row 0 = top; may require grad
    face_material [F] int64 index into textures (None -> all 0)
    cameras       B :class:`shared.camera.Camera` (one per batch item), converted by
                  :func:`shared.camera.projection`; size=(W,H) overrides the pixel count
    lights        :class:`Lights` (default: camera-space key + fill + ambient)
    background    None (black), colour [3] or images [B,H,W,3] for color/grey/albedo
    passes        any of color (Lambert+ambient, textured), grey (same lighting, constant
                  albedo ``grey_albedo``), albedo, normal_camera, normal_world (unit
                  vectors, turned to face the viewer when ``two_sided``), depth (metres
                  along the view axis, Blender's Z pass; 0 on background), alpha
                  (coverage 0/1), uv, tri_id (int64, -1 on background)
    texture_wrap  "repeat" (Blender's default image extension) or "clamp"
    smooth_normals  interpolate area-weighted vertex normals (else flat face normals)
    fused         use the fused numba kernels for float32 on the CPU (same results;
                  False forces the plain torch ops used on other devices/dtypes)
    settings      a :class:`RenderSettings` holding all of the keywords above instead
                  (then leave them at their defaults)

    Returns {pass: [B,H,W,C] tensor}, row 0 = top, linear colour, dtype of
    ``vertices``. Raises ValueError naming the problem for bad input (indices out of
    range, NaN, empty mesh, bad camera, unknown pass).
    """
    if settings is not None:
        given = dict(size=size, lights=lights, background=background, passes=passes, grey_albedo=grey_albedo,
                     texture_wrap=texture_wrap, smooth_normals=smooth_normals, two_sided=two_sided, fused=fused)
        clash = [k for k, v in given.items() if not _is_default(v, getattr(_DEFAULT_SETTINGS, k))]
        if clash:
            raise ValueError(f"pass either settings= or the keywords {clash}, not both")
        opts = {f.name: getattr(settings, f.name) for f in fields(RenderSettings)}
        size, lights, background, passes = opts["size"], opts["lights"], opts["background"], opts["passes"]
        grey_albedo, texture_wrap, smooth_normals = opts["grey_albedo"], opts["texture_wrap"], opts["smooth_normals"]
        two_sided, fused = opts["two_sided"], opts["fused"]
    passes = tuple(passes)
    check_inputs(vertices, faces, uvs, uv_faces, textures, face_material, cameras, passes)
    if texture_wrap not in ("repeat", "clamp"):
        raise ValueError(f"texture_wrap must be 'repeat' or 'clamp', got {texture_wrap!r}")
    device, dtype = vertices.device, vertices.dtype
    lights = DEFAULT_LIGHTS if lights is None else lights
    if lights.space not in ("camera", "world"):
        raise ValueError(f"lights.space must be 'camera' or 'world', got {lights.space!r}")
    use_fused = fused and device.type == "cpu" and dtype == torch.float32
    faces_i64 = faces.to(device=device, dtype=torch.int64)  # [F,3]
    faces_t = None if use_fused else faces_i64.T.contiguous()  # [3,F], torch path
    cams = camera_batch(cameras, size, device=device, dtype=dtype)
    b, v_count = vertices.shape[0], vertices.shape[1]
    h, w = cams.height, cams.width

    need_color = "color" in passes or "grey" in passes
    need_nworld = "normal_world" in passes or (need_color and lights.space == "world")
    need_ncam = "normal_camera" in passes or (need_color and lights.space == "camera")
    need_albedo = "color" in passes or "albedo" in passes
    need_uv = need_albedo or "uv" in passes

    # Camera space [B,V,3] (x right, y up, looking down -Z), then pixels (u right, v down).
    rot = cams.world_to_camera[:, :3, :3]
    # Per-vertex columns carried to the pixels: screen u, v, depth, then normals.
    extra = {}
    k = 3
    if need_nworld or need_ncam:
        if smooth_normals:
            if need_nworld:
                extra["n_world"] = k
                k += 3
            if need_ncam:
                extra["n_cam"] = k
                k += 3
        else:
            extra["pos_world"] = k
            k += 3
    if use_fused:
        # One fused numba stage for projection, normal rotation and the column layout:
        # few torch ops, so torch's worker threads do not compete with the kernels.
        n_world_v = None
        if smooth_normals and (need_nworld or need_ncam):
            n_world_v = vertex_normals_cpu(vertices, faces_i64)  # [B,V,3]
        vattr3 = vertex_stage_cpu(vertices, cams, n_world_v, with_world="n_world" in extra,
                                  with_cam="n_cam" in extra, with_pos="pos_world" in extra)  # [B,V,K]
        va_np = vattr3.detach().numpy()
        screen_np, depth_np = va_np[..., :2], va_np[..., 2]
        vattr = vattr3.reshape(b * v_count, k)  # [B*V,K]
    else:
        screen, depth = project(to_camera_space(vertices, cams), cams)  # [B,V,2], [B,V]
        screen_np, depth_np = screen.detach().cpu().numpy(), depth.detach().cpu().numpy()
        cols = [screen[..., 0:1], screen[..., 1:2], depth[..., None]]
        if "n_world" in extra or "n_cam" in extra:
            n_world_v = vertex_normals(vertices, faces_t.T)  # [B,V,3]
            if "n_world" in extra:
                cols.append(n_world_v)
            if "n_cam" in extra:
                cols.append(rotate(n_world_v, rot))
        if "pos_world" in extra:
            cols.append(vertices)
        vattr = torch.cat(cols, dim=-1).reshape(b * v_count, k)  # [B*V,K]

    tri_np, _, front_np = rasterize(screen_np, depth_np, faces_i64.cpu().numpy(), w, h,
                                    cams.ortho.cpu().numpy(), cams.near.cpu().numpy(), cams.far.cpu().numpy())
    tri_id = torch.from_numpy(tri_np).to(device)

    pts = vertices.reshape(-1, 3).T  # [3,B*V], flat-normal path only

    flat_tri = tri_id.reshape(-1)
    pixel_np = np.flatnonzero(tri_np.reshape(-1) >= 0)
    pixel = torch.from_numpy(pixel_np).to(device)
    n_pix = pixel.shape[0]
    npix_all = b * h * w
    if use_fused:
        # Fused numba path (CPU float32): same maths as .interpolate, one pass per pixel.
        frag_depth, bary, uv_fused, attrs = interp_cpu(
            vattr, faces_i64, uvs.to(device=device, dtype=dtype), uv_faces.to(device=device, dtype=torch.int64),
            pixel, tri_id, cams.ortho)
        attr = {name: attrs[i - 3:i] for name, i in extra.items()}
        front = torch.from_numpy(front_np.reshape(-1)[pixel_np])
        tri = view = corner = None
        if face_material is not None or not smooth_normals:  # these need triangle ids per pixel
            tri = flat_tri.index_select(0, pixel).long()
            view = torch.div(pixel, h * w, rounding_mode="floor")
            corner = faces_i64.index_select(0, tri) + (view * v_count)[:, None]
    else:
        frag = fragments(tri_id, faces_t, vattr.T.contiguous(), cams.ortho)
        tri, view, frag_depth, bary, front = frag.tri, frag.view, frag.depth, frag.bary, frag.front
        attr = {name: interpolate([a[i - 3:i] for a in frag.corner_attrs], bary) for name, i in extra.items()}
        if not smooth_normals:
            attr["pos_world"] = [a[extra["pos_world"] - 3:extra["pos_world"]] for a in frag.corner_attrs]

    # Fused CPU shading writes the shaded pixels straight into the image from the raw
    # (unnormalised) normals and the UVs; it needs one texture for all faces.
    fused_color = use_fused and "color" in passes and (face_material is None or len(textures) == 1)
    fused_grey = use_fused and "grey" in passes
    torch_shading = ("color" in passes and not fused_color) or ("grey" in passes and not fused_grey)

    n_world = n_cam = n_light_raw = sign = None
    if need_nworld or need_ncam:
        if smooth_normals:
            n_world = attr.get("n_world")
            n_cam = attr.get("n_cam")
        else:
            if use_fused:  # flat normals need the corners themselves: gather them (rare path)
                p0, p1, p2 = (pts.index_select(1, corner[:, i]) for i in range(3))
            else:
                p0, p1, p2 = attr["pos_world"]
            e1, e2 = p1 - p0, p2 - p0
            n_world = torch.stack([e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2],
                                   e1[0] * e2[1] - e1[1] * e2[0]])
            if need_ncam:
                r = rot.index_select(0, view)  # [N,3,3]
                n_cam = torch.einsum("ncj,jn->cn", r, n_world)
        n_light_raw = n_cam if lights.space == "camera" else n_world
        # Unit normals, only where something other than the fused shading reads them.
        unit_world = n_world is not None and ("normal_world" in passes or (torch_shading and lights.space == "world"))
        unit_cam = n_cam is not None and ("normal_camera" in passes or (torch_shading and lights.space == "camera"))
        if two_sided and (unit_world or unit_cam):
            # Back faces seen through open meshes are shaded like front faces.
            sign = torch.where(front, 1.0, -1.0).to(dtype)
        n_world = unit_rows(n_world) if unit_world else None
        if n_world is not None and sign is not None:
            n_world = n_world * sign
        n_cam = unit_rows(n_cam) if unit_cam else None
        if n_cam is not None and sign is not None:
            n_cam = n_cam * sign

    uv = albedo = None
    if need_uv and use_fused:
        uv = uv_fused
    elif need_uv:
        uvs_ = uvs.to(device=device, dtype=dtype)
        uvc = uv_faces.to(device=device, dtype=torch.int64).index_select(0, tri)  # [N,3]
        corners_uv = uvs_.index_select(0, uvc.reshape(-1)).reshape(-1, 3, 2)
        uv = (corners_uv * bary.T[:, :, None]).sum(1).T  # [2,N]
    if "albedo" in passes or ("color" in passes and not fused_color):
        def lookup(tex, sel=None):
            tex = tex.to(device=device, dtype=dtype)
            uv_sel = uv if sel is None else uv.index_select(1, sel)
            if use_fused:
                return sample_texture_cpu(tex, uv_sel.T, texture_wrap).T
            return sample_texture(tex, uv_sel, texture_wrap)

        if face_material is None or len(textures) == 1:
            albedo = lookup(textures[0])
        else:
            mat = face_material.to(device=device, dtype=torch.int64).index_select(0, tri)
            albedo = torch.zeros(3, n_pix, dtype=dtype, device=device)
            for m, tex in enumerate(textures):
                sel = torch.nonzero(mat == m).squeeze(1)
                if sel.numel():
                    albedo = albedo.index_copy(1, sel, lookup(tex, sel))

    bg = None
    if any(p in passes for p in ("color", "grey", "albedo")):
        bg = _background(background, b, h, w, dtype, device, contiguous=not use_fused)
    n_light = n_cam if lights.space == "camera" else n_world
    out: dict[str, torch.Tensor] = {}

    def emit(name, values, base=None):
        # values [C,N] channel-first; images are stored [B*H*W, C] so no permute copy is needed.
        if base is None:
            base = torch.zeros(npix_all, values.shape[0], dtype=dtype, device=device)
        out[name] = base.index_copy(0, pixel, values.T.to(dtype)).reshape(b, h, w, -1)

    for name in passes:
        if name == "color" and fused_color:
            out[name] = shade_cpu(n_light_raw, front, lights, bg, pixel, texture=textures[0].to(dtype=dtype), uv=uv,
                                  wrap=texture_wrap, two_sided=two_sided).reshape(b, h, w, -1)
        elif name == "grey" and fused_grey:
            out[name] = shade_cpu(n_light_raw, front, lights, bg, pixel, albedo=grey_albedo,
                                  two_sided=two_sided).reshape(b, h, w, -1)
        elif name == "color":
            emit(name, lambert(albedo, n_light, lights), bg)
        elif name == "grey":
            grey = torch.full((3, 1), float(grey_albedo), dtype=dtype, device=device)
            emit(name, lambert(grey, n_light, lights), bg)
        elif name == "albedo":
            emit(name, albedo, bg)
        elif name == "normal_world":
            emit(name, n_world)
        elif name == "normal_camera":
            emit(name, n_cam)
        elif name == "depth":
            emit(name, frag_depth[None])
        elif name == "alpha":
            emit(name, torch.ones(1, n_pix, dtype=dtype, device=device))
        elif name == "uv":
            emit(name, uv)
        elif name == "tri_id":
            out[name] = tri_id.to(torch.int64).reshape(b, h, w, 1)
    return out
