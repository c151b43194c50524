"""Generate stage with SpaceTimePilot: source video + geometry cache + camera path + caption -> generated video.

Inputs: the source video; the geometry cache (source cameras); the render folder's ``cameras.json``
(target cameras and the time map; the render itself is not a SpaceTimePilot input); the caption.
Weights: the SpaceTimePilot DiT checkpoint and the Wan2.1 folder (config.json, VAE, umT5, tokenizer).

Frames: one 81-frame window (``models.spacetimepilot_conditions``): shorter camera paths are padded
to 81 and only their N frames written; longer ones, or time maps spanning more than 81 source
frames, are refused with the flags that fix them. Memory order: the umT5 encoder encodes the caption
and the negative prompt and is released before the DiT loads; the Wan VAE (decode behaviour "wan21",
the plain Wan2.1 one) encodes the 81 source frames, the sampler runs (two sequential DiT calls per
step for classifier-free guidance), then the VAE decodes the target latents. Seeds: ``seed`` seeds a
CPU generator that draws the initial noise in float32 in upstream's [1, 16, F, h, w] order.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from geometry.cache import load_geometry
from models.dit import DiTConfig
from models.spacetimepilot import SpaceTimePilot
from models.spacetimepilot_conditions import WINDOW, Window, plan_window, source_camera_rows, target_camera_rows
from models.spacetimepilot_sampler import CFG_SCALE, DEFAULT_STEPS, Conditions, flow_schedule, sample
from models.wan_vae import WanVAE
from pipeline.generate_output import (
    CONFIG_FILE, SPATIAL_MULTIPLE, VAE_FILE, GenerateOptions, _require, _to_uint8, _video_tensor, encode_prompts,
)
from pipeline.video_io import VideoError, VideoReader, VideoWriter
from trajectories.camera_path import CameraPath

log = logging.getLogger(__name__)

# Wan2.1's default negative prompt (upstream's CFG negative).
NEGATIVE_PROMPT = ("色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
                   "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，"
                   "静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走")


@dataclass(frozen=True)
class SpaceTimePilotWeights:
    """``checkpoint``: ``SpacetimePilot_1.3B_v1.ckpt``; ``wan_dir``: the Wan2.1-T2V-1.3B folder
    (``config.json`` gives the DiT sizes, plus the VAE, umT5 encoder and tokenizer)."""

    checkpoint: Path
    wan_dir: Path


@dataclass(frozen=True)
class SpaceTimePilotSettings:
    """Sampler settings: flow-matching steps (upstream's demo: 20) and the guidance scale (5)."""

    steps: int = DEFAULT_STEPS
    cfg_scale: float = CFG_SCALE


@dataclass(frozen=True)
class SpaceTimePilotResult:
    path: Path
    window: Window
    frames_written: int
    seconds: float
    seconds_per_step: float


def _conditions(window: Window, cameras: CameraPath, w2c: np.ndarray, source: torch.Tensor) -> Conditions:
    """Batch-of-one conditions: target/source camera rows and frame times of the window."""
    def batch(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None]

    return Conditions(
        source=source,
        target_times=batch(window.target_times),
        source_times=batch(np.arange(WINDOW)),
        target_cameras=batch(target_camera_rows(cameras.c2w[window.target_index])),
        source_cameras=batch(source_camera_rows(w2c[window.source_frames])),
    )


def generate_spacetimepilot_to_file(
    source_video: str | Path,
    render_dir: str | Path,
    geometry_file: str | Path,
    caption: str,
    weights: SpaceTimePilotWeights,
    out_path: str | Path,
    options: GenerateOptions = GenerateOptions(),
    settings: SpaceTimePilotSettings = SpaceTimePilotSettings(),
) -> SpaceTimePilotResult:
    """Generate the video of one camera path with SpaceTimePilot and write it (H.264, atomically) to ``out_path``."""
    t_start = time.perf_counter()
    render_dir, out_path = Path(render_dir), Path(out_path)
    device = options.torch_device()
    dtype = options.torch_dtype(device)
    config = DiTConfig.from_json(weights.wan_dir / CONFIG_FILE)
    cameras_path = _require(render_dir / "cameras.json", "camera path (cameras.json)")
    cameras = CameraPath.load(cameras_path)
    width, height = cameras.width, cameras.height
    if width % SPATIAL_MULTIPLE or height % SPATIAL_MULTIPLE:
        raise VideoError(f"{cameras_path}: {width}x{height} is not a multiple of {SPATIAL_MULTIPLE} on both sides; "
                         "render at a size such as 832x480")
    with VideoReader(source_video, size=(width, height), resize=options.resize, min_frames=1) as source:
        geometry = load_geometry(geometry_file, expect_frames=len(source))
        window = plan_window(cameras.source_index, len(source))
        log.info(window.describe())
        embeds = encode_prompts([caption, NEGATIVE_PROMPT], weights.wan_dir, config.text_len, device)
        vae = WanVAE.from_checkpoint(weights.wan_dir / VAE_FILE, "wan21", device, dtype)
        source_latents = vae.encode(_video_tensor(source, window.source_frames, dtype)).float()
    dit = SpaceTimePilot.from_checkpoint(weights.checkpoint, config, device, dtype)
    if options.compile_dit:
        dit.compile_blocks()
    b, f, c, h, w = source_latents.shape
    generator = torch.Generator().manual_seed(options.seed)
    noise = torch.randn((b, c, f, h, w), generator=generator, dtype=torch.float32).transpose(1, 2)
    cond = _conditions(window, cameras, geometry.extrinsics, source_latents)
    schedule = flow_schedule(settings.steps)
    t_loop = time.perf_counter()

    def on_step(k: int, _: torch.Tensor) -> None:
        log.info("SpaceTimePilot step %d/%d (%.1f s)", k + 1, settings.steps, time.perf_counter() - t_loop)

    with torch.no_grad():
        latents = sample(dit, dit.encode_text(embeds[:1]), dit.encode_text(embeds[1:]), noise.to(device), cond,
                         schedule, settings.cfg_scale, on_step=on_step)
        per_step = (time.perf_counter() - t_loop) / settings.steps
        del dit
        frames = _to_uint8(vae.decode(latents)[0])[: window.requested]
    with VideoWriter(out_path, options.fps or cameras.fps, width, height, options.encode) as writer:
        for frame in frames:
            writer.write(frame)
    return SpaceTimePilotResult(out_path, window, len(frames), time.perf_counter() - t_start, per_step)
