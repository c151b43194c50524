"""Render stage: source video + geometry cache + trajectory -> render.mp4, mask.mp4, mask.npz, cameras.json.

The geometry always describes the whole source frame; the resize policy is a property of the output
camera. ``stretch``: the output K is the source K scaled to the working size (x and y independently).
``crop``: the output K is the source K of the centred window with the working aspect
(``geometry.unproject.crop_intrinsics``), so the identity trajectory shows exactly the frames
``VideoReader(..., resize="crop")`` returns, while colour is still sampled from the whole frame (read
at ``cover_hw``), so a moving camera sees past the crop's edges where the source saw something.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from geometry.cache import GeometryCache, open_geometry
from geometry.unproject import cover_hw, crop_intrinsics, scale_intrinsics
from pipeline.manifest import StageKey, text_sha256
from pipeline.render_folder import RenderFolder
from pipeline.stages.config import OutputSettings
from pipeline.stages.source import SourceVideo
from pipeline.video_io import VideoInfo
from trajectories import CameraPath, PathOptions, TrajectorySpec, foreground_depth, make_camera_path

VERSION = 2
OUTPUTS = list(RenderFolder.OUTPUTS)
BACKENDS = ("torch",)
RESIZE_POLICIES = ("stretch", "crop")


def check_settings(settings: OutputSettings) -> None:
    """Options the renderer supports (raises ValueError naming the flag)."""
    if settings.backend not in BACKENDS:
        raise ValueError(f"--render_backend {settings.backend!r} is not available; choose one of {', '.join(BACKENDS)}")
    if settings.resize not in RESIZE_POLICIES:
        raise ValueError(f"--resize {settings.resize!r}: choose one of {', '.join(RESIZE_POLICIES)}")


def output_intrinsics(K: np.ndarray, geometry_hw: tuple[int, int], source_hw: tuple[int, int],
                      settings: OutputSettings) -> np.ndarray:
    """The output camera's K [3, 3] at (settings.height, settings.width) for the source K [3, 3] given
    at the geometry's (h, w); ``source_hw`` is the video's frame size, which the crop window is cut from
    (the geometry may have another aspect, e.g. DA3's processing size)."""
    out_hw = (settings.height, settings.width)
    K = torch.from_numpy(np.asarray(K, dtype=np.float64))
    if settings.resize == "crop":
        return crop_intrinsics(scale_intrinsics(K, geometry_hw, source_hw), source_hw, out_hw).numpy()
    return scale_intrinsics(K, geometry_hw, out_hw).numpy()


def colour_size(source: VideoInfo, settings: OutputSettings) -> tuple[int, int]:
    """(W, H) the renderer reads the source at: the working size (stretch), or the whole frame at the
    crop's pixel density (crop)."""
    if settings.resize == "crop":
        h, w = cover_hw((source.height, source.width), (settings.height, settings.width))
        return w, h
    return settings.width, settings.height


def build_camera_path(
    geometry: GeometryCache, spec: TrajectorySpec, options: PathOptions, settings: OutputSettings, source: VideoInfo
) -> CameraPath:
    """The target cameras: the trajectory around the geometry's cameras, at the working resolution."""
    conf0 = geometry.conf[0] if geometry.conf is not None else None
    scene_depth = foreground_depth(geometry.depth[0], conf0) if options.radius == "scene" else None
    K = output_intrinsics(geometry.intrinsics[0], geometry.resolution, (source.height, source.width), settings)
    return make_camera_path(
        spec, geometry.c2w, K, settings.width, settings.height, settings.fps or source.fps, options, scene_depth
    )


def render_key(source: SourceVideo, geometry_digest: str | None, spec: TrajectorySpec, options: PathOptions,
               settings: OutputSettings) -> StageKey:
    return StageKey(
        "render",
        VERSION,
        inputs={"video": source.sha256, "geometry": geometry_digest, "trajectory": text_sha256(spec.text)},
        params={"path": dataclasses.asdict(options), "render": dataclasses.asdict(settings)},
    )


def produce_render(out_dir: Path, source: SourceVideo, geometry_file: Path, spec: TrajectorySpec,
                   options: PathOptions, settings: OutputSettings, device: str) -> None:
    from pipeline.render_output import RenderOptions, render_to_folder

    # Depth, conf and image are streamed through a scratch folder inside out_dir (removed afterwards),
    # so memory does not grow with the video's length.
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with open_geometry(geometry_file, expect_frames=source.info.num_frames, scratch_dir=out_dir) as geometry:
        camera_path = build_camera_path(geometry, spec, options, settings, source.info)
        render_to_folder(source.path, geometry, camera_path, out_dir,
                         RenderOptions(device=device, colour_size=colour_size(source.info, settings)))
