"""Render stage: source video + geometry cache + trajectory -> render.mp4, mask.mp4, mask.npz, cameras.json."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from geometry.cache import GeometryCache, load_geometry
from geometry.unproject import scale_intrinsics
from pipeline.manifest import StageKey, text_sha256
from pipeline.stages.config import RenderSettings
from pipeline.stages.source import SourceVideo
from trajectories import CameraPath, PathOptions, TrajectorySpec, foreground_depth, make_camera_path

VERSION = 1
OUTPUTS = ["render.mp4", "mask.mp4", "mask.npz", "cameras.json"]
BACKENDS = ("torch",)


def check_settings(settings: RenderSettings) -> None:
    """Options the renderer supports (it reads the source stretched to the working size)."""
    if settings.backend not in BACKENDS:
        raise ValueError(f"--render_backend {settings.backend!r} is not available; choose one of {', '.join(BACKENDS)}")
    if settings.resize != "stretch":
        raise ValueError(f"--resize {settings.resize!r} is not supported by the renderer yet; use --resize stretch")


def build_camera_path(
    geometry: GeometryCache, spec: TrajectorySpec, options: PathOptions, settings: RenderSettings, source_fps: float
) -> CameraPath:
    """The target cameras: the trajectory around the geometry's cameras, at the working resolution."""
    conf0 = geometry.conf[0] if geometry.conf is not None else None
    scene_depth = foreground_depth(geometry.depth[0], conf0) if options.radius == "scene" else None
    K0 = torch.from_numpy(np.asarray(geometry.intrinsics[0], dtype=np.float64))
    K = scale_intrinsics(K0, geometry.resolution, (settings.height, settings.width)).numpy()
    return make_camera_path(
        spec, geometry.c2w, K, settings.width, settings.height, settings.fps or source_fps, options, scene_depth
    )


def render_key(source: SourceVideo, geometry_digest: str | None, spec: TrajectorySpec, options: PathOptions,
               settings: RenderSettings) -> StageKey:
    return StageKey(
        "render",
        VERSION,
        inputs={"video": source.sha256, "geometry": geometry_digest, "trajectory": text_sha256(spec.text)},
        params={"path": dataclasses.asdict(options), "render": dataclasses.asdict(settings)},
    )


def produce_render(out_dir: Path, source: SourceVideo, geometry_file: Path, spec: TrajectorySpec,
                   options: PathOptions, settings: RenderSettings, device: str) -> None:
    from pipeline.render_output import RenderOptions, render_to_folder

    geometry = load_geometry(geometry_file, expect_frames=source.info.num_frames)
    camera_path = build_camera_path(geometry, spec, options, settings, source.info.fps)
    render_to_folder(source.path, geometry, camera_path, out_dir, RenderOptions(device=device))
