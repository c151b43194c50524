"""Geometry stage: depth, intrinsics and poses per frame, from a provided cache or Depth-Anything-3."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from geometry.cache import GeometryCache, GeometryCacheError, GeometryMeta, load_geometry, save_geometry, sidecar_path
from geometry.unproject import cover_hw
from pipeline.layout import GEOMETRY_FILE
from pipeline.manifest import StageKey
from pipeline.stages.config import GeometrySettings, OutputSettings
from pipeline.stages.source import SourceVideo
from pipeline.stages.weights import weights_identity
from pipeline.video_io import VideoReader, file_sha256

VERSION = 1
OUTPUTS = [GEOMETRY_FILE, sidecar_path(GEOMETRY_FILE).name]


def check_settings(settings: GeometrySettings) -> None:
    """DA3 options the estimator accepts (raises ValueError naming the flag)."""
    from geometry.da3 import PATCH_SIZE

    if settings.process_res < PATCH_SIZE:
        raise ValueError(f"--da3_process_res {settings.process_res}: must be at least {PATCH_SIZE} (one DA3 patch); "
                         "the reference uses 504")
    if settings.chunk_size < 2:
        raise ValueError(f"--da3_chunk_size {settings.chunk_size}: must be at least 2 frames")
    if not 1 <= settings.overlap < settings.chunk_size:
        raise ValueError(f"--da3_overlap {settings.overlap}: must be at least 1 and less than --da3_chunk_size "
                         f"({settings.chunk_size}); consecutive chunks are registered on the shared frames")


def check_model_choice(model: Path, allow_random_weights: bool) -> str | None:
    """Refuse a random-weight preset as ``--da3_model_path`` unless explicitly allowed; return the
    warning to print when it is allowed (None for a model folder)."""
    from geometry.da3 import is_preset

    if not is_preset(model):
        return None
    if not allow_random_weights:
        raise ValueError(
            f"--da3_model_path {model} names a Depth-Anything-3 preset, which builds RANDOM weights (for tests and "
            "timing only; its geometry is meaningless and usually fails the plausibility check). Pass a model "
            "folder (bash scripts/download.sh da3 puts one in checkpoints/DA3), or add --da3_random_weights to "
            "run the preset anyway"
        )
    return (f"--da3_model_path {model}: RANDOM DA3 weights (--da3_random_weights); the geometry is meaningless, "
            "use this for tests and timing only")


def provided_cache(geometry_dir: Path | None, source: SourceVideo) -> Path | None:
    """``<geometry_dir>/<video stem>.npz`` if it exists: a cache the user supplies instead of running DA3."""
    if geometry_dir is None:
        return None
    path = Path(geometry_dir) / f"{source.name}.npz"
    return path if path.is_file() else None


def geometry_key(source: SourceVideo, provided: Path | None, model: Path, render: OutputSettings,
                 settings: GeometrySettings) -> StageKey:
    """What the cache depends on: a provided file's content, or the model, working size and DA3 options
    (not the resize policy: the geometry covers the whole frame either way, see ``da3_frame_size``)."""
    if provided is not None:
        side = sidecar_path(provided)
        inputs = {**source.key_inputs, "provided": file_sha256(provided),
                  "provided_sidecar": file_sha256(side) if side.is_file() else None}
        return StageKey("geometry", VERSION, inputs=inputs, params={"source": "provided"})
    params = {"source": "da3", "model": weights_identity([model]), "width": render.width, "height": render.height,
              **{f"da3_{name}": value for name, value in dataclasses.asdict(settings).items()}}
    return StageKey("geometry", VERSION, inputs=source.key_inputs, params=params)


def scene_geometry_key(source: SourceVideo, scene_digest: str) -> StageKey:
    """The key of geometry an input brings itself (an InSpatio-World 1.5 scene folder): its files' content."""
    return StageKey("geometry", VERSION, inputs={"video": source.sha256, "scene": scene_digest},
                    params={"source": "scene folder"})


def store_geometry(out_dir: Path, cache: GeometryCache, source: SourceVideo, producer: str) -> None:
    """Store ``cache`` as ``source``'s geometry in the work folder, with a complete sidecar."""
    meta = dataclasses.replace(cache.meta, source_video=source.path.name, video_sha256=source.sha256,
                               fps=source.info.fps, producer=cache.meta.producer or producer)
    save_geometry(Path(out_dir) / GEOMETRY_FILE, dataclasses.replace(cache, meta=meta))


def import_cache(out_dir: Path, provided: Path, source: SourceVideo) -> None:
    """Validate a provided cache against its video and store it (with a complete sidecar) in the work folder."""
    try:
        cache = load_geometry(provided, expect_frames=source.info.num_frames, expect_video_sha256=source.sha256)
    except GeometryCacheError as exc:
        raise GeometryCacheError(
            f"provided geometry cache {provided} cannot be used for {source.path.name}: {exc.problem}; "
            f"replace that file, or move it out of {provided.parent} to estimate the geometry with DA3",
            exc.problem,
        ) from None
    store_geometry(out_dir, cache, source, f"provided: {provided}")


def da3_frame_size(source: SourceVideo, render: OutputSettings) -> tuple[int, int]:
    """(W, H) DA3 reads the video at: the whole frame, aspect kept, scaled to cover the working size
    (= the working size when the aspects agree). Never cropped, whatever ``--resize`` says, so a
    computed cache describes the same frame as a provided one and serves both policies."""
    h, w = cover_hw((source.info.height, source.info.width), (render.height, render.width))
    return w, h


def estimate(out_dir: Path, model, source: SourceVideo, render: OutputSettings, settings: GeometrySettings) -> None:
    """Run DA3 over the video at ``da3_frame_size`` (read chunk by chunk) and store the cache."""
    from geometry.da3 import estimate_geometry, validate_output

    meta = GeometryMeta(source_video=source.path.name, video_sha256=source.sha256, fps=source.info.fps)
    with VideoReader(source.path, size=da3_frame_size(source, render), min_frames=1) as frames:
        cache = estimate_geometry(frames, model, chunk_size=settings.chunk_size, overlap=settings.overlap,
                                  process_res=settings.process_res, meta=meta)
    save_geometry(Path(out_dir) / GEOMETRY_FILE, validate_output(cache, model))
