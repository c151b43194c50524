"""Geometry stage: depth, intrinsics and poses per frame, from a provided cache or Depth-Anything-3."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from geometry.cache import GeometryMeta, load_geometry, save_geometry, sidecar_path
from pipeline.layout import GEOMETRY_FILE
from pipeline.manifest import StageKey
from pipeline.stages.config import RenderSettings
from pipeline.stages.source import SourceVideo
from pipeline.stages.weights import weights_identity
from pipeline.video_io import VideoReader, file_sha256

VERSION = 1
OUTPUTS = [GEOMETRY_FILE, sidecar_path(GEOMETRY_FILE).name]


def provided_cache(geometry_dir: Path | None, source: SourceVideo) -> Path | None:
    """``<geometry_dir>/<video stem>.npz`` if it exists: a cache the user supplies instead of running DA3."""
    if geometry_dir is None:
        return None
    path = Path(geometry_dir) / f"{source.name}.npz"
    return path if path.is_file() else None


def geometry_key(source: SourceVideo, provided: Path | None, model: Path, settings: RenderSettings) -> StageKey:
    if provided is not None:
        side = sidecar_path(provided)
        inputs = {"video": source.sha256, "provided": file_sha256(provided),
                  "provided_sidecar": file_sha256(side) if side.is_file() else None}
        return StageKey("geometry", VERSION, inputs=inputs, params={"source": "provided"})
    params = {"source": "da3", "model": weights_identity([model]), "width": settings.width,
              "height": settings.height, "resize": settings.resize}
    return StageKey("geometry", VERSION, inputs={"video": source.sha256}, params=params)


def import_cache(out_dir: Path, provided: Path, source: SourceVideo) -> None:
    """Validate a provided cache against its video and store it (with a complete sidecar) in the work folder."""
    cache = load_geometry(provided, expect_frames=source.info.num_frames, expect_video_sha256=source.sha256)
    meta = dataclasses.replace(cache.meta, source_video=source.path.name, video_sha256=source.sha256,
                               fps=source.info.fps, producer=cache.meta.producer or f"provided: {provided}")
    save_geometry(Path(out_dir) / GEOMETRY_FILE, dataclasses.replace(cache, meta=meta))


def estimate(out_dir: Path, model, source: SourceVideo, settings: RenderSettings) -> None:
    """Run DA3 over the video at the working resolution (read chunk by chunk) and store the cache."""
    from geometry.da3 import estimate_geometry

    meta = GeometryMeta(source_video=source.path.name, video_sha256=source.sha256, fps=source.info.fps)
    with VideoReader(source.path, size=(settings.width, settings.height), resize=settings.resize) as frames:
        cache = estimate_geometry(frames, model, meta=meta)
    save_geometry(Path(out_dir) / GEOMETRY_FILE, cache)
