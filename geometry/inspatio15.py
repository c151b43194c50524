"""InSpatio-World 1.5 scene folders, read unchanged into this project's geometry cache and a target path.

Layout (fields as in the public examples)::

  scene.json        output_id, kind ("image" | "video"), views, frames, valid_frames, fps,
                    resolution [H, W], target_intrinsics (3x3 or 9 numbers), depth_encoding "uint16_minmax_v1"
  input/view_XX.png (image) or input/video.mp4 (video); input/prompt.txt; input/target_tcw.txt
  depth/depth.png or depth/depth_XX.png (image: one-channel uint16 per view), or depth/depth.mp4 (video:
        lossless RGB H.264, q = 256 R + G); depth = min + q / 65535 · (max − min)
  depth/metadata.txt          "min max": one line for every map, or one line per view / frame
  depth/source_intrinsics.txt 9 numbers a line (row-major K at ``resolution``): one line, or one per view / frame
  depth/source_tcw.txt        16 numbers a line (OpenCV world-to-camera), one per view / frame

``frames`` counts the padded output frames (target_tcw.txt lines) and ``valid_frames`` those kept;
a video's source frames beyond ``valid_frames`` are padding too and are dropped. The source cameras
keep their world (the first source camera's frame in the examples); the target matrices are in that
same world, so they become a ``MatrixTrajectory`` as they are. Depth is stored as float32, which holds
min + q/65535 · (max − min) for every uint16 q closely enough that re-quantising gives q back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from geometry.cache import GeometryCache, GeometryMeta
from geometry.unproject import scale_intrinsics
from trajectories.matrix_file import MatrixTrajectory, parse_matrix_trajectory
from trajectories.spec import TrajectoryError

DEPTH_ENCODING = "uint16_minmax_v1"
Q_MAX = 65535.0
REQUIRED = ("output_id", "kind", "views", "frames", "valid_frames", "fps", "resolution", "target_intrinsics",
            "depth_encoding")


class SceneFolderError(ValueError):
    """A scene folder is incomplete or malformed; the message names the file (and line) and the fix."""


@dataclass(frozen=True)
class Scene15:
    """One imported scene folder.

    kind: "image" or "video"; inputs: the view images (image) or [the video] (video), in view order;
    prompt: input/prompt.txt; fps: scene.json's; geometry: depth [S, h, w] float32, w2c extrinsics
    [S, 4, 4], intrinsics [S, 3, 3] at the depth resolution, for the S source views / valid frames;
    target: the valid_frames target cameras; target_intrinsics [3, 3] at ``resolution`` (H, W)."""

    folder: Path
    output_id: str
    kind: str
    inputs: tuple[Path, ...]
    prompt: str
    fps: float
    resolution: tuple[int, int]
    geometry: GeometryCache
    target: MatrixTrajectory
    target_intrinsics: np.ndarray


def _rows(path: Path, width: int) -> np.ndarray:
    """[L, width] float64 of a text file of ``width`` numbers per line ('#' comments, blank lines skipped)."""
    rows = []
    for number, raw in enumerate(_text(path).splitlines(), start=1):
        tokens = raw.partition("#")[0].split()
        if not tokens:
            continue
        try:
            values = [float(t) for t in tokens]
        except ValueError:
            values = []
        if len(values) != width or not np.all(np.isfinite(values)):
            raise SceneFolderError(f"{path}:{number}: expected {width} finite numbers, got {raw.strip()!r}")
        rows.append(values)
    if not rows:
        raise SceneFolderError(f"{path}: no data lines; write {width} numbers per line")
    return np.asarray(rows, dtype=np.float64)


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SceneFolderError(f"{path}: missing; an InSpatio-World 1.5 scene folder needs it") from None


def _per_source(values: np.ndarray, count: int, path: Path) -> np.ndarray:
    """One row for every source (broadcast) or one per source; extra rows (padded frames) are dropped."""
    if len(values) == 1:
        return np.repeat(values, count, axis=0)
    if len(values) < count:
        raise SceneFolderError(f"{path}: {len(values)} lines for {count} views/frames; give one line, or one per view/frame")
    return values[:count]


def _matrices(path: Path) -> MatrixTrajectory:
    try:
        return parse_matrix_trajectory(_text(path), str(path))
    except TrajectoryError as err:
        raise SceneFolderError(str(err)) from None


def decode_depth(q: np.ndarray, depth_min: float, depth_max: float) -> np.ndarray:
    """uint16 codes -> float32 depth: min + q / 65535 · (max − min)."""
    return (depth_min + q.astype(np.float64) / Q_MAX * (depth_max - depth_min)).astype(np.float32)


def _read_png16(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            q = np.asarray(im)
    except FileNotFoundError:
        raise SceneFolderError(f"{path}: missing depth map") from None
    if q.ndim != 2 or q.dtype not in (np.uint16, np.int32, np.uint8):
        raise SceneFolderError(f"{path}: depth must be a one-channel 16-bit PNG, got {q.dtype} {q.shape}")
    return q.astype(np.uint16)


def _read_depth_video(path: Path) -> np.ndarray:
    """[F, h, w] uint16 codes of depth.mp4 (lossless RGB: R = high byte, G = low byte)."""
    import av

    if not path.is_file():
        raise SceneFolderError(f"{path}: missing depth video")
    with av.open(str(path)) as container:
        rgb = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return rgb[..., 0].astype(np.uint16) * 256 + rgb[..., 1].astype(np.uint16)


def _field(meta: dict, key: str, kind: type, scene: Path):
    try:
        return kind(meta[key])
    except (KeyError, TypeError, ValueError):
        raise SceneFolderError(f"{scene}: field {key!r} is missing or not a {kind.__name__}") from None


def read_scene(folder: str | Path) -> Scene15:
    """Import an InSpatio-World 1.5 scene folder (see module docstring); raises ``SceneFolderError``."""
    folder = Path(folder)
    scene_json = folder / "scene.json"
    try:
        meta = json.loads(_text(scene_json))
    except json.JSONDecodeError as err:
        raise SceneFolderError(f"{scene_json}:{err.lineno}: not valid JSON ({err.msg})") from None
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise SceneFolderError(f"{scene_json}: missing field(s) {', '.join(missing)}")
    if meta["depth_encoding"] != DEPTH_ENCODING:
        raise SceneFolderError(f"{scene_json}: depth_encoding {meta['depth_encoding']!r} is not supported "
                               f"(only {DEPTH_ENCODING!r})")
    kind = meta["kind"]
    if kind not in ("image", "video"):
        raise SceneFolderError(f"{scene_json}: kind {kind!r} must be 'image' or 'video'")
    views, frames, valid = (_field(meta, k, int, scene_json) for k in ("views", "frames", "valid_frames"))
    if not 1 <= valid <= frames:
        raise SceneFolderError(f"{scene_json}: valid_frames {valid} must be in [1, frames = {frames}]")
    height, width = (int(v) for v in meta["resolution"])
    depth_dir, input_dir = folder / "depth", folder / "input"

    ranges = _rows(depth_dir / "metadata.txt", 2)
    if kind == "image":
        names = ["depth.png"] if views == 1 and (depth_dir / "depth.png").is_file() else [f"depth_{v:02d}.png" for v in range(views)]
        codes = np.stack([_read_png16(depth_dir / n) for n in names])
        inputs = tuple(input_dir / f"view_{v:02d}.png" for v in range(views))
        count = views
    else:
        codes = _read_depth_video(depth_dir / "depth.mp4")
        inputs = (input_dir / "video.mp4",)
        count = min(len(codes), valid)
    for path in inputs:
        if not path.is_file():
            raise SceneFolderError(f"{path}: missing input ({'one image per view' if kind == 'image' else 'the source video'})")
    ranges = _per_source(ranges, count, depth_dir / "metadata.txt")
    depth = np.stack([decode_depth(q, lo, hi) for q, (lo, hi) in zip(codes[:count], ranges)])
    K = _per_source(_rows(depth_dir / "source_intrinsics.txt", 9), count, depth_dir / "source_intrinsics.txt").reshape(-1, 3, 3)
    K = scale_intrinsics(torch.from_numpy(K), (height, width), depth.shape[1:]).numpy()
    tcw_path = depth_dir / "source_tcw.txt"
    source_w2c = _per_source(_matrices(tcw_path).w2c, count, tcw_path)
    target_path = input_dir / "target_tcw.txt"
    target = _matrices(target_path)
    if len(target) not in (frames, valid):
        raise SceneFolderError(f"{target_path}: {len(target)} matrices; scene.json says frames = {frames} "
                               f"(valid_frames = {valid})")
    target = MatrixTrajectory(target.w2c[:valid], target.source, target.text)
    geometry = GeometryCache(
        depth=depth, extrinsics=source_w2c, intrinsics=K,
        meta=GeometryMeta(source_video=inputs[0].name, fps=float(meta["fps"]), frame_count=count,
                          producer=f"InSpatio-World 1.5 scene folder {folder}"),
    )
    prompt_file = input_dir / "prompt.txt"
    return Scene15(
        folder=folder, output_id=str(meta["output_id"]), kind=kind, inputs=inputs,
        prompt=_text(prompt_file).strip() if prompt_file.is_file() else "", fps=float(meta["fps"]),
        resolution=(height, width), geometry=geometry, target=target,
        target_intrinsics=np.asarray(meta["target_intrinsics"], dtype=np.float64).reshape(3, 3),
    )
