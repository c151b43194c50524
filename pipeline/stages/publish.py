"""Final outputs of one video for one trajectory: the result, the conditions used, and a preview."""

from __future__ import annotations

import shutil
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from pipeline.fsutil import atomic_write, folder_lock, remove_if_empty
from pipeline.layout import GENERATED_FILE
from pipeline.manifest import StageKey, invalidate, manifest_path
from pipeline.render_folder import RenderFolder
from pipeline.stages.config import OutputSettings
from pipeline.stages.source import SourceVideo
from pipeline.video_io import EncodeOptions, VideoReader, VideoWriter
from pipeline.trajectory_plot import TRAJECTORY_FILE, write_trajectory_plot
from pipeline.viewer import VIEWER_FILE, write_viewer
from trajectories import CameraPath

VERSION = 2
CHUNK = 16
# The preview is for people; the conditions and the source keep the writer's default fidelity.
PREVIEW_ENCODE = EncodeOptions(crf=20, preset="ultrafast")


def outputs(with_result: bool) -> list[str]:
    return [*RenderFolder.CONDITIONS, "source.mp4", "preview.mp4", VIEWER_FILE, TRAJECTORY_FILE] + ([GENERATED_FILE] if with_result else [])


def withdraw(out_dir: Path) -> list[str]:
    """Remove an earlier run's manifest, then its published files, from ``out_dir`` (after this video's run
    failed, so nothing there looks like a result for the new input), and the folder if that empties it;
    returns the names removed."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    with folder_lock(out_dir):
        removed = [p.name for p in [manifest_path(out_dir), *(out_dir / n for n in outputs(True))] if p.is_file()]
        invalidate(out_dir)
        for name in outputs(True):
            (out_dir / name).unlink(missing_ok=True)
        remove_if_empty(out_dir)
    return removed


def publish_key(source: SourceVideo, render_digest: str | None, generate_digest: str | None,
                settings: OutputSettings) -> StageKey:
    return StageKey(
        "publish",
        VERSION,
        inputs={**source.key_inputs, "render": render_digest, "generated": generate_digest},
        params={"width": settings.width, "height": settings.height, "resize": settings.resize},
    )


def _copy(src: Path, dst: Path) -> None:
    with atomic_write(dst) as tmp:
        shutil.copyfile(src, tmp)


def _panels(readers: list[VideoReader], indices: range) -> np.ndarray:
    return np.concatenate([r.get_batch(list(indices)) for r in readers], axis=2)


def write_source_video(out: Path, source: SourceVideo, path: CameraPath, resize: str) -> None:
    """``out``: the source frames output frame by output frame (following the time map), at the path's size
    and the ``resize`` policy, so they line up with the render."""
    size = (path.width, path.height)
    with VideoReader(source.path, size=size, resize=resize, min_frames=1) as src, VideoWriter(out, path.fps, *size) as writer:
        for i in range(0, len(path), CHUNK):
            for frame in src.get_batch(path.source_index[i:i + CHUNK].tolist()):
                writer.write(frame)


def produce_outputs(out_dir: Path, source: SourceVideo, render_dir: Path, generated: Path | None,
                    settings: OutputSettings, geometry_file: Path) -> None:
    """Copy the conditions and result; write source.mp4 (time-mapped), preview.mp4 side by side, viewer.html
    and trajectory.png (the camera path over ``geometry_file``'s first frame)."""
    out_dir, render = Path(out_dir), RenderFolder(render_dir)
    for name in RenderFolder.CONDITIONS:
        _copy(render.root / name, out_dir / name)
    if generated is not None:
        _copy(generated, out_dir / GENERATED_FILE)
    else:  # an earlier run's result does not belong to these conditions
        (out_dir / GENERATED_FILE).unlink(missing_ok=True)
    path = render.cameras()
    size = (path.width, path.height)
    write_source_video(out_dir / "source.mp4", source, path, settings.resize)
    panels = [out_dir / "source.mp4", render.render_video, render.mask_video]
    if generated is not None:
        panels.append(generated)
    with ExitStack() as stack:
        readers = [stack.enter_context(VideoReader(p, size=size)) for p in panels]
        n = min(len(r) for r in readers)
        writer = stack.enter_context(
            VideoWriter(out_dir / "preview.mp4", path.fps, size[0] * len(readers), size[1], PREVIEW_ENCODE))
        for i in range(0, n, CHUNK):
            for frame in _panels(readers, range(i, min(n, i + CHUNK))):
                writer.write(frame)
    title = f"{source.name} / {render_dir.name}"
    write_trajectory_plot(out_dir / TRAJECTORY_FILE, path, geometry_file, source.path, title)
    write_viewer(out_dir, path, title)
