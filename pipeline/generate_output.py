"""Generate stage: source video + render folder + caption → generated video (causal DiT, streamed).

Inputs: the source video; the render folder of the render stage (``render.mp4``, ``mask.npz``
(lossless, read with ``pipeline.render_folder.load_mask``; ``mask.mp4`` is the fallback), ``cameras.json`` with the per-frame ``source_index`` time
map); the caption; the weights (``GenerateWeights``).

Frame bookkeeping. The camera path has N frames. The VAE turns 4k−3 frames into k latent frames and
the DiT works in blocks of 3 latent frames, so the stage generates ``4·T_lat − 3`` frames with
``T_lat`` the smallest multiple of 3 whose frames cover N; the render, the mask and the time map are
padded with copies of their last frame to that length, and only the N requested frames are written
(N = 45, 57, 69, 81, … need no padding). Output frame t shows source frame ``source_index[t]``: the
reference latents are encoded from the source frames in time-map order, so freeze, reverse and slow
motion reach the model exactly as they reached the renderer.

Order of work (for memory): the text encoder encodes the caption and is released; then the DiT runs
block by block. Just before each block the autoencoder (Wan VAE, or TAEHV with ``use_tae`` for
encoding and decoding, as in the reference) encodes that block's source and render frames through
stream encoders (one causal run each, so the source is encoded once and the result equals a
whole-clip encode), and every finished block is decoded by the stream decoder, rounded on the
device and appended to the output file by a writer thread (``FrameWriterThread``), so encoding the
mp4 never holds up the next block. The first frames exist early and only one block of frames, latents and noise is held,
so memory does not grow with video length (the render mask, read whole, is the exception: one bit
per pixel on disk, one byte per pixel in memory). Pixels are rounded to uint8.

Seeds: ``seed`` fixes one CPU random stream that gives the initial noise of every block and then
every re-noise tensor (as if the whole initial noise were drawn first), so results do not depend on
the device. Bit-exact equality with the reference's random stream is not
a goal (its noise depends on warm-up calls); equality given the same noise is (see the parity tests).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from models.conditions import pack_mask
from models.dit import CausalDiT, DiTConfig
from models.sampler import BLOCK_FRAMES, BlockInputs, generator_renoise, stream_blocks
from models.taehv import TAEHV
from models.umt5 import TextEncoder
from models.wan_vae import SPATIAL_STRIDE, TEMPORAL_STRIDE, WanVAE
from pipeline.render_folder import RenderFolder
from pipeline.video_io import EncodeOptions, VideoError, VideoReader, VideoWriter
from trajectories.camera_path import CameraPath

log = logging.getLogger(__name__)

SPATIAL_MULTIPLE = 16  # VAE 8x times the DiT's 2x2 patches
VAE_FILE = "Wan2.1_VAE.pth"
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class GenerateWeights:
    """Weight files. ``wan_dir`` is the Wan2.1-T2V-1.3B folder (``config.json``, ``Wan2.1_VAE.pth``,
    the umT5 encoder and ``google/umt5-xxl/`` tokenizer); ``config`` overrides its config.json;
    ``tae`` is ``taew2_1.pth`` (needed with ``use_tae``)."""

    dit: Path
    wan_dir: Path
    tae: Path | None = None
    config: Path | None = None

    @classmethod
    def from_paths(cls, dit, wan_dir, tae=None, config=None) -> "GenerateWeights":
        """Build from str or Path arguments."""
        return cls(Path(dit), Path(wan_dir), None if tae is None else Path(tae), None if config is None else Path(config))

    @property
    def config_path(self) -> Path:
        return self.config or self.wan_dir / CONFIG_FILE


@dataclass(frozen=True)
class GenerateOptions:
    """``device``/``dtype`` "auto": CUDA + bfloat16 when available, else CPU + float32.
    ``decode_mode``: Wan VAE decode behaviour ("inspatio", what the DiT was trained with, or "wan21").
    ``fps`` None: the camera path's frame rate. ``resize``: how source frames are fitted to the
    render size ("stretch" or "crop", as in the render stage)."""

    seed: int = 0
    use_tae: bool = False
    compile_dit: bool = False
    device: str = "auto"
    dtype: str = "auto"
    decode_mode: str = "inspatio"
    resize: str = "stretch"
    fps: float | None = None
    encode: EncodeOptions = field(default_factory=EncodeOptions)

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def torch_dtype(self, device: torch.device) -> torch.dtype:
        if self.dtype == "auto":
            return torch.bfloat16 if device.type == "cuda" else torch.float32
        names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
        if self.dtype not in names:
            raise ValueError(f"dtype must be 'auto' or one of {sorted(names)}, got {self.dtype!r}")
        return names[self.dtype]


@dataclass(frozen=True)
class FramePlan:
    """How N requested frames map onto whole DiT blocks."""

    requested: int  # frames of the camera path, all written
    latent_frames: int  # multiple of BLOCK_FRAMES
    generated: int  # 4 * latent_frames - 3 >= requested

    @property
    def padded(self) -> int:
        return self.generated - self.requested

    @property
    def blocks(self) -> int:
        return self.latent_frames // BLOCK_FRAMES

    def describe(self) -> str:
        text = (f"{self.requested} frames requested -> {self.latent_frames} latent frames in {self.blocks} block(s) of "
                f"{BLOCK_FRAMES} = {self.generated} frames generated")
        if self.padded:
            text += (f"; render, mask and time map padded with {self.padded} copies of their last frame to fill the "
                     f"last block, those {self.padded} frames are not written")
        return text


def plan_frames(requested: int) -> FramePlan:
    """Smallest whole-block generation covering ``requested`` frames (4·T_lat − 3 ≥ requested)."""
    if requested < 1:
        raise ValueError(f"cannot generate {requested} frames")
    needed = 1 + -(-(requested - 1) // TEMPORAL_STRIDE)
    latent = BLOCK_FRAMES * -(-needed // BLOCK_FRAMES)
    return FramePlan(requested, latent, TEMPORAL_STRIDE * latent - (TEMPORAL_STRIDE - 1))


def frame_blocks(n: int) -> np.ndarray:
    """[n] the DiT block (0, 1, ...) that generates each of n output frames: frame 0 is latent frame 0,
    frames 4k-3 .. 4k are latent frame k, and a block holds ``BLOCK_FRAMES`` latent frames."""
    frames = np.arange(n)
    latent = (frames + TEMPORAL_STRIDE - 1) // TEMPORAL_STRIDE
    return latent // BLOCK_FRAMES


def padded_indices(n: int, total: int) -> np.ndarray:
    """Indices 0..n-1 followed by n-1 repeated up to ``total`` entries."""
    return np.minimum(np.arange(total), n - 1)


@dataclass(frozen=True)
class GenerateResult:
    path: Path
    plan: FramePlan
    frames_written: int
    source_frames: int  # frames in the source video
    source_frames_used: int  # distinct source frames the time map shows
    seconds: float
    first_frame_seconds: float  # from the start of the DiT loop to the first frames handed to the writer
    notes: tuple[str, ...]


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    return path


def read_render_mask(render_dir: Path, size: tuple[int, int]) -> np.ndarray:
    """Coverage mask bool [N, H, W] of a render folder: ``mask.npz`` (lossless), else ``mask.mp4`` (> 50 % grey)."""
    folder = RenderFolder(render_dir)
    npz = folder.mask_npz
    if npz.is_file():
        try:
            return folder.load_mask()
        except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
            raise VideoError(f"{npz}: unreadable mask ({exc!r}); re-run the render stage") from None
    mp4 = _require(folder.mask_video, "mask (mask.npz or mask.mp4)")
    with VideoReader(mp4, size=size, min_frames=1) as r:
        return np.stack([f[..., 0] > 127 for f in r])


def _video_tensor(reader: VideoReader, indices: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """[1, 3, T, H, W] in [-1, 1] of the reader's frames at ``indices`` (one frame converted at a time)."""
    w, h = reader.frame_size
    out = torch.empty(1, 3, len(indices), h, w, dtype=dtype)
    for t, i in enumerate(indices):
        out[0, :, t] = torch.from_numpy(reader[int(i)]).permute(2, 0, 1).to(dtype) / 127.5 - 1
    return out


def _uint8_frames(pixels: torch.Tensor) -> torch.Tensor:
    """[3, T, H, W] in [-1, 1] → uint8 [T, H, W, 3], rounded, on ``pixels``' device."""
    return ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0)


def _to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """[3, T, H, W] in [-1, 1] → uint8 [T, H, W, 3] numpy, rounded (whole-video writers, e.g. SpaceTimePilot on main)."""
    return _uint8_frames(pixels).cpu().numpy()


class FrameWriterThread:
    """Writes decoded blocks to a ``VideoWriter`` on a background thread, so H.264 encoding never holds
    up the next block. Use as a context manager around the block loop.

    ``put(pixels, count)``: pixels ``[3, t, H, W]`` in [-1, 1] on any device; the first ``count`` frames
    are rounded to uint8 on that device and copied to the host (on CUDA asynchronously, into pinned
    memory, so the caller never waits for the GPU); the thread waits for the copy and writes them. At
    most ``depth`` blocks wait in the queue. An error of the thread is raised by the next ``put`` or on exit.
    """

    def __init__(self, writer: VideoWriter, depth: int = 2):
        self.writer = writer
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="video-writer", daemon=True)

    def __enter__(self) -> "FrameWriterThread":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.queue.put(None)
        self.thread.join()
        if exc[0] is None:
            self._raise()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            host, copied = item
            if self.error is not None:
                continue  # keep draining so put() never blocks
            try:
                if copied is not None:
                    copied.synchronize()
                for frame in host.numpy():
                    self.writer.write(frame)
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                self.error = exc

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def put(self, pixels: torch.Tensor, count: int) -> None:
        self._raise()
        frames = _uint8_frames(pixels[:, :count])
        copied = None
        if frames.is_cuda:
            host = torch.empty(frames.shape, dtype=torch.uint8, pin_memory=True)
            host.copy_(frames, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record()
        else:
            host = frames.contiguous()
        self.queue.put((host, copied))


@dataclass(frozen=True)
class _Inputs:
    cameras: CameraPath
    mask: np.ndarray  # bool [>= N, H, W]
    plan: FramePlan
    notes: tuple[str, ...]


def _check_inputs(source: VideoReader, render: VideoReader, render_dir: Path) -> _Inputs:
    """Validate the render folder against the source video; plan the frames."""
    cameras_path = _require(RenderFolder(render_dir).cameras_json, "camera path (cameras.json)")
    cameras = CameraPath.load(cameras_path)
    width, height = render.frame_size
    if width % SPATIAL_MULTIPLE or height % SPATIAL_MULTIPLE:
        raise VideoError(f"{render.path}: {width}x{height} is not a multiple of {SPATIAL_MULTIPLE} on both sides; "
                         "render at a size such as 832x480")
    n = len(cameras)
    notes = []
    if len(render) < n:
        raise VideoError(f"{render.path}: {len(render)} frames but {cameras_path} has {n}; re-run the render stage")
    if len(render) > n:
        notes.append(f"render.mp4 has {len(render)} frames, cameras.json {n}: using the first {n}")
    idx = cameras.source_index
    if idx.min() < 0 or idx.max() >= len(source):
        raise VideoError(f"{cameras_path}: the time map shows source frames {idx.min()}..{idx.max()} but {source.path} "
                         f"has {len(source)} frames; re-run the render stage for this video")
    mask = read_render_mask(render_dir, (width, height))
    if len(mask) < n:
        raise VideoError(f"{render_dir}: the mask has {len(mask)} frames, {cameras_path} {n}; re-run the render stage")
    plan = plan_frames(n)
    notes.append(plan.describe())
    notes.append(f"source: {len(source)} frames in {source.path.name}; the time map shows {len(np.unique(idx))} distinct "
                 f"frame(s), indices {idx.min()}..{idx.max()}")
    return _Inputs(cameras, mask, plan, tuple(notes))


def encode_prompts(prompts: list[str], wan_dir: Path, text_len: int, device: torch.device) -> torch.Tensor:
    """[len(prompts), text_len, text_dim] float32 prompt embeddings; the encoder is released before returning."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    encoder = TextEncoder.from_dir(wan_dir, device, dtype, text_len=text_len)
    try:
        return encoder.encode(prompts).float()
    finally:
        encoder.release()


class _LatentStream:
    """Latents of ``reader``'s frames at ``indices``, encoded on demand by a codec's stream encoder:
    frames are read, converted and pushed one block's worth at a time, so memory does not grow with
    the video's length."""

    def __init__(self, codec: WanVAE | TAEHV, reader: VideoReader, indices: np.ndarray, dtype: torch.dtype):
        self.encoder = codec.stream_encoder()
        self.reader, self.indices, self.dtype = reader, indices, dtype
        self.read = 0
        self.ready: torch.Tensor | None = None  # encoded latents not yet taken

    def take(self, n: int) -> torch.Tensor:
        """The next ``n`` latent frames ``[1, n, 16, h, w]`` (float32, on the codec's device)."""
        per_push = BLOCK_FRAMES * TEMPORAL_STRIDE
        while self.ready is None or self.ready.shape[1] < n:
            if self.read < len(self.indices):
                chunk = self.indices[self.read:self.read + per_push]
                self.read += len(chunk)
                latents = self.encoder.push(_video_tensor(self.reader, chunk, self.dtype))
            else:
                latents = self.encoder.flush()
                if not latents.shape[1]:
                    raise RuntimeError(f"{self.reader.path}: {len(self.indices)} frames encode to fewer latents than asked")
            self.ready = latents.float() if self.ready is None else torch.cat([self.ready, latents.float()], dim=1)
        out, self.ready = self.ready[:, :n], self.ready[:, n:]
        return out


def block_mask(mask: np.ndarray, indices: np.ndarray, block: int, latent_hw: tuple[int, int]) -> torch.Tensor:
    """Packed mask latents ``[1, BLOCK_FRAMES, 4, h, w]`` of one block: the same latent frames as
    ``pack_mask(mask[indices])`` over the whole video (latent k >= 1 holds frames 4k-3 .. 4k), computed
    from that block's frames only."""
    if block == 0:
        return pack_mask(mask[indices[:TEMPORAL_STRIDE * (BLOCK_FRAMES - 1) + 1]].astype(np.float32), latent_hw)
    first = TEMPORAL_STRIDE * BLOCK_FRAMES * block - TEMPORAL_STRIDE  # the frame before the block, packed and dropped
    frames = indices[first:first + 1 + TEMPORAL_STRIDE * BLOCK_FRAMES]
    return pack_mask(mask[frames].astype(np.float32), latent_hw)[:, 1:]


def seeded_noise(seed: int, block_shape: tuple[int, ...], blocks: int) -> tuple[Iterator[torch.Tensor], torch.Generator]:
    """Initial noise per block and the re-noise generator, drawn on the CPU from ``seed``.

    The streams equal one generator drawing the whole initial noise ``[B, blocks * F, C, h, w]`` first
    and then every re-noise tensor, but no more than one block of noise is held at a time.
    """
    renoise = torch.Generator().manual_seed(seed)
    for _ in range(blocks):  # advance past the initial noise, one block at a time
        torch.randn(block_shape, generator=renoise)
    noise = torch.Generator().manual_seed(seed)
    return (torch.randn(block_shape, generator=noise) for _ in range(blocks)), renoise


def generate_to_file(
    source_video: str | Path,
    render_dir: str | Path,
    caption: str,
    weights: GenerateWeights,
    out_path: str | Path,
    options: GenerateOptions = GenerateOptions(),
) -> GenerateResult:
    """Generate the video for one render folder and write it (H.264, atomically) to ``out_path``.

    The source and the render are encoded block by block just before the DiT needs them (the source
    once, through one causal encoder run), so host and device memory do not grow with video length.
    """
    t_start = time.perf_counter()
    render_dir, out_path = Path(render_dir), Path(out_path)
    device = options.torch_device()
    dtype = options.torch_dtype(device)
    if options.use_tae and weights.tae is None:
        raise FileNotFoundError("use_tae needs the TAEHV checkpoint taew2_1.pth (see docs/models.md, 'Weights')")
    dit_config = DiTConfig.from_json(weights.config_path)
    with VideoReader(_require(RenderFolder(render_dir).render_video, "render video"), min_frames=1) as render, \
            VideoReader(source_video, size=render.frame_size, resize=options.resize, min_frames=1) as source:
        inputs = _check_inputs(source, render, render_dir)
        plan, n = inputs.plan, inputs.plan.requested
        for note in inputs.notes:
            log.info(note)
        frames = padded_indices(n, plan.generated)
        text_embeds = encode_prompts([caption], weights.wan_dir, dit_config.text_len, device)
        codec = (TAEHV.from_checkpoint(weights.tae, device, dtype) if options.use_tae
                 else WanVAE.from_checkpoint(weights.wan_dir / VAE_FILE, options.decode_mode, device, dtype))
        ref = _LatentStream(codec, source, inputs.cameras.source_index[frames], dtype)
        rendered = _LatentStream(codec, render, frames, dtype)
        width, height = render.frame_size
        latent_hw = (height // SPATIAL_STRIDE, width // SPATIAL_STRIDE)
        noise, renoise = seeded_noise(options.seed, (1, BLOCK_FRAMES, dit_config.out_dim, *latent_hw), plan.blocks)
        blocks = (BlockInputs(ref.take(BLOCK_FRAMES), rendered.take(BLOCK_FRAMES),
                              block_mask(inputs.mask, frames, b, latent_hw), next(noise))
                  for b in range(plan.blocks))
        decoder = codec.stream_decoder()
        dit = CausalDiT.from_checkpoint(weights.dit, dit_config, device, dtype)
        if options.compile_dit:
            dit.compile_blocks()

        written = 0
        first_frame = 0.0
        t_loop = time.perf_counter()
        with VideoWriter(out_path, options.fps or inputs.cameras.fps, width, height, options.encode) as writer, \
                FrameWriterThread(writer) as sink, torch.no_grad():
            for block, x0 in enumerate(stream_blocks(dit, text_embeds, blocks, generator_renoise(renoise))):
                pixels = decoder.push(x0)[0]
                count = min(pixels.shape[1], n - written)
                sink.put(pixels, count)
                written += count
                first_frame = first_frame or time.perf_counter() - t_loop
                log.info("block %d/%d done, %d/%d frames decoded", block + 1, plan.blocks, written, n)
            if written != n:
                raise RuntimeError(f"{out_path}: {written} frames generated, expected {n}")
        source_frames = len(source)
    used = len(np.unique(inputs.cameras.source_index))
    return GenerateResult(out_path, plan, written, source_frames, used, time.perf_counter() - t_start, first_frame, inputs.notes)
