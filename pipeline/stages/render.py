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

from geometry.cache import GeometryCache, load_geometry
from geometry.unproject import cover_hw, crop_intrinsics, scale_intrinsics
from pipeline.manifest import StageKey, text_sha256
from pipeline.stages.config import OutputSettings
from pipeline.stages.source import SourceVideo
from pipeline.video_io import VideoInfo
from trajectories import CameraPath, PathOptions, Trajectory, foreground_depth, make_camera_path

VERSION = 1
OUTPUTS = ["render.mp4", "mask.mp4", "mask.npz", "cameras.json"]
BACKENDS = ("torch",)
RESIZE_POLICIES = ("stretch", "crop")
# Image scenes: output frames of a keyframe file without --num_frames (81 = 7 whole generation blocks).
STATIC_FRAMES = 81


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
    geometry: GeometryCache, spec: Trajectory, options: PathOptions, settings: OutputSettings, source: VideoInfo,
    static: bool = False,
) -> CameraPath:
    """The target cameras: the trajectory around the geometry's cameras, at the working resolution.

    ``static``: the source frames are views of one moment (an image scene): the path is planned
    around view 0 alone, so every source index is 0 (time stands still), a keyframe file's frame
    count defaults to ``STATIC_FRAMES`` instead of the number of views."""
    conf0 = geometry.conf[0] if geometry.conf is not None else None
    scene_depth = foreground_depth(geometry.depth[0], conf0) if options.radius == "scene" else None
    K = output_intrinsics(geometry.intrinsics[0], geometry.resolution, (source.height, source.width), settings)
    c2w = geometry.c2w
    if static:
        c2w = c2w[:1]
        options = dataclasses.replace(options, n_frames=options.n_frames or STATIC_FRAMES)
    return make_camera_path(spec, c2w, K, settings.width, settings.height, settings.fps or source.fps, options,
                            scene_depth)


def anchor_source_index(camera_path: CameraPath, view_coverage: np.ndarray) -> CameraPath:
    """An image scene's time map: every output frame shows (as the generator's reference) the view that
    covers most of the target over the generation block the frame belongs to."""
    from geometry.multiview import anchor_views
    from pipeline.generate_output import frame_blocks

    blocks = frame_blocks(len(camera_path))
    best = np.asarray([views[0] for views in anchor_views(view_coverage, blocks, 1)], dtype=np.int64)
    return dataclasses.replace(camera_path, source_index=best[blocks])


def render_key(source: SourceVideo, geometry_digest: str | None, spec: Trajectory, options: PathOptions,
               settings: OutputSettings) -> StageKey:
    return StageKey(
        "render",
        VERSION,
        inputs={"video": source.sha256, "geometry": geometry_digest, "trajectory": text_sha256(spec.text)},
        params={"path": dataclasses.asdict(options), "render": dataclasses.asdict(settings)},
    )


def produce_render(out_dir: Path, source: SourceVideo, geometry_file: Path, spec: Trajectory,
                   options: PathOptions, settings: OutputSettings, device: str) -> None:
    from pipeline.render_output import RenderOptions, render_to_folder

    geometry = load_geometry(geometry_file, expect_frames=source.info.num_frames)
    camera_path = build_camera_path(geometry, spec, options, settings, source.info, source.static)
    outputs = render_to_folder(source.path, geometry, camera_path, out_dir,
                               RenderOptions(device=device, colour_size=colour_size(source.info, settings),
                                             fuse_views=source.static))
    if source.static:
        anchor_source_index(camera_path, outputs.view_coverage).save(outputs.cameras_json)
