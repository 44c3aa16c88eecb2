"""The differentiable renderer: Blender cameras, z-buffer visibility, deferred shading.

Pipeline: per-vertex columns (projection, normals) -> triangle id per pixel
centre (numba z-buffer on detached CPU copies, no gradients) -> perspective-correct
barycentrics recomputed differentiably at covered pixels -> interpolate normals,
depth, UVs -> bilinear texture lookup -> Lambert + ambient shading -> scatter
into images over the background. Gradients reach vertex positions (through
visible geometry and shading; through silhouettes too with ``antialias``, see
:mod:`.antialias`), textures and the background. Any
device: only the projected vertices and the triangle ids round-trip via the CPU.
The differentiable stages come from one :class:`.kernels.KernelSet`, picked once
per call from the device and dtype.
"""

from __future__ import annotations

import torch

from .antialias import antialias
from .camera import camera_batch
from .kernels import kernel_set
from .raster import rasterize
from .settings import RenderSettings, settings_from
from .shade import lambert, unit_rows
from .validate import check_inputs


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


def _columns(s: RenderSettings, need_nworld: bool, need_ncam: bool) -> dict[str, int]:
    """Per-vertex 3-wide column blocks carried to the pixels after screen u, v and
    depth: {name: first column of the block}; K = 3 + 3 * len."""
    names = []
    if need_nworld or need_ncam:
        if s.smooth_normals:
            names += ["n_world"] if need_nworld else []
            names += ["n_cam"] if need_ncam else []
        else:
            names.append("pos_world")
    return {name: 3 + 3 * i for i, name in enumerate(names)}


def render(vertices, faces, uvs, uv_faces, textures, face_material=None, cameras=(), *,
           settings: RenderSettings | None = None, **options) -> dict[str, torch.Tensor]:
    """Render B views of a textured triangle mesh.

    vertices      [B,V,3] float tensor, world space (Blender: Z up, metres); may require grad
    faces         [F,3] int64; uvs [T,2] (origin bottom-left); uv_faces [F,3] int64
    textures      list of [H_i,W_i,3] linear colour tensors, row 0 = top; may require grad
    face_material [F] int64 index into textures (None -> all 0)
    cameras       B :class:`shared.camera.Camera` (one per batch item), converted by
                  :func:`shared.camera.projection`
    settings      a :class:`RenderSettings` (size, lights, background, passes, ...), or
    **options     its fields as keywords (``passes=("color", "alpha"), size=(224, 224)``), not both

    Returns {pass: [B,H,W,C] tensor}, row 0 = top, linear colour, dtype of
    ``vertices``. Raises ValueError naming the problem for bad input (indices out of
    range, NaN, empty mesh, bad camera, unknown pass or option value).
    """
    s = settings_from(settings, options)
    passes, lights = s.passes, s.lights
    check_inputs(vertices, faces, uvs, uv_faces, textures, face_material, cameras)
    device, dtype = vertices.device, vertices.dtype
    ks = kernel_set(device, dtype, s.fused)
    faces_i64 = faces.to(device=device, dtype=torch.int64)  # [F,3]
    cams = camera_batch(cameras, s.size, device=device, dtype=dtype)
    b, h, w = vertices.shape[0], cams.height, cams.width

    need_color = "color" in passes or "grey" in passes
    need_nworld = "normal_world" in passes or (need_color and lights.space == "world")
    need_ncam = "normal_camera" in passes or (need_color and lights.space == "camera")
    need_albedo = "color" in passes or "albedo" in passes
    need_uv = need_albedo or "uv" in passes
    columns = _columns(s, need_nworld, need_ncam)

    vattr, screen_np, depth_np = ks.vertex_columns(vertices, faces_i64, cams, columns)  # [B*V,K]
    tri_np, zbuf_np, front_np = rasterize(screen_np, depth_np, faces_i64.cpu().numpy(), w, h,
                                    cams.ortho.cpu().numpy(), cams.near.cpu().numpy(), cams.far.cpu().numpy())
    px = ks.fragments(vattr, faces_i64, vertices, uvs.to(device=device), uv_faces.to(device=device), tri_np,
                      front_np, cams, columns, face_material is not None)
    pixel = px.pixel.to(device)
    n_pix, npix_all = pixel.shape[0], b * h * w

    # Fused shading writes the shaded pixels straight into the image from the raw
    # (unnormalised) normals and the UVs; it needs one texture for all faces.
    one_texture = face_material is None or len(textures) == 1
    fused_color = ks.shade is not None and "color" in passes and one_texture
    fused_grey = ks.shade is not None and "grey" in passes
    torch_shading = ("color" in passes and not fused_color) or ("grey" in passes and not fused_grey)

    n_world = n_cam = n_light_raw = sign = None
    if need_nworld or need_ncam:
        if s.smooth_normals:
            n_world, n_cam = px.attr.get("n_world"), px.attr.get("n_cam")
        else:
            p0, p1, p2 = px.corners
            e1, e2 = p1 - p0, p2 - p0
            n_world = torch.stack([e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2],
                                   e1[0] * e2[1] - e1[1] * e2[0]])
            if need_ncam:
                r = cams.world_to_camera[:, :3, :3].index_select(0, px.view)  # [N,3,3]
                n_cam = torch.einsum("ncj,jn->cn", r, n_world)
        n_light_raw = n_cam if lights.space == "camera" else n_world
        # Unit normals, only where something other than the fused shading reads them.
        unit_world = n_world is not None and ("normal_world" in passes or (torch_shading and lights.space == "world"))
        unit_cam = n_cam is not None and ("normal_camera" in passes or (torch_shading and lights.space == "camera"))
        if s.two_sided and (unit_world or unit_cam):
            # Back faces seen through open meshes are shaded like front faces.
            sign = torch.where(px.front, 1.0, -1.0).to(dtype)
        n_world = unit_rows(n_world) if unit_world else None
        if n_world is not None and sign is not None:
            n_world = n_world * sign
        n_cam = unit_rows(n_cam) if unit_cam else None
        if n_cam is not None and sign is not None:
            n_cam = n_cam * sign

    uv = ks.texture_uv(px, uvs, uv_faces) if need_uv else None  # [2,N]
    albedo = None
    if "albedo" in passes or ("color" in passes and not fused_color):
        def lookup(tex, sel=None):
            uv_sel = uv if sel is None else uv.index_select(1, sel)
            return ks.sample_texture(tex.to(device=device, dtype=dtype), uv_sel, s.texture_wrap)

        if one_texture:
            albedo = lookup(textures[0])
        else:
            mat = face_material.to(device=device, dtype=torch.int64).index_select(0, px.tri)
            albedo = torch.zeros(3, n_pix, dtype=dtype, device=device)
            for m, tex in enumerate(textures):
                sel = torch.nonzero(mat == m).squeeze(1)
                if sel.numel():
                    albedo = albedo.index_copy(1, sel, lookup(tex, sel))

    bg = None
    if any(p in passes for p in ("color", "grey", "albedo")):
        bg = _background(s.background, b, h, w, dtype, device, contiguous=ks.shade is None)
    n_light = n_cam if lights.space == "camera" else n_world
    out: dict[str, torch.Tensor] = {}

    def emit(name, values, base=None):
        # values [C,N] channel-first; images are stored [B*H*W, C] so no permute copy is needed.
        if base is None:
            base = torch.zeros(npix_all, values.shape[0], dtype=dtype, device=device)
        out[name] = base.index_copy(0, pixel, values.T.to(dtype)).reshape(b, h, w, -1)

    for name in passes:
        if name == "color" and fused_color:
            out[name] = ks.shade(n_light_raw, px.front, lights, bg, pixel, texture=textures[0].to(dtype=dtype), uv=uv,
                                 wrap=s.texture_wrap, two_sided=s.two_sided).reshape(b, h, w, -1)
        elif name == "grey" and fused_grey:
            out[name] = ks.shade(n_light_raw, px.front, lights, bg, pixel, albedo=s.grey_albedo,
                                 two_sided=s.two_sided).reshape(b, h, w, -1)
        elif name == "color":
            emit(name, lambert(albedo, n_light, lights), bg)
        elif name == "grey":
            grey = torch.full((3, 1), float(s.grey_albedo), dtype=dtype, device=device)
            emit(name, lambert(grey, n_light, lights), bg)
        elif name == "albedo":
            emit(name, albedo, bg)
        elif name == "normal_world":
            emit(name, n_world)
        elif name == "normal_camera":
            emit(name, n_cam)
        elif name == "depth":
            emit(name, px.depth[None])
        elif name == "alpha":
            emit(name, torch.ones(1, n_pix, dtype=dtype, device=device))
        elif name == "uv":
            emit(name, uv)
        elif name == "tri_id":
            out[name] = torch.from_numpy(tri_np).to(device=device, dtype=torch.int64).reshape(b, h, w, 1)
    if s.antialias:
        out = antialias(out, tri_np, zbuf_np, vattr[:, :2], faces_i64, vertices.shape[1])
    return out
