"""Cameras exactly as Blender defines them.

A :class:`Camera` carries the raw Blender camera settings (world matrix, lens,
sensor, fit, shift, clip range, render resolution, pixel aspect) rather than a
derived projection, so the add-on can fill it straight from ``bpy`` data and the
backend converts it once, in :func:`projection` (Blender's view-plane rules:
sensor fit, shift, pixel aspect, orthographic scale), used everywhere;
:func:`project_points` is the numpy reference of the resulting mapping.

Conventions: Blender world space, Z up, metres. The camera looks down its local
-Z axis with +Y up. ``matrix_world`` is camera-to-world, row-major ``[4,4]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, asdict

import numpy as np

SENSOR_FITS = ("AUTO", "HORIZONTAL", "VERTICAL")
CAMERA_TYPES = ("PERSP", "ORTHO")


@dataclass(frozen=True)
class Camera:
    """One Blender camera at one moment.

    Units: lens and sensor sizes in millimetres, shift as a fraction of the
    larger sensor dimension (Blender's convention), ortho_scale and clip range in
    metres, resolution in pixels (already multiplied by the render percentage).
    """

    matrix_world: np.ndarray  # [4,4] float64, camera-to-world
    type: str = "PERSP"  # "PERSP" | "ORTHO"
    lens: float = 50.0
    sensor_width: float = 36.0
    sensor_height: float = 24.0
    sensor_fit: str = "AUTO"  # "AUTO" | "HORIZONTAL" | "VERTICAL"
    shift_x: float = 0.0
    shift_y: float = 0.0
    ortho_scale: float = 6.0
    clip_start: float = 0.1
    clip_end: float = 100.0
    resolution_x: int = 224
    resolution_y: int = 224
    pixel_aspect_x: float = 1.0
    pixel_aspect_y: float = 1.0
    name: str = field(default="Camera", compare=False)

    def to_dict(self) -> dict:
        """Plain msgpack-able dict (the matrix as a nested list of 16 floats)."""
        d = asdict(self)
        d["matrix_world"] = np.asarray(self.matrix_world, dtype=np.float64).reshape(4, 4).tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Camera":
        d = dict(d)
        d["matrix_world"] = np.asarray(d["matrix_world"], dtype=np.float64).reshape(4, 4)
        return cls(**d)


# --------------------------------------------------------------------------
# The one conversion from Blender camera settings to a projection.
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Projection:
    """A pinhole (or orthographic) projection equal to Blender's render camera.

    Pixel coordinates: ``u`` grows to the right from the left image edge, ``v``
    grows downwards from the top edge (row 0 = top, as on the wire); pixel
    ``(col, row)`` has its centre at ``(col + 0.5, row + 0.5)``.

    Camera space is Blender's: x right, y up, the camera looks down -Z.
    ``depth = -z_cam`` (metres along the view axis, what Blender's Z pass holds).

    Perspective:  ``u = cx + fx * x / depth``,  ``v = cy - fy * y / depth``
    Orthographic: ``u = cx + fx * x``,          ``v = cy - fy * y``

    world_to_camera [4,4] float64 (rigid: scale removed like Blender does)
    fx, fy, cx, cy  pixels (per metre for orthographic, pixels per unit of x/depth otherwise)
    width, height   output image size in pixels
    clip_start, clip_end  metres (depth range that is rendered)
    """

    world_to_camera: np.ndarray
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    orthographic: bool
    clip_start: float
    clip_end: float

    @property
    def camera_to_world(self) -> np.ndarray:
        return np.linalg.inv(self.world_to_camera)

    def intrinsics(self) -> np.ndarray:
        """[3,3] matrix ``[[fx,0,cx],[0,-fy,cy],[0,0,1]]`` applied to ``(x, y, 1)``
        (perspective: ``(x/depth, y/depth, 1)``) gives ``(u, v, 1)``."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, -self.fy, self.cy], [0.0, 0.0, 1.0]])


def _check_finite_positive(name: str, value: float, cam_name: str) -> float:
    value = float(value)
    if not np.isfinite(value) or value <= 0.0:
        raise ValueError(f"camera {cam_name!r}: {name} must be a positive finite number, got {value!r}")
    return value


def rigid_world_to_camera(matrix_world) -> np.ndarray:
    """Inverse of a camera's world matrix with scale and shear removed.

    Blender normalises the camera's axes before rendering (a scaled camera
    object renders like an unscaled one), so we do the same: Gram-Schmidt on
    the rotation columns keeping the view (-Z) axis exact.

    matrix_world [4,4] camera-to-world -> [4,4] world-to-camera, float64.
    """
    m = np.asarray(matrix_world, dtype=np.float64).reshape(4, 4)
    if not np.all(np.isfinite(m)):
        raise ValueError("camera matrix_world contains NaN or infinite values")
    x, y, z = m[:3, 0].copy(), m[:3, 1].copy(), m[:3, 2].copy()
    nz = np.linalg.norm(z)
    if nz < 1e-12:
        raise ValueError("camera matrix_world is degenerate (zero-length Z axis)")
    z /= nz
    y -= z * (y @ z)
    ny = np.linalg.norm(y)
    if ny < 1e-12:
        raise ValueError("camera matrix_world is degenerate (Y axis parallel to or zero)")
    y /= ny
    xn = np.cross(y, z)
    if x @ xn < 0:  # a mirrored camera keeps its handedness, like Blender's normalize
        xn = -xn
    rot = np.stack([xn, y, z], axis=1)
    c2w = np.eye(4)
    c2w[:3, :3] = rot
    c2w[:3, 3] = m[:3, 3]
    w2c = np.eye(4)
    w2c[:3, :3] = rot.T
    w2c[:3, 3] = -rot.T @ m[:3, 3]
    return w2c


def projection(cam: Camera, size: tuple[int, int] | None = None) -> Projection:
    """Convert Blender camera settings to a :class:`Projection`.

    Follows Blender's ``BKE_camera_params_compute_viewplane``: the sensor
    dimension chosen by ``sensor_fit`` (AUTO: the sensor width spans the larger
    of ``resolution * pixel_aspect``) spans that image side; shift is a fraction
    of that side; pixel aspect stretches the other side; orthographic cameras
    use ``ortho_scale`` metres instead of ``sensor * distance / lens``.

    Pixel aspects below 1 are accepted (the same formulas extend to them) although
    Blender's UI clamps them to [1, 200].

    ``size=(W, H)`` renders the same framing (same view plane) with another
    pixel count; the pixels may then not be square (W/H should match the
    camera's aspect to avoid stretching, but it is not required).

    Raises ``ValueError`` naming the setting for zero/negative/NaN lens,
    sensor, ortho scale, resolution, pixel aspect, clip range, an unknown type
    or sensor fit, or a degenerate matrix.
    """
    name = getattr(cam, "name", "Camera")
    if cam.type not in CAMERA_TYPES:
        raise ValueError(f"camera {name!r}: type must be one of {CAMERA_TYPES}, got {cam.type!r}")
    if cam.sensor_fit not in SENSOR_FITS:
        raise ValueError(f"camera {name!r}: sensor_fit must be one of {SENSOR_FITS}, got {cam.sensor_fit!r}")
    res_x = int(cam.resolution_x)
    res_y = int(cam.resolution_y)
    if res_x <= 0 or res_y <= 0:
        raise ValueError(f"camera {name!r}: resolution must be positive, got {res_x}x{res_y}")
    asp_x = _check_finite_positive("pixel_aspect_x", cam.pixel_aspect_x, name)
    asp_y = _check_finite_positive("pixel_aspect_y", cam.pixel_aspect_y, name)
    clip_start = _check_finite_positive("clip_start", cam.clip_start, name)
    clip_end = _check_finite_positive("clip_end", cam.clip_end, name)
    if clip_end <= clip_start:
        raise ValueError(f"camera {name!r}: clip_end ({clip_end}) must be larger than clip_start ({clip_start})")
    for label, v in (("shift_x", cam.shift_x), ("shift_y", cam.shift_y)):
        if not np.isfinite(float(v)):
            raise ValueError(f"camera {name!r}: {label} must be finite, got {v!r}")
    ortho = cam.type == "ORTHO"

    # Sensor fit: AUTO picks the larger side of the (pixel-aspect corrected) frame.
    fit = cam.sensor_fit
    if fit == "AUTO":
        fit = "HORIZONTAL" if asp_x * res_x >= asp_y * res_y else "VERTICAL"
        sensor_mm_name, sensor_mm = "sensor_width", cam.sensor_width  # AUTO always uses the width
    elif fit == "HORIZONTAL":
        sensor_mm_name, sensor_mm = "sensor_width", cam.sensor_width
    else:
        sensor_mm_name, sensor_mm = "sensor_height", cam.sensor_height

    if ortho:
        # View plane measured in metres, independent of distance.
        plane_size = _check_finite_positive("ortho_scale", cam.ortho_scale, name)
    else:
        sensor_mm = _check_finite_positive(sensor_mm_name, sensor_mm, name)
        lens = _check_finite_positive("lens", cam.lens, name)
        # View plane measured at unit distance in front of the camera.
        plane_size = sensor_mm / lens

    ycor = asp_y / asp_x
    view_fac = float(res_x) if fit == "HORIZONTAL" else ycor * res_y
    pix = plane_size / view_fac  # view-plane units per (aspect corrected) pixel
    xmin, xmax = -0.5 * res_x, 0.5 * res_x
    ymin, ymax = -0.5 * ycor * res_y, 0.5 * ycor * res_y
    dx = float(cam.shift_x) * view_fac
    dy = float(cam.shift_y) * view_fac
    xmin, xmax = (xmin + dx) * pix, (xmax + dx) * pix
    ymin, ymax = (ymin + dy) * pix, (ymax + dy) * pix

    if size is None:
        width, height = res_x, res_y
    else:
        width, height = int(size[0]), int(size[1])
        if width <= 0 or height <= 0:
            raise ValueError(f"render size must be positive, got {width}x{height}")

    fx = width / (xmax - xmin)
    fy = height / (ymax - ymin)
    cx = -xmin * fx
    cy = ymax * fy
    return Projection(
        world_to_camera=rigid_world_to_camera(cam.matrix_world),
        fx=float(fx), fy=float(fy), cx=float(cx), cy=float(cy),
        width=width, height=height, orthographic=ortho,
        clip_start=clip_start, clip_end=clip_end,
    )


def project_points(proj: Projection, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points [N,3] -> (pixel coordinates [N,2] as (u, v), depth [N] metres).

    Reference implementation of the mapping documented on :class:`Projection`
    (the renderer uses the same formulas in torch). Points at or behind the
    camera get non-finite coordinates in perspective.
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    pc = p @ proj.world_to_camera[:3, :3].T + proj.world_to_camera[:3, 3]
    depth = -pc[:, 2]
    if proj.orthographic:
        x, y = pc[:, 0], pc[:, 1]
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            x, y = pc[:, 0] / depth, pc[:, 1] / depth
    uv = np.stack([proj.cx + proj.fx * x, proj.cy - proj.fy * y], axis=1)
    return uv, depth
