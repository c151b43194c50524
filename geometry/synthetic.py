"""A procedural 4D scene with analytic ground truth, ray-cast in vectorised numpy.

Conventions: the world frame is the first source camera's frame (OpenCV axes: x right, y down,
z forward), units are metres and seconds. Cameras are given as camera-to-world ``c2w`` [4,4] and
intrinsics ``K`` [3,3] in pixels with pixel centres at integer coordinates; a pixel (u, v) sees the
ray ``c2w[:3,:3] @ K^-1 [u, v, 1]``, whose parameter along that (z = 1) direction is the z-depth.

Every object is a canonical shape (sphere at its origin, rectangle in its z = 0 plane) placed by a
rigid pose that may change with time; its texture is a sum of sinusoids of its object-space
coordinates, so any camera at any time sees the same colour on the same surface point. Textures
are band-limited: the finest wave of the default back wall has a 6 cm period, about 6 px at
832x480 from the first camera, so point sampling does not alias on the planes.
Shading is Lambertian from a fixed world light: view independent, hence consistent across cameras.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Union

import numpy as np
import torch

from geometry.cache import GeometryCache, GeometryMeta
from geometry.metrics import edge_band
from geometry.unproject import scale_intrinsics
from trajectories.camera_path import CameraPath

_EPS = 1e-6


def _rotation(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    """Rotation matrix about ``axis`` (Rodrigues), right-handed, in degrees."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    th = np.deg2rad(degrees)
    cross = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(th) * cross + (1 - np.cos(th)) * cross @ cross


def _to_frame(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Row vectors times a 3x3 matrix, ``x @ m`` (einsum: several times faster than matmul for [M,3])."""
    return np.einsum("ij,jk->ik", x, m)


@dataclass(frozen=True)
class Wave:
    """One sinusoid of a texture: ``amplitude * sin(2*pi * k . p + phase)`` with p in object metres."""

    k: tuple[float, float, float]
    amplitude: tuple[float, float, float]
    phase: float = 0.0


@dataclass(frozen=True)
class Texture:
    """Colour = clip(base + sum of waves, 0, 1), RGB in [0, 1], evaluated at object-space points."""

    base: tuple[float, float, float]
    waves: tuple[Wave, ...] = ()

    def __call__(self, points: np.ndarray) -> np.ndarray:
        rgb = np.empty((len(points), 3))
        rgb[:] = self.base
        for w in self.waves:
            phase = np.einsum("ij,j->i", points, 2 * np.pi * np.asarray(w.k)) + w.phase
            rgb += np.sin(phase)[:, None] * np.asarray(w.amplitude)
        return np.clip(rgb, 0.0, 1.0)


def checker(period: float, amplitude: tuple[float, float, float], axes: tuple[int, int] = (0, 1)) -> tuple[Wave, Wave]:
    """A soft checkerboard ``amplitude * sin(2 pi x/P) sin(2 pi y/P)`` written as two waves."""
    k1, k2 = np.zeros(3), np.zeros(3)
    k1[axes[0]], k1[axes[1]] = 1 / period, -1 / period
    k2[axes[0]], k2[axes[1]] = 1 / period, 1 / period
    half = tuple(a / 2 for a in amplitude)
    return (
        Wave(tuple(k1), half, np.pi / 2),
        Wave(tuple(k2), tuple(-a for a in half), np.pi / 2),
    )


@dataclass(frozen=True)
class Motion:
    """Rigid motion over time t (s): position += velocity*t + amplitude*sin(2 pi f t) (world axes),
    rotation = spin about the object's own ``spin_axis`` at ``spin_deg_per_s``."""

    velocity: tuple[float, float, float] = (0.0, 0.0, 0.0)
    amplitude: tuple[float, float, float] = (0.0, 0.0, 0.0)
    frequency_hz: float = 0.0
    spin_axis: tuple[float, float, float] = (0.0, 1.0, 0.0)
    spin_deg_per_s: float = 0.0


def _rowdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row dot product of a [1,3] or [M,3] with b [M,3] -> [M]."""
    if len(a) == 1:
        return np.einsum("ij,j->i", b, a[0])
    return np.einsum("ij,ij->i", a, b)


@dataclass(frozen=True)
class Sphere:
    """A sphere of ``radius`` centred at the object origin."""

    radius: float

    def intersect(self, o: np.ndarray, d: np.ndarray, rot: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Smallest ray parameter s > 0 of ``o + s d`` on the sphere posed at (rot, pos), inf where
        missed; world frame, o [1,3] or [M,3], d [M,3]."""
        oc = o - pos
        a = _rowdot(d, d)
        b = _rowdot(oc, d)
        c = _rowdot(oc, oc) - self.radius**2
        disc = b * b - a * c
        root = np.sqrt(np.maximum(disc, 0.0))
        near, far = (-b - root) / a, (-b + root) / a
        s = np.where(near > _EPS, near, far)
        return np.where((disc >= 0) & (s > _EPS), s, np.inf)

    def normal(self, p: np.ndarray) -> np.ndarray:
        """Unit normals [M,3] at object-frame surface points."""
        return p / self.radius


@dataclass(frozen=True)
class Rect:
    """A rectangle in the object's z = 0 plane, |x| <= half_width, |y| <= half_height (inf = a plane)."""

    half_width: float = np.inf
    half_height: float = np.inf

    def intersect(self, o: np.ndarray, d: np.ndarray, rot: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """As :meth:`Sphere.intersect`, for the rectangle posed at (rot, pos)."""
        normal = rot[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.einsum("ij,j->i", pos - o, normal) / np.einsum("ij,j->i", d, normal)
        ok = np.isfinite(s) & (s > _EPS)
        if np.isfinite(self.half_width) or np.isfinite(self.half_height):
            rel = (o - pos) + np.where(ok, s, 0.0)[:, None] * d
            ok &= np.abs(np.einsum("ij,j->i", rel, rot[:, 0])) <= self.half_width
            ok &= np.abs(np.einsum("ij,j->i", rel, rot[:, 1])) <= self.half_height
        return np.where(ok, s, np.inf)

    def normal(self, p: np.ndarray) -> np.ndarray:
        n = np.zeros_like(p)
        n[:, 2] = -1.0
        return n


@dataclass(frozen=True)
class Slats(Rect):
    """A fence: the rectangle keeps only vertical slats ``slat_width`` wide every ``period`` along x,
    starting at x = -half_width."""

    period: float = 0.15
    slat_width: float = 0.05

    def intersect(self, o: np.ndarray, d: np.ndarray, rot: np.ndarray, pos: np.ndarray) -> np.ndarray:
        s = super().intersect(o, d, rot, pos)
        hit = np.isfinite(s)
        x = np.einsum("ij,j->i", (o - pos) + np.where(hit, s, 0.0)[:, None] * d, rot[:, 0]) + self.half_width
        return np.where(hit & (np.mod(x, self.period) <= self.slat_width), s, np.inf)


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in the object frame, |x_i| <= half[i]."""

    half: tuple[float, float, float]

    def intersect(self, o: np.ndarray, d: np.ndarray, rot: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """As :meth:`Sphere.intersect` (slab method in the object frame)."""
        half = np.asarray(self.half)
        oo = _to_frame(np.broadcast_to(o - pos, d.shape), rot)
        dd = _to_frame(d, rot)
        with np.errstate(divide="ignore", invalid="ignore"):
            t0, t1 = (-half - oo) / dd, (half - oo) / dd
        near = np.nan_to_num(np.minimum(t0, t1), nan=-np.inf).max(1)
        far = np.nan_to_num(np.maximum(t0, t1), nan=np.inf).min(1)
        s = np.where(near > _EPS, near, far)
        return np.where((near <= far) & (s > _EPS), s, np.inf)

    def normal(self, p: np.ndarray) -> np.ndarray:
        """Unit normals [M,3] of the faces holding object-frame surface points."""
        axis = np.argmax(np.abs(p) / np.asarray(self.half), axis=1)
        n = np.zeros_like(p)
        n[np.arange(len(p)), axis] = np.sign(p[np.arange(len(p)), axis])
        return n


Shape = Union[Sphere, Rect, Box]


@dataclass(frozen=True, eq=False)
class SceneObject:
    """A shape with a texture, placed at ``position`` with ``rotation`` (object-to-world) at t = 0."""

    name: str
    shape: Shape
    texture: Texture
    position: tuple[float, float, float]
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    motion: Motion = Motion()

    def pose(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Object-to-world rotation [3,3] and translation [3] at time t (s)."""
        m = self.motion
        rot = self.rotation @ _rotation(m.spin_axis, m.spin_deg_per_s * t)
        pos = (
            np.asarray(self.position, dtype=np.float64)
            + np.asarray(m.velocity) * t
            + np.asarray(m.amplitude) * np.sin(2 * np.pi * m.frequency_hz * t)
        )
        return rot, pos


def _room_objects() -> tuple[SceneObject, ...]:
    """The default room, built in a level 'room' frame and tilted into camera-0 axes (camera pitched
    12 degrees down, 1.5 m above the floor): floor, a high-frequency back wall 7 m ahead, a board,
    a static sphere and a smaller sphere that slides left-right and spins in front of it."""
    floor_axes = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # object x, y, z -> room x, z, -y
    objects = [
        SceneObject(
            "floor",
            Rect(),
            Texture((0.55, 0.42, 0.30), checker(1.0, (0.3, 0.24, 0.18)) + (Wave((8.0, 0, 0), (0.06, 0.05, 0.04)),)),
            (0.0, 1.5, 0.0),
            floor_axes,
        ),
        SceneObject(
            "wall",
            Rect(),
            Texture(
                (0.5, 0.5, 0.52),
                (
                    Wave((16.0, 3.0, 0), (0.12, 0.02, -0.08)),
                    Wave((-4.0, 14.0, 0), (-0.05, 0.12, 0.04)),
                    Wave((9.0, 9.0, 0), (0.06, -0.06, 0.12), 1.0),
                    Wave((2.5, 0.5, 0), (0.1, 0.08, -0.1), 0.4),
                    Wave((0.3, 3.0, 0), (-0.04, 0.1, 0.08), 2.0),
                ),
            ),
            (0.0, 0.0, 7.0),
        ),
        SceneObject(
            "board",
            Rect(0.5, 0.7),
            Texture((0.25, 0.4, 0.7), (Wave((10.0, 0, 0), (0.15, 0.15, 0.15)),) + checker(0.25, (0.1, 0.1, -0.1))),
            (-1.4, 0.6, 4.5),
        ),
        SceneObject(
            "sphere",
            Sphere(0.6),
            Texture((0.75, 0.35, 0.2), (Wave((0, 4.0, 0), (0.2, 0.2, 0.1)), Wave((3.0, 0, 3.0), (0.05, -0.1, 0.1)))),
            (1.1, 0.9, 4.2),
        ),
        SceneObject(
            "ball",
            Sphere(0.35),
            Texture((0.45, 0.7, 0.35), checker(0.25, (0.4, 0.3, 0.4), (0, 1)) + (Wave((0, 0, 5.0), (0.1, -0.1, 0.1)),)),
            (-0.5, 1.15, 3.0),
            motion=Motion(amplitude=(1.2, 0.0, 0.0), frequency_hz=0.2, spin_axis=(0, 0, 1), spin_deg_per_s=90.0),
        ),
    ]
    return _tilted(objects, 12.0)


def _tilt_motion(m: Motion, tilt: np.ndarray) -> Motion:
    return replace(m, velocity=tuple(tilt @ np.asarray(m.velocity)), amplitude=tuple(tilt @ np.asarray(m.amplitude)))


def _tilted(objects: list[SceneObject], pitch_deg: float) -> tuple[SceneObject, ...]:
    """Objects built in a level 'room' frame, moved into the axes of a camera pitched ``pitch_deg`` down."""
    tilt = _rotation((1, 0, 0), pitch_deg)  # camera-from-room
    return tuple(
        replace(o, position=tuple(tilt @ np.asarray(o.position)), rotation=tilt @ o.rotation, motion=_tilt_motion(o.motion, tilt))
        for o in objects
    )


def _yard_objects() -> tuple[SceneObject, ...]:
    """A harder scene than the room (camera pitched 8 degrees down, 1.5 m above the ground): ground
    receding to the horizon (grazing angles), a back wall 9 m ahead with grey waves of 2.7-4 px period
    at 832x480 (near the output's Nyquist limit; grey because H.264 4:2:0 keeps chroma at half
    resolution, so colour waves that fine do not survive even in the source video), a crate turned 35 degrees (its top seen at ~12 degrees),
    three thin poles (2-5 cm), a fence of 5 cm slats with gaps, and a ball crossing the view."""
    ground_axes = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    objects = [
        SceneObject("ground", Rect(), Texture((0.42, 0.47, 0.33), checker(0.5, (0.2, 0.22, 0.15)) + (Wave((0, 6.0, 0), (0.05, 0.04, 0.03)),)),
                    (0.0, 1.5, 0.0), ground_axes),
        SceneObject("wall", Rect(4.0, 2.0),
                    Texture((0.55, 0.5, 0.48), (Wave((30.0, 0, 0), (0.1, 0.1, 0.1)), Wave((0, 22.0, 0), (0.08, 0.08, 0.08)),
                                                Wave((14.0, 14.0, 0), (0.06, 0.06, 0.06), 0.7), Wave((1.5, 0.4, 0), (0.1, 0.06, -0.1)))),
                    (0.5, -0.5, 9.0)),
        SceneObject("crate", Box((0.45, 0.4, 0.45)),
                    Texture((0.6, 0.45, 0.25), (Wave((12.0, 0, 0), (0.1, 0.08, 0.05)), Wave((0, 9.0, 9.0), (0.06, 0.05, 0.03), 0.5))),
                    (1.0, 1.1, 4.2), _rotation((0, 1, 0), 35.0)),
        *(SceneObject(f"pole{i}", Rect(hw, 1.4), Texture((0.85, 0.85, 0.8), (Wave((0, 3.0, 0), (0.1, 0.1, 0.1)),)), (x, 0.1, z))
          for i, (hw, x, z) in enumerate([(0.025, -0.3, 3.2), (0.015, 0.35, 5.0), (0.01, 2.2, 6.5)])),
        SceneObject("fence", Slats(0.9, 0.6, period=0.15, slat_width=0.05),
                    Texture((0.7, 0.6, 0.45), (Wave((0, 5.0, 0), (0.08, 0.06, 0.04)),)), (-2.4, 0.9, 6.0)),
        SceneObject("rail", Rect(0.95, 0.03), Texture((0.6, 0.5, 0.4)), (-2.375, 0.55, 5.98)),
        SceneObject("ball", Sphere(0.3), Texture((0.3, 0.55, 0.8), checker(0.2, (0.3, 0.3, 0.2), (0, 1))),
                    (-1.5, 1.0, 3.6), motion=Motion(velocity=(1.2, 0.0, 0.0), spin_axis=(0, 0, 1), spin_deg_per_s=60.0)),
    ]
    return _tilted(objects, 8.0)


SCENES = {"room": _room_objects, "yard": _yard_objects}


def make_scene(name: str = "room") -> "SyntheticScene":
    """One of the bundled scenes by name (``SCENES``): ``room`` (the default) or ``yard`` (harder)."""
    if name not in SCENES:
        raise ValueError(f"unknown synthetic scene {name!r}; choose one of {', '.join(SCENES)}")
    return SyntheticScene(objects=SCENES[name]())


@dataclass(frozen=True)
class SceneView:
    """One rendered view: rgb float32 [H,W,3] in [0,1], z-depth float64 [H,W] (inf = nothing),
    object_id int [H,W] (index into ``SyntheticScene.objects``, -1 = nothing)."""

    rgb: np.ndarray
    depth: np.ndarray
    object_id: np.ndarray


def pixel_rays(c2w: np.ndarray, K: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Camera centre [3] and world ray directions [H*W,3] with camera-frame z = 1 (row-major pixels)."""
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    pix = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1)
    dirs_cam = _to_frame(pix, np.linalg.inv(K).T)
    dirs_cam /= dirs_cam[:, 2:3]
    return np.asarray(c2w[:3, 3], dtype=np.float64), _to_frame(dirs_cam, np.asarray(c2w[:3, :3], dtype=np.float64).T)


@dataclass(frozen=True, eq=False)
class SyntheticScene:
    """A set of objects, a directional light and a background colour (see module docstring)."""

    objects: tuple[SceneObject, ...] = field(default_factory=_room_objects)
    light_dir: tuple[float, float, float] = (-0.4, -1.0, -0.5)
    ambient: float = 0.55
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def intersect(self, origins: np.ndarray, dirs: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Nearest hit along rays ``origins + s * dirs`` (s > 0) at time t: s [M] (inf = none), object id [M].

        ``origins`` is one point [3] shared by all rays or one per ray [M,3]; ``dirs`` [M,3]."""
        dirs = np.asarray(dirs, dtype=np.float64)
        origins = np.asarray(origins, dtype=np.float64).reshape(-1, 3)
        best = np.full(len(dirs), np.inf)
        ids = np.full(len(dirs), -1, dtype=np.int64)
        for i, obj in enumerate(self.objects):
            rot, pos = obj.pose(t)
            s = obj.shape.intersect(origins, dirs, rot, pos)
            nearer = s < best
            best[nearer] = s[nearer]
            ids[nearer] = i
        return best, ids

    def shade(self, points: np.ndarray, ids: np.ndarray, t: float) -> np.ndarray:
        """RGB [M,3] of world points on the objects ``ids`` at time t (background where id < 0)."""
        rgb = np.empty((len(points), 3))
        rgb[:] = self.background
        light = np.asarray(self.light_dir, dtype=np.float64)
        light /= np.linalg.norm(light)
        for i, obj in enumerate(self.objects):
            sel = np.flatnonzero(ids == i)
            if sel.size == 0:
                continue
            rot, pos = obj.pose(t)
            p = _to_frame(points[sel] - pos, rot)
            cos = np.einsum("ij,j->i", obj.shape.normal(p), rot.T @ light)
            lambert = np.abs(cos) if isinstance(obj.shape, Rect) else np.maximum(cos, 0.0)  # a Rect has two sides
            rgb[sel] = obj.texture(p) * (self.ambient + (1 - self.ambient) * lambert)[:, None]
        return rgb

    def render(self, c2w: np.ndarray, K: np.ndarray, width: int, height: int, t: float) -> SceneView:
        """Ray-cast one view of the scene at time t (s)."""
        centre, dirs = pixel_rays(c2w, K, width, height)
        s, ids = self.intersect(centre, dirs, t)
        points = centre + np.where(np.isfinite(s), s, 0.0)[:, None] * dirs
        rgb = self.shade(points, ids, t)
        shape = (height, width)
        return SceneView(rgb.reshape(*shape, 3).astype(np.float32), s.reshape(shape), ids.reshape(shape))


@dataclass(frozen=True)
class SourceClip:
    """A rendered source video: frames uint8 [N,H,W,3], c2w [N,4,4] (frame 0 = identity for the default
    paths), K [3,3] pixels at (H,W), fps. Frame i shows time i / fps."""

    frames: np.ndarray
    c2w: np.ndarray
    K: np.ndarray
    fps: float

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])


def intrinsics_for(width: int, height: int, hfov_deg: float = 60.0) -> np.ndarray:
    """Square-pixel pinhole K with the given horizontal field of view, principal point at the image centre."""
    f = (width / 2) / np.tan(np.deg2rad(hfov_deg) / 2)
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]], dtype=np.float64)


def static_path(n_frames: int) -> np.ndarray:
    """[N,4,4] identity c2w: a camera on a tripod."""
    return np.tile(np.eye(4), (n_frames, 1, 1))


def handheld_path(
    n_frames: int,
    fps: float,
    drift_m_per_s: tuple[float, float, float] = (0.15, 0.0, 0.05),
    shake_m: float = 0.02,
    shake_deg: float = 0.8,
) -> np.ndarray:
    """[N,4,4] c2w of a gentle handheld walk: slow drift plus smooth shake, frame 0 = identity exactly."""
    t = np.arange(n_frames) / fps

    def wobble(freq: float, phase: float) -> np.ndarray:
        return np.sin(2 * np.pi * freq * t + phase) - np.sin(phase)

    c2w = static_path(n_frames)
    angles = shake_deg * np.stack([wobble(0.9, 0.3), wobble(0.6, 1.1), 0.4 * wobble(0.45, 2.0)], axis=1)
    shift = shake_m * np.stack([wobble(0.7, 0.5), wobble(1.1, 1.7), wobble(0.5, 2.9)], axis=1)
    for i in range(n_frames):
        yaw, pitch, roll = _rotation((0, 1, 0), angles[i, 1]), _rotation((1, 0, 0), angles[i, 0]), _rotation((0, 0, 1), angles[i, 2])
        c2w[i, :3, :3] = yaw @ pitch @ roll
        c2w[i, :3, 3] = np.asarray(drift_m_per_s) * t[i] + shift[i]
    return c2w


def make_source_clip(
    scene: SyntheticScene,
    n_frames: int,
    width: int,
    height: int,
    fps: float,
    source_c2w: np.ndarray | None = None,
    hfov_deg: float = 60.0,
) -> SourceClip:
    """Render the source video; ``source_c2w`` None = a static camera (see :func:`handheld_path`)."""
    c2w = static_path(n_frames) if source_c2w is None else np.asarray(source_c2w, dtype=np.float64)
    if c2w.shape != (n_frames, 4, 4):
        raise ValueError(f"source_c2w must be [{n_frames},4,4], got {c2w.shape}")
    K = intrinsics_for(width, height, hfov_deg)
    frames = np.empty((n_frames, height, width, 3), dtype=np.uint8)
    for i in range(n_frames):
        frames[i] = np.round(scene.render(c2w[i], K, width, height, i / fps).rgb * 255)
    return SourceClip(frames, c2w, K, float(fps))


def make_geometry(
    scene: SyntheticScene, clip: SourceClip, depth_hw: tuple[int, int] = (294, 504), edge_conf: float = 1.0
) -> GeometryCache:
    """Analytic geometry of the clip at ``depth_hw``: z-depth (0 where nothing is hit), w2c
    extrinsics of the source cameras, intrinsics scaled to ``depth_hw`` as DA3 scales them
    (``scale_intrinsics``: u' = u * w'/w), conf = 1 except ``edge_conf`` within 1 px of a depth edge
    (``metrics.edge_band``; a depth network is least sure there), image ray-cast at ``depth_hw``. Metadata names the
    producer; the caller adds the video name and hash."""
    h, w = depth_hw
    K = scale_intrinsics(torch.from_numpy(clip.K), (clip.height, clip.width), depth_hw).numpy()
    n = len(clip.c2w)
    depth = np.empty((n, h, w), dtype=np.float32)
    image = np.empty((n, h, w, 3), dtype=np.uint8)
    conf = np.ones((n, h, w), dtype=np.float32)
    for i in range(n):
        view = scene.render(clip.c2w[i], K, w, h, i / clip.fps)
        depth[i] = np.where(np.isfinite(view.depth), view.depth, 0.0)
        image[i] = np.round(view.rgb * 255)
        if edge_conf != 1.0:
            conf[i][edge_band(view.depth, px=1)] = edge_conf
    return GeometryCache(
        depth=depth,
        extrinsics=np.linalg.inv(clip.c2w),
        intrinsics=np.tile(K, (n, 1, 1)),
        conf=conf,
        image=image,
        meta=GeometryMeta(fps=clip.fps, frame_count=n, producer="geometry.synthetic"),
    )


def ground_truth_frame(
    scene: SyntheticScene, camera_path: CameraPath, clip: SourceClip, i: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Output frame i of a camera path: rgb float32 [H,W,3], visibility bool [H,W], z-depth [H,W].

    The scene is taken at the source time of ``camera_path.source_index[i]``. A pixel is visible
    when its surface point is inside the source camera's image and unoccluded from it at that time,
    i.e. exactly the pixels that geometry of that source frame can cover."""
    src = int(camera_path.source_index[i])
    t = src / clip.fps
    width, height = camera_path.width, camera_path.height
    centre, dirs = pixel_rays(camera_path.c2w[i], camera_path.intrinsics[i], width, height)
    s, ids = scene.intersect(centre, dirs, t)
    hit = np.isfinite(s)
    points = centre + np.where(hit, s, 0.0)[:, None] * dirs
    rgb = scene.shade(points, ids, t)

    w2c = np.linalg.inv(clip.c2w[src])
    cam = _to_frame(points[hit], w2c[:3, :3].T) + w2c[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = _to_frame(cam, clip.K.T)[:, :2] / cam[:, 2:3]
    inside = (cam[:, 2] > _EPS) & (uv[:, 0] >= -0.5) & (uv[:, 0] <= clip.width - 0.5)
    inside &= (uv[:, 1] >= -0.5) & (uv[:, 1] <= clip.height - 0.5)
    origin = clip.c2w[src, :3, 3]
    s_src, _ = scene.intersect(origin, points[hit] - origin, t)
    visible = np.zeros(len(s), dtype=bool)
    visible[np.flatnonzero(hit)] = inside & (s_src >= 1 - 1e-6)
    shape = (height, width)
    return rgb.reshape(*shape, 3).astype(np.float32), visible.reshape(shape), s.reshape(shape)


def ground_truth(
    scene: SyntheticScene, camera_path: CameraPath, clip: SourceClip, return_depth: bool = False
) -> tuple[np.ndarray, ...]:
    """Ground truth of a whole camera path (camera x time grid): frames float32 [N,H,W,3] in [0,1],
    visibility bool [N,H,W] and, with ``return_depth``, z-depth [N,H,W] (inf = nothing); output
    frame i shows the scene at the source time of ``camera_path.source_index[i]``."""
    parts = [ground_truth_frame(scene, camera_path, clip, i) for i in range(len(camera_path))]
    frames, visible, depth = (np.stack(p) for p in zip(*parts))
    return (frames, visible, depth) if return_depth else (frames, visible)
