"""Final outputs of one video for one trajectory: the result, the conditions used, and a preview."""

from __future__ import annotations

import shutil
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from pipeline.fsutil import atomic_write
from pipeline.layout import GENERATED_FILE
from pipeline.manifest import StageKey
from pipeline.render_folder import RenderFolder
from pipeline.stages.config import OutputSettings
from pipeline.stages.source import SourceVideo
from pipeline.video_io import EncodeOptions, VideoReader, VideoWriter

VERSION = 1
CHUNK = 16
# The preview is for people; the conditions and the source keep the writer's default fidelity.
PREVIEW_ENCODE = EncodeOptions(crf=20, preset="ultrafast")


def outputs(with_result: bool) -> list[str]:
    return [*RenderFolder.CONDITIONS, "source.mp4", "preview.mp4"] + ([GENERATED_FILE] if with_result else [])


def publish_key(source: SourceVideo, render_digest: str | None, generate_digest: str | None,
                settings: OutputSettings) -> StageKey:
    return StageKey(
        "publish",
        VERSION,
        inputs={"video": source.sha256, "render": render_digest, "generated": generate_digest},
        params={"width": settings.width, "height": settings.height, "resize": settings.resize},
    )


def _copy(src: Path, dst: Path) -> None:
    with atomic_write(dst) as tmp:
        shutil.copyfile(src, tmp)


def _panels(readers: list[VideoReader], indices: range) -> np.ndarray:
    return np.concatenate([r.get_batch(list(indices)) for r in readers], axis=2)


def produce_outputs(out_dir: Path, source: SourceVideo, render_dir: Path, generated: Path | None,
                    settings: OutputSettings) -> None:
    """Copy the conditions and result; write source.mp4 (time-mapped) and preview.mp4 side by side."""
    out_dir, render = Path(out_dir), RenderFolder(render_dir)
    for name in RenderFolder.CONDITIONS:
        _copy(render.root / name, out_dir / name)
    if generated is not None:
        _copy(generated, out_dir / GENERATED_FILE)
    path = render.cameras()
    size = (path.width, path.height)
    with VideoReader(source.path, size=size, resize=settings.resize) as src, \
            VideoWriter(out_dir / "source.mp4", path.fps, *size) as writer:
        for i in range(0, len(path), CHUNK):
            for frame in src.get_batch(path.source_index[i:i + CHUNK].tolist()):
                writer.write(frame)
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
