"""The camera path object that crosses from trajectory planning to the render and generate stages,
and ``make_camera_path``, which builds it from a trajectory file and the source cameras.

Conventions: OpenCV camera axes (x right, y down, z forward); ``c2w`` maps camera to world, where
the world is the geometry cache's world frame; intrinsics are in pixels at (height, width).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from trajectories.interpolate import Interpolation, interpolate_keys
from trajectories.matrix_file import MatrixTrajectory
from trajectories.orbit import orbit_c2w
from trajectories.spec import TrajectorySpec
from trajectories.timemap import TimeMode, adaptive_frame_count, time_map, time_preset

CAMERAS_FORMAT = "inspatio-cameras/1"
# Default upper bound on output frames: room for a 720-degree path at 0.8 degrees per frame.
MAX_OUTPUT_FRAMES = 1000


@dataclass(frozen=True)
class CameraPath:
    """Target cameras, one per output frame.

    c2w:          [N, 4, 4] float64, camera-to-world, OpenCV axes, geometry world frame.
    intrinsics:   [N, 3, 3] float64, pixels at (height, width).
    width/height: output resolution in pixels.
    fps:          output frame rate.
    source_index: [N] int64, the source video frame each output frame shows (the time map).
    """

    c2w: np.ndarray
    intrinsics: np.ndarray
    width: int
    height: int
    fps: float
    source_index: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.c2w)
        if self.c2w.shape != (n, 4, 4):
            raise ValueError(f"c2w must be [N,4,4], got {self.c2w.shape}")
        if self.intrinsics.shape != (n, 3, 3):
            raise ValueError(f"intrinsics must be [{n},3,3], got {self.intrinsics.shape}")
        if self.source_index.shape != (n,):
            raise ValueError(f"source_index must be [{n}], got {self.source_index.shape}")
        if n == 0:
            raise ValueError("a camera path needs at least one frame")
        for name, values in (("c2w", self.c2w), ("intrinsics", self.intrinsics)):
            bad = ~np.isfinite(values).reshape(n, -1).all(axis=1)
            if bad.any():
                raise ValueError(
                    f"{name} of frame {int(np.argmax(bad))} (and {int(bad.sum()) - 1} more) is not finite; "
                    "the trajectory's displacement times the scene scale is too large"
                )

    def __len__(self) -> int:
        return len(self.c2w)

    @property
    def w2c(self) -> np.ndarray:
        """[N, 4, 4] world-to-camera extrinsics."""
        return np.linalg.inv(self.c2w)

    def to_json(self) -> dict:
        return {
            "format": CAMERAS_FORMAT,
            "convention": "OpenCV camera axes (x right, y down, z forward); c2w = camera-to-world "
            "in the geometry cache's world frame; K in pixels at (height, width)",
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "frames": [
                {"c2w": c.tolist(), "K": k.tolist(), "source_index": int(s)}
                for c, k, s in zip(self.c2w, self.intrinsics, self.source_index)
            ],
        }

    @classmethod
    def from_json(cls, data: dict) -> "CameraPath":
        if data.get("format") != CAMERAS_FORMAT:
            raise ValueError(f"not a cameras file of format {CAMERAS_FORMAT}: {data.get('format')!r}")
        frames = data["frames"]
        return cls(
            c2w=np.array([f["c2w"] for f in frames], dtype=np.float64),
            intrinsics=np.array([f["K"] for f in frames], dtype=np.float64),
            width=int(data["width"]),
            height=int(data["height"]),
            fps=float(data["fps"]),
            source_index=np.array([f["source_index"] for f in frames], dtype=np.int64),
        )

    def save(self, path: str | Path) -> None:
        from pipeline.fsutil import atomic_write

        with atomic_write(path) as tmp:
            tmp.write_text(json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "CameraPath":
        return cls.from_json(json.loads(Path(path).read_text()))


RadiusMode = Literal["scene", "absolute"]


@dataclass(frozen=True)
class PathOptions:
    """How a trajectory file becomes a camera path.

    n_frames:           nominal output frame count before freeze and adaptive count (None = source frames).
    interpolation:      "exact" (through every key, no overshoot) or "reference" (the reference's smoothing spline).
    radius:             "scene" = displacement x the first frame's foreground depth (see ``foreground_depth``),
                        so "1" orbits the subject whatever the depth model's scale; "absolute" = scene units as-is
                        (the reference code's behaviour).
    relative_to_source: targets ride on the moving source camera (c2w_i = source c2w of the frame shown · pose_i)
                        instead of being anchored to source camera 0.
    rotation_only:      zero the orbit translation (tripod pan/tilt); a dolly still applies.
    adaptive_frames:    resample the path to 0.3-0.8 degrees per frame (see ``adaptive_frame_count``).
    max_frames:         the most output frames a path may have: the adaptive count is capped to it (the camera
                        then moves faster than 0.8 degrees per frame); a nominal count above it is an error.
    freeze_frame, freeze_repeat, time_mode, slowmo: the time map (see ``trajectories.timemap``).
    time_preset:        a named time map (``trajectories.timemap.TIME_PRESETS``) instead of time_mode, slowmo
                        and the trajectory's time line; freezes still apply.
    """

    n_frames: int | None = None
    interpolation: Interpolation = "exact"
    radius: RadiusMode = "scene"
    relative_to_source: bool = False
    rotation_only: bool = False
    adaptive_frames: bool = True
    freeze_frame: int | None = None
    freeze_repeat: int = 0
    time_mode: TimeMode = "forward"
    slowmo: float = 1.0
    time_preset: str | None = None
    max_frames: int = MAX_OUTPUT_FRAMES

    def __post_init__(self) -> None:
        if self.n_frames is not None and self.n_frames < 1:
            raise ValueError(f"n_frames must be >= 1, got {self.n_frames}")
        if self.interpolation not in ("exact", "reference"):
            raise ValueError(f"interpolation must be 'exact' or 'reference', got {self.interpolation!r}")
        if self.radius not in ("scene", "absolute"):
            raise ValueError(f"radius must be 'scene' or 'absolute', got {self.radius!r}")
        if self.time_mode not in ("forward", "reverse", "pingpong"):
            raise ValueError(f"time_mode must be 'forward', 'reverse' or 'pingpong', got {self.time_mode!r}")
        if self.freeze_repeat < 0:
            raise ValueError(f"freeze_repeat must be >= 0, got {self.freeze_repeat}")
        if not (math.isfinite(self.slowmo) and self.slowmo >= 1.0):
            raise ValueError(f"slowmo must be a finite factor >= 1 (2 = half speed), got {self.slowmo}")
        if self.time_preset is not None:
            time_preset(self.time_preset)
            if self.time_mode != "forward" or self.slowmo != 1.0:
                raise ValueError(f"time preset {self.time_preset!r} sets the playback itself; "
                                 "drop time_mode/slowmo (--time_mode/--slowmo) or the preset")
        if self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {self.max_frames}")
        if self.n_frames is not None and self.n_frames + self.freeze_repeat > self.max_frames:
            raise ValueError(f"n_frames {self.n_frames} + freeze_repeat {self.freeze_repeat} exceed "
                             f"max_frames {self.max_frames}")


def zoomed_intrinsics(K: np.ndarray, zoom: np.ndarray) -> np.ndarray:
    """[N, 3, 3]: ``K`` [3, 3] with its focal lengths (and skew) times ``zoom`` [N]; the principal point stays.

    Between two cameras at the same pose this is the homography ``K_i · K⁻¹`` = a scaling by zoom_i
    about the principal point (a pure zoom)."""
    out = np.repeat(np.asarray(K, dtype=np.float64)[None], len(zoom), axis=0)
    out[:, :2, :2] *= np.asarray(zoom, dtype=np.float64)[:, None, None]
    return out


@dataclass(frozen=True)
class FrameCount:
    """The output frame count of a path and how it was reached (``adaptive``/``capped`` are for logs and plans)."""

    count: int
    nominal: int
    adaptive: int | None  # the adaptive count before the cap, None without adaptive_frames
    capped: bool

    def describe(self) -> str:
        text = f"{self.count} output frames"
        if self.capped:
            text += (f" (capped by --max_frames: the adaptive count is {self.adaptive}, so the camera moves faster "
                     "than 0.8 degrees per frame)")
        elif self.adaptive is not None and self.adaptive != self.nominal:
            text += f" (adaptive, from {self.nominal})"
        return text


def output_frame_count(spec: TrajectorySpec | MatrixTrajectory, n_source: int, options: PathOptions) -> FrameCount:
    """Frame count of the path ``make_camera_path`` builds: the nominal n_frames (or the source's M) +
    freeze_repeat, which may not exceed ``max_frames`` (ValueError), then with adaptive_frames
    ``adaptive_frame_count`` capped to ``max_frames``. No path has more than ``max_frames`` frames."""
    if isinstance(spec, MatrixTrajectory):  # one frame per matrix: no adaptive count, no cap
        return FrameCount(count=len(spec), nominal=len(spec), adaptive=None, capped=False)
    nominal = (options.n_frames or n_source) + options.freeze_repeat
    if nominal > options.max_frames:
        raise ValueError(f"{nominal} output frames ({'--num_frames' if options.n_frames else 'the source frames'} "
                         f"+ --freeze_repeat) exceed --max_frames {options.max_frames}; raise --max_frames "
                         "or ask for fewer frames")
    adaptive = adaptive_frame_count(spec.pitch, spec.yaw, nominal) if options.adaptive_frames else None
    count = nominal if adaptive is None else min(adaptive, options.max_frames)
    return FrameCount(count=count, nominal=nominal, adaptive=adaptive, capped=count != (adaptive or nominal))


def make_camera_path(
    spec: TrajectorySpec | MatrixTrajectory,
    source_c2w: np.ndarray,
    source_K: np.ndarray,
    width: int,
    height: int,
    fps: float,
    options: PathOptions = PathOptions(),
    scene_depth: float | None = None,
    timestamps: np.ndarray | None = None,
) -> CameraPath:
    """Target cameras for every output frame.

    source_c2w:  [M, 4, 4] camera-to-world of the M source frames (geometry world frame, OpenCV axes).
    source_K:    [3, 3] source intrinsics in pixels at (height, width); every output frame uses it,
                 its focal lengths times the zoom line's value when the file has one (``zoomed_intrinsics``).
    scene_depth: the first frame's foreground depth (``foreground_depth``), required for radius="scene".
    timestamps:  [M] source frame times in seconds for a variable-rate source: the time map then follows
                 real time (``time_map``); None = evenly spaced frames.

    Frame count: ``output_frame_count`` (n_frames or M, plus freeze_repeat; with adaptive_frames clamped by
    ``adaptive_frame_count``; at most max_frames); the time map stretches over it (freeze copies scale with it). The
    keyframes are sampled at linspace(0, 1, N) over the N output frames; pose_i = ``orbit_c2w`` relative
    to source camera 0; c2w_i = source_c2w[0] · pose_i, or source_c2w[s_i] · pose_i with
    relative_to_source (s_i = the source frame output frame i shows).
    Matrix files (``MatrixTrajectory``): N = the number of matrices (n_frames, adaptive_frames, radius,
    interpolation and rotation_only do not apply; freeze copies replace frames within N);
    pose_i = inverse(w2c_i), anchored as above.
    """
    source_c2w = np.asarray(source_c2w, dtype=np.float64)
    source_K = np.asarray(source_K, dtype=np.float64)
    if source_c2w.ndim != 3 or source_c2w.shape[1:] != (4, 4) or len(source_c2w) == 0:
        raise ValueError(f"source_c2w must be [M, 4, 4] with M >= 1, got {source_c2w.shape}")
    if source_K.shape != (3, 3):
        raise ValueError(f"source_K must be [3, 3], got {source_K.shape}")
    n_source = len(source_c2w)
    if isinstance(spec, MatrixTrajectory):
        n = len(spec)
        repeat = min(options.freeze_repeat, n - 1)
        source_index = time_map(n, n_source, None, options.interpolation, options.time_mode, options.slowmo,
                                options.freeze_frame, repeat, timestamps=timestamps)
        pose = np.linalg.inv(spec.w2c)
        zoom = np.ones(n)
    else:
        n, source_index, pose, zoom = _keyframe_path(spec, n_source, options, scene_depth, timestamps)
    anchor = source_c2w[source_index] if options.relative_to_source else source_c2w[:1]
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported by CameraPath's finite check
        c2w = anchor @ pose
    return CameraPath(
        c2w=c2w,
        intrinsics=zoomed_intrinsics(source_K, zoom),
        width=int(width),
        height=int(height),
        fps=float(fps),
        source_index=source_index,
    )


def _keyframe_path(
    spec: TrajectorySpec,
    n_source: int,
    options: PathOptions,
    scene_depth: float | None,
    timestamps: np.ndarray | None,
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """(frame count, source_index [N], pose [N, 4, 4] relative to the anchor, zoom [N]) of a keyframe file."""
    if options.radius == "absolute":
        scale = 1.0
    elif scene_depth is not None and math.isfinite(scene_depth) and scene_depth > 0:
        scale = float(scene_depth)
    else:
        raise ValueError(
            f"radius='scene' needs the first frame's foreground depth (trajectories.foreground_depth), "
            f"got scene_depth={scene_depth!r}; pass it, or use radius='absolute'"
        )
    frames = output_frame_count(spec, n_source, options)
    n = frames.count
    repeat = min(round(options.freeze_repeat * n / frames.nominal), n - 1)
    if options.time_preset is None:
        source_index = time_map(
            n, n_source, spec.time, options.interpolation, options.time_mode, options.slowmo,
            options.freeze_frame, repeat, timestamps=timestamps,
        )
    else:
        if spec.time is not None:
            raise ValueError(f"{spec.source}: has a time line and time preset {options.time_preset!r} was chosen; "
                             "remove the 4th line or the preset (--time_preset)")
        preset = time_preset(options.time_preset)
        knots, keys = preset.time_line()
        source_index = time_map(n, n_source, keys, options.interpolation, preset.time_mode, preset.slowmo,
                                options.freeze_frame, repeat, time_knots=knots, timestamps=timestamps)
    positions = np.linspace(0.0, 1.0, n)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported by CameraPath's finite check
        pose = orbit_c2w(
            interpolate_keys(spec.pitch, positions, options.interpolation),
            interpolate_keys(spec.yaw, positions, options.interpolation),
            interpolate_keys(spec.displacement, positions, options.interpolation, pin_ends=True) * scale,
            rotation_only=options.rotation_only,
        )
    zoom = np.ones(n) if spec.zoom is None else interpolate_keys(spec.zoom, positions, options.interpolation, pin_ends=True)
    return n, source_index, pose, zoom
