"""What an input folder holds besides videos: photos, sets of photos, InSpatio-World 1.5 scene folders.

Directly in ``--input_dir``:
  clip.mp4 (.mov .mkv .webm .avi)   a video
  photo.png (.jpg .jpeg .webp)      an image scene of one view
  room/view_00.png, view_01.png, …  a sub-folder of images: one scene of several views (sorted by name)
  scene/scene.json + input/ + depth/  an InSpatio-World 1.5 scene folder (``geometry.inspatio15``)
Sub-folders with neither images nor ``scene.json`` (e.g. ``geometry/`` of provided caches) are not inputs.

The stages read every input as a video: an image scene's views become the frames of a lossless
video ``<work>/<name>/input/<name>.mp4`` (H.264 crf 0, yuv444p: exact up to the RGB -> YUV rounding),
rewritten whenever the images change. Its frames are views of one moment, not times: the source is
*static* (every output frame's source time is 0; see ``pipeline.stages.render``). A 1.5 scene
brings its own geometry, prompt and target path (``input/target_tcw.txt``), which replace DA3, the
captioner and ``--traj`` for that input.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from geometry.cache import GeometryCache
from pipeline.fsutil import atomic_write
from pipeline.layout import VIDEO_SUFFIXES
from trajectories.matrix_file import MatrixTrajectory

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
SCENE_FILE = "scene.json"
IMAGE_SCENE_FPS = 16.0  # frame rate of an image scene's outputs without --fps (photos have none)
InputKind = Literal["video", "image", "views", "scene15"]


class InputError(ValueError):
    """An input that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class InputItem:
    """One input of the folder: ``path`` (file or folder) and its kind; ``name`` names its outputs."""

    path: Path
    kind: InputKind

    @property
    def name(self) -> str:
        return self.path.stem if self.path.is_file() else self.path.name


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def find_inputs(input_dir: Path) -> list[InputItem]:
    """Every input directly in ``input_dir`` (see module docstring), sorted by name."""
    items = []
    for p in sorted(Path(input_dir).iterdir()):
        suffix = p.suffix.lower()
        if p.is_file() and suffix in VIDEO_SUFFIXES:
            items.append(InputItem(p, "video"))
        elif p.is_file() and suffix in IMAGE_SUFFIXES:
            items.append(InputItem(p, "image"))
        elif p.is_dir() and (p / SCENE_FILE).is_file():
            items.append(InputItem(p, "scene15"))
        elif p.is_dir() and _images(p):
            items.append(InputItem(p, "views"))
    return items


@dataclass(frozen=True)
class PreparedInput:
    """What the stages read for one input.

    video: the source video; static: its frames are views of one moment (image scenes);
    caption / trajectory / geometry: given by a 1.5 scene folder (None otherwise); digest: content
    hash of everything the input brings besides the video (keys the imported geometry)."""

    video: Path
    static: bool = False
    caption: str | None = None
    trajectory: MatrixTrajectory | None = None
    geometry: GeometryCache | None = None
    digest: str | None = None


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise InputError(f"{path}: not a readable image ({err}); re-save it as PNG or JPEG") from None


def _files_digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def views_video(images: list[Path], out: Path, fps: float = IMAGE_SCENE_FPS) -> Path:
    """``out`` (.mp4) holding ``images`` as lossless frames; reused while a sidecar digest of the images matches."""
    from pipeline.video_io import EncodeOptions, write_video

    digest = f"{_files_digest(images)} {fps!r}"
    stamp = out.with_suffix(".sha256")
    if out.is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
        return out
    frames = [_read_image(p) for p in images]
    sizes = {f.shape[:2] for f in frames}
    if len(sizes) > 1:
        listing = ", ".join(f"{p.name} {f.shape[1]}x{f.shape[0]}" for p, f in zip(images, frames))
        raise InputError(f"{images[0].parent}: the views differ in size ({listing}); give every view the same size")
    h, w = frames[0].shape[:2]
    if h % 2 or w % 2:  # H.264 needs even sizes: drop the last row / column
        frames = [f[: h - h % 2, : w - w % 2] for f in frames]
    write_video(out, np.stack(frames), fps, EncodeOptions(crf=0, preset="ultrafast", pix_fmt="yuv444p"))
    with atomic_write(stamp) as tmp:
        tmp.write_text(digest + "\n")
    return out


def _first_frames(video: Path, count: int, out: Path) -> Path:
    """``video`` itself when it has ``count`` frames, else its first ``count`` frames re-encoded losslessly
    (the padding of a 1.5 scene's video); raises InputError when it has fewer."""
    from pipeline.video_io import EncodeOptions, VideoReader, probe_video, write_video

    info = probe_video(video, min_frames=1)
    if info.num_frames == count:
        return video
    if info.num_frames < count:
        raise InputError(f"{video}: {info.num_frames} frames, but the scene's depth and cameras describe {count}")
    digest = f"{_files_digest([video])} {count}"
    stamp = out.with_suffix(".sha256")
    if not (out.is_file() and stamp.is_file() and stamp.read_text().strip() == digest):
        with VideoReader(video, min_frames=1) as reader:
            frames = np.stack([reader[i] for i in range(count)])
        write_video(out, frames, info.fps, EncodeOptions(crf=0, preset="ultrafast", pix_fmt="yuv444p"))
        with atomic_write(stamp) as tmp:
            tmp.write_text(digest + "\n")
    return out


def prepare_input(item: InputItem, work: Path) -> PreparedInput:
    """The video and extras the stages read for ``item``; ``work`` is its work folder (``<work_dir>/<name>``)."""
    folder = Path(work) / "input"
    if item.kind == "video":
        return PreparedInput(video=item.path)
    if item.kind in ("image", "views"):
        images = [item.path] if item.kind == "image" else _images(item.path)
        return PreparedInput(video=views_video(images, folder / f"{item.name}.mp4"), static=True)
    from geometry.inspatio15 import SceneFolderError, read_scene

    try:
        scene = read_scene(item.path)
    except SceneFolderError as err:
        raise InputError(str(err)) from None
    files = sorted(p for p in item.path.rglob("*") if p.is_file())
    if scene.kind == "image":
        video = views_video(list(scene.inputs), folder / f"{item.name}.mp4", scene.fps)
    else:
        video = _first_frames(scene.inputs[0], scene.geometry.num_frames, folder / f"{item.name}.mp4")
    return PreparedInput(video=video, static=scene.kind == "image", caption=scene.prompt or None,
                         trajectory=scene.target, geometry=scene.geometry, digest=_files_digest(files))
