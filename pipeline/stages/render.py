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
import logging
from pathlib import Path

import numpy as np
import torch

from geometry.cache import GeometryCache, open_geometry
from geometry.unproject import cover_hw, crop_intrinsics, scale_intrinsics
from pipeline.manifest import StageKey, text_sha256
from pipeline.render_folder import RenderFolder
from pipeline.stages.config import OutputSettings
from pipeline.stages.source import SourceVideo
from pipeline.video_io import VideoInfo, frame_times
from trajectories import (
    CameraPath,
    FrameCount,
    PathOptions,
    Trajectory,
    foreground_depth,
    make_camera_path,
    output_frame_count,
)

log = logging.getLogger("pipeline")

VERSION = 2
OUTPUTS = list(RenderFolder.OUTPUTS)
BACKENDS = ("torch",)
RESIZE_POLICIES = ("stretch", "crop")
# Image scenes: output frames of a keyframe file without --num_frames (81 = 7 whole generation blocks).
STATIC_FRAMES = 81
SIZE_MULTIPLE = 16  # latent 8x and patch 2x
MAX_FPS = 1000.0


def check_time_options(options: PathOptions, source: VideoInfo, video: Path) -> None:
    """Trajectory options that depend on the source video (raises ValueError naming the flag and the video)."""
    nominal = (options.n_frames or source.num_frames) + options.freeze_repeat
    if nominal > options.max_frames:
        raise ValueError(
            f"{video}: {nominal} output frames ({source.num_frames if options.n_frames is None else '--num_frames'}"
            f" + --freeze_repeat {options.freeze_repeat}) exceed --max_frames {options.max_frames}; raise "
            "--max_frames or set a smaller --num_frames"
        )
    if options.freeze_frame is not None and options.freeze_frame >= source.num_frames:
        raise ValueError(
            f"--freeze_frame {options.freeze_frame}: {video} has {source.num_frames} frames "
            f"(0 to {source.num_frames - 1}); choose a frame in that range"
        )


def check_settings(settings: OutputSettings) -> None:
    """Options the renderer supports (raises ValueError naming the flag)."""
    for flag, value in (("--width", settings.width), ("--height", settings.height)):
        if value < SIZE_MULTIPLE or value % SIZE_MULTIPLE:
            raise ValueError(
                f"{flag} {value}: must be a positive multiple of {SIZE_MULTIPLE} (the generator works on "
                "8x-downsampled latents in 2x2 patches); e.g. --width 832 --height 480"
            )
    if settings.fps is not None and not 0 < settings.fps <= MAX_FPS:
        raise ValueError(f"--fps {settings.fps:g}: must be a frame rate in (0, {MAX_FPS:g}]; "
                         "leave it out to keep the source's")
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


def static_options(options: PathOptions) -> PathOptions:
    """An image scene's path options: a keyframe file's frame count defaults to ``STATIC_FRAMES``."""
    return dataclasses.replace(options, n_frames=options.n_frames or STATIC_FRAMES)


def build_camera_path(
    geometry: GeometryCache, spec: Trajectory, options: PathOptions, settings: OutputSettings, source: VideoInfo,
    static: bool = False, timestamps: np.ndarray | None = None,
) -> CameraPath:
    """The target cameras: the trajectory around the geometry's cameras, at the working resolution.

    ``static``: the source frames are views of one moment (an image scene): the path is planned
    around view 0 alone, so every source index is 0 (time stands still), a keyframe file's frame
    count defaults to ``STATIC_FRAMES`` instead of the number of views. ``timestamps`` (seconds per
    source frame) make the time map follow a variable-rate source's real time."""
    conf0 = geometry.conf[0] if geometry.conf is not None else None
    scene_depth = foreground_depth(geometry.depth[0], conf0) if options.radius == "scene" else None
    K = output_intrinsics(geometry.intrinsics[0], geometry.resolution, (source.height, source.width), settings)
    c2w = geometry.c2w
    if static:
        c2w, options = c2w[:1], static_options(options)
    return make_camera_path(spec, c2w, K, settings.width, settings.height, settings.fps or source.fps, options,
                            scene_depth, timestamps)


def anchor_source_index(camera_path: CameraPath, view_coverage: np.ndarray) -> CameraPath:
    """An image scene's time map: every output frame shows (as the generator's reference) the view that
    covers most of the target over the generation block the frame belongs to."""
    from geometry.multiview import anchor_views
    from pipeline.generate_output import frame_blocks

    blocks = frame_blocks(len(camera_path))
    best = np.asarray([views[0] for views in anchor_views(view_coverage, blocks, 1)], dtype=np.int64)
    return dataclasses.replace(camera_path, source_index=best[blocks])


def log_frame_count(spec: Trajectory, source: SourceVideo, options: PathOptions) -> FrameCount:
    """The output frame count of ``source`` on this path, logged (a warning when --max_frames capped it)."""
    if source.static:  # planned around view 0 alone (``build_camera_path``)
        frames = output_frame_count(spec, 1, static_options(options))
    else:
        frames = output_frame_count(spec, source.info.num_frames, options)
    log.log(logging.WARNING if frames.capped else logging.INFO, "%s: %s", source.path.name, frames.describe())
    return frames


def render_key(source: SourceVideo, geometry_digest: str | None, spec: Trajectory, options: PathOptions,
               settings: OutputSettings) -> StageKey:
    return StageKey(
        "render",
        VERSION,
        inputs={**source.key_inputs, "geometry": geometry_digest, "trajectory": text_sha256(spec.text)},
        # A variable-rate source's time map follows its timestamps (absent otherwise: earlier keys stay valid).
        params={"path": dataclasses.asdict(options), "render": dataclasses.asdict(settings),
                **({"timing": "timestamps"} if source.info.variable_rate else {})},
    )


def produce_render(out_dir: Path, source: SourceVideo, geometry_file: Path, spec: Trajectory,
                   options: PathOptions, settings: OutputSettings, device: str) -> None:
    from pipeline.render_output import RenderOptions, render_to_folder

    # Depth and conf are streamed through a scratch folder inside out_dir (removed afterwards), so
    # memory does not grow with the video's length; colour comes from the video, so the cache's image
    # is only checked, not decompressed.
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    timestamps = frame_times(source.path) if source.info.variable_rate else None
    with open_geometry(geometry_file, expect_frames=source.info.num_frames, scratch_dir=out_dir, image=False) as geometry:
        camera_path = build_camera_path(geometry, spec, options, settings, source.info, source.static, timestamps)
        outputs = render_to_folder(source.path, geometry, camera_path, out_dir,
                                   RenderOptions(device=device, colour_size=colour_size(source.info, settings),
                                                 fuse_views=source.static))
    if source.static:
        anchor_source_index(camera_path, outputs.view_coverage).save(outputs.folder.cameras_json)
