"""Reading and writing videos with PyAV (FFmpeg and libx264 bundled; no system ffmpeg needed).

Frames are ``uint8 [H, W, 3]`` RGB. Reading keeps the source frame rate and gives frame-accurate
random access: increasing indices decode forward, anything else seeks to the keyframe before the
target and decodes up to it. Frames are identified by presentation timestamp, so B-frames and
variable frame rates are handled (a variable-rate video is indexed as if evenly spaced at its average
rate; ``VideoInfo.variable_rate`` says so). Frames come out upright: the container's display rotation
(phone portrait video) is applied before resizing, and ``VideoInfo`` gives the size as shown.

Resize policies (``size=(W, H)``):
  ``stretch``  scale the whole frame to W x H, ignoring aspect (what the reference system does).
  ``crop``     centre-crop to the W:H aspect first, then scale.
Scaling uses swscale ``AREA`` when shrinking and ``BICUBIC`` when enlarging.

Writing: H.264 (libx264). RGB is converted to YUV with swscale ``AREA`` filtering, which keeps
fine texture far better than the default bicubic path. ``yuv420p`` (the default, plays everywhere)
needs even width and height; odd sizes raise ``VideoError`` (use ``pix_fmt="yuv444p"``, which
accepts any size). Renderers that hold float frames convert them once with ``yuv_planes`` (torch,
same BT.601 limited-range convention) and write them with ``VideoWriter.write_planes``, skipping
the 8-bit RGB step. Every writer writes to a temporary name and renames on success.

decord, when installed, can be chosen as a faster sequential reader (``backend="decord"``); PyAV is
the default and the tested path.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Literal, Sequence

import av
import numpy as np
import torch

from geometry.unproject import crop_box
from pipeline.fsutil import atomic_write

Resize = Literal["stretch", "crop"]
_CACHE_FRAMES = 8
# Decoding forward is cheaper than seeking when the target is at most this many frames ahead.
_FORWARD_GAP = 32
# Frame intervals may differ by this fraction of their median before a video counts as variable-rate
# (timestamps rounded to the time base differ by a tick).
VFR_TOLERANCE = 0.1
# BT.601 RGB -> (Y, Cb, Cr) rows for RGB in [0, 1], and limited-range scale and offset, as swscale
# converts untagged video (and decoders convert back).
_YUV_ROWS = ((0.299, 0.587, 0.114), (-0.299 / 1.772, -0.587 / 1.772, 0.5), (0.5, -0.587 / 1.402, -0.114 / 1.402))
_YUV_RANGE = ((219.0, 16.0), (224.0, 128.0), (224.0, 128.0))
# Grey level -> limited-range luma, as swscale converts an RGB grey.
_GREY_TO_LUMA = np.round(_YUV_RANGE[0][1] + np.arange(256) * (_YUV_RANGE[0][0] / 255)).astype(np.uint8)


class VideoError(ValueError):
    """A video file is missing, unreadable, too short or cannot be written; the message names it."""


@dataclass(frozen=True)
class VideoInfo:
    """Size of the frames as shown (after ``rotation``), frame rate and count. ``rotation``: degrees
    counter-clockwise (0, 90, 180 or 270) the stored picture is turned by to show it upright (the
    container's display matrix, as phones record portrait video); readers apply it. Frames are read by
    index: a variable-rate video is treated as if its frames were evenly spaced at ``fps``."""

    width: int
    height: int
    fps: float
    num_frames: int
    rotation: int = 0
    variable_rate: bool = False  # frame intervals differ by more than VFR_TOLERANCE; ``fps`` is then their average


@dataclass(frozen=True)
class EncodeOptions:
    """H.264 settings. ``crf`` 0-51 (lower = better, 0 = lossless in 8-bit), ``preset`` from
    ``ultrafast`` to ``veryslow``, ``pix_fmt`` ``yuv420p`` (even sizes only) or ``yuv444p``."""

    crf: int = 10
    preset: str = "veryfast"
    pix_fmt: str = "yuv420p"
    threads: int = 0


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _open(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise VideoError(f"{path}: video file does not exist")
    if not path.is_file():
        raise VideoError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: video file is empty (0 bytes); re-export or re-copy it")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise VideoError(f"{path}: not a readable video (truncated or not a video file): {e}") from e
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: contains no video stream")
    return container


@dataclass(frozen=True)
class _Index:
    """Demuxed (not decoded) stream layout: presentation timestamps in display order."""

    pts: np.ndarray  # [N] int64, sorted
    fps: float
    width: int  # as shown, after the rotation
    height: int
    seekable: bool
    rotation: int = 0  # degrees counter-clockwise, 0/90/180/270 (VideoInfo.rotation)
    time_base: Fraction = Fraction(1)  # seconds per pts tick

    @property
    def variable_rate(self) -> bool:
        """Whether the frame intervals (pts steps) spread by more than ``VFR_TOLERANCE`` of their median."""
        steps = np.diff(self.pts)
        return len(steps) > 1 and float(steps.max() - steps.min()) > VFR_TOLERANCE * float(np.median(steps))


def _rotation(path: Path, container: av.container.InputContainer) -> int:
    """The display rotation of the first frame (degrees counter-clockwise, in 0/90/180/270)."""
    try:
        container.seek(0, stream=container.streams.video[0])
        first = next(container.decode(video=0), None)
    except av.error.FFmpegError:
        return 0  # an undecodable stream is reported by the frame count
    degrees = 0 if first is None else round(first.rotation)
    if degrees % 90:
        raise VideoError(f"{path}: display rotation of {degrees} degrees is not a multiple of 90; "
                         "re-export the video upright")
    return degrees % 360


def _index(path: Path) -> _Index:
    container = _open(path)
    try:
        stream = container.streams.video[0]
        pts: list[int] = []
        try:
            for packet in container.demux(stream):
                if packet.size and packet.pts is not None:
                    pts.append(packet.pts)
        except av.error.FFmpegError as e:
            raise VideoError(f"{path}: video data is corrupt or truncated: {e}") from e
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        width, height = stream.codec_context.width, stream.codec_context.height
        rotation = _rotation(path, container) if pts else 0
        time_base = stream.time_base or Fraction(1)
    finally:
        container.close()
    if not rate or width <= 0 or height <= 0:
        raise VideoError(f"{path}: video stream has no frame rate or size")
    if rotation % 180:
        width, height = height, width
    arr = np.unique(np.asarray(pts, dtype=np.int64))
    return _Index(pts=arr, fps=float(rate), width=width, height=height, seekable=len(arr) == len(pts),
                  rotation=rotation, time_base=Fraction(time_base))


def frame_times(path: str | os.PathLike) -> np.ndarray:
    """[N] float64 presentation time in seconds of each frame, in display order (the source's real
    timing; frame i of a reader is at ``frame_times(path)[i]``)."""
    idx = _index(Path(path))
    return idx.pts.astype(np.float64) * float(idx.time_base)


def _count_decodable(path: Path) -> int:
    container = _open(path)
    try:
        n = 0
        try:
            for _ in container.decode(video=0):
                n += 1
        except av.error.FFmpegError:
            pass
        return n
    finally:
        container.close()


def probe_video(path: str | os.PathLike, min_frames: int = 2) -> VideoInfo:
    """Size, frame rate and frame count (decodable frames) of a video.

    Raises ``VideoError`` naming the file for a missing, empty, non-video, truncated or corrupt
    file, or one with fewer than ``min_frames`` frames (a 1-frame file is a still image).
    """
    path = Path(path)
    return _info(path, _index(path), min_frames, verify=True)


def _info(path: Path, idx: _Index, min_frames: int, verify: bool) -> VideoInfo:
    """VideoInfo from the demuxed index; ``verify`` decodes every frame to count the decodable ones."""
    n = _count_decodable(path) if verify else len(idx.pts)
    if n < len(idx.pts):
        raise VideoError(f"{path}: only {n} of {len(idx.pts)} frames decode; the file is truncated or corrupt")
    if n < min_frames:
        raise VideoError(f"{path}: has {n} frame(s); at least {min_frames} are needed")
    return VideoInfo(width=idx.width, height=idx.height, fps=idx.fps, num_frames=n, rotation=idx.rotation,
                     variable_rate=idx.variable_rate)


def _upright(frame: av.VideoFrame, rotation: int) -> av.VideoFrame:
    """``frame`` turned ``rotation`` degrees counter-clockwise (a multiple of 90)."""
    if not rotation:
        return frame
    rgb = np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24"), rotation // 90))
    return av.VideoFrame.from_ndarray(rgb, format="rgb24")


def _resize(frame: av.VideoFrame, size: tuple[int, int] | None, resize: Resize, rotation: int = 0) -> np.ndarray:
    """The frame upright (``rotation``, degrees counter-clockwise), then resized to ``size`` (W, H) by ``resize``."""
    frame = _upright(frame, rotation)
    if size is None or (frame.width, frame.height) == size:
        return frame.to_ndarray(format="rgb24")
    w, h = size
    shrink = w * h < frame.width * frame.height
    interp = "AREA" if shrink else "BICUBIC"
    if resize == "stretch":
        return frame.reformat(width=w, height=h, format="rgb24", interpolation=interp).to_ndarray()
    rgb = frame.to_ndarray(format="rgb24")
    y0, x0, ch, cw = crop_box(rgb.shape[:2], (h, w))
    crop = np.ascontiguousarray(rgb[y0 : y0 + ch, x0 : x0 + cw])
    return av.VideoFrame.from_ndarray(crop, format="rgb24").reformat(width=w, height=h, interpolation=interp).to_ndarray()


class VideoReader:
    """Frame-accurate reader: ``len(r)``, ``r[i]``, iteration, ``r.get_batch(indices)``.

    ``size=(W, H)`` resizes every frame with the ``resize`` policy (module docstring). Validation
    happens on construction (see ``probe_video``); ``verify=False`` skips decoding every frame
    there (the count comes from the demuxed packets, and a frame that fails to decode raises
    ``VideoError`` when it is read), which halves the decoding of a reader used once through.
    The last ``cache_frames`` frames read are cached (after a seek, also the frames decoded on the
    way to the target). Use as a context manager or call ``close()``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        size: tuple[int, int] | None = None,
        resize: Resize = "stretch",
        min_frames: int = 2,
        backend: Literal["pyav", "decord"] = "pyav",
        verify: bool = True,
        cache_frames: int = _CACHE_FRAMES,
    ) -> None:
        if resize not in ("stretch", "crop"):
            raise ValueError(f"resize must be 'stretch' or 'crop', got {resize!r}")
        if size is not None and (size[0] <= 0 or size[1] <= 0):
            raise ValueError(f"size must be positive (W, H), got {size}")
        self.path = Path(path)
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.resize = resize
        self.cache_frames = max(int(cache_frames), 1)
        self._index = _index(self.path)
        self.info = _info(self.path, self._index, min_frames, verify)
        self._pts = self._index.pts
        self._container: av.container.InputContainer | None = None
        self._frames: Iterator[av.VideoFrame] | None = None
        self._next = 0  # index the open decoder yields next
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._decord = None
        if backend == "decord":  # decord ignores the display rotation (dmlc/decord#24): rotated videos decode at the stored size
            direct = resize == "stretch" and not self.info.rotation
            self._decord = _open_decord(self.path, self.size if direct else None)
        elif backend != "pyav":
            raise ValueError(f"backend must be 'pyav' or 'decord', got {backend!r}")

    @property
    def fps(self) -> float:
        return self.info.fps

    @property
    def frame_size(self) -> tuple[int, int]:
        """(W, H) of the frames this reader returns."""
        return self.size or (self.info.width, self.info.height)

    def __len__(self) -> int:
        return self.info.num_frames

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container, self._frames = None, None

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, i: int) -> np.ndarray:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"{self.path}: frame {i} out of range (video has {n} frames)")
        i %= n
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        frame = self._decode_decord(i) if self._decord is not None else self._decode(i)
        self._remember(i, frame)
        return frame

    def _remember(self, i: int, frame: np.ndarray) -> None:
        self._cache[i] = frame
        self._cache.move_to_end(i)
        while len(self._cache) > self.cache_frames:
            self._cache.popitem(last=False)

    def get_batch(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 [n, H, W, 3] for the given indices (any order, repeats allowed)."""
        if len(indices) == 0:
            w, h = self.frame_size
            return np.zeros((0, h, w, 3), np.uint8)
        return np.stack([self[int(i)] for i in indices])

    def _decode_decord(self, i: int) -> np.ndarray:
        rgb = self._decord[i].asnumpy()
        if not self.info.rotation and (self.size is None or self.resize == "stretch"):
            return rgb
        return _resize(av.VideoFrame.from_ndarray(rgb, format="rgb24"), self.size, self.resize, self.info.rotation)

    def _restart(self, i: int) -> None:
        if self._container is None:
            self._container = _open(self.path)
        stream = self._container.streams.video[0]
        if i > 0 and self._index.seekable:
            self._container.seek(int(self._pts[i]), backward=True, any_frame=False, stream=stream)
        else:
            self._container.seek(0, stream=stream)
        self._frames = self._container.decode(stream)
        self._next = -1  # unknown until a frame's pts is seen

    def _decode(self, i: int) -> np.ndarray:
        # After a seek, the frames decoded on the way that fit the cache are kept as well, so reading
        # backwards (reverse or ping-pong time maps) decodes each keyframe interval once per
        # ``cache_frames`` frames instead of once per frame.
        keep_from = i + 1
        if self._frames is None or self._next < 0 or not (self._next <= i <= self._next + _FORWARD_GAP):
            self._restart(i)
            keep_from = i - self.cache_frames + 1
        target = int(self._pts[i])
        while True:
            try:
                frame = next(self._frames)
            except (StopIteration, av.error.FFmpegError) as e:
                self.close()
                raise VideoError(f"{self.path}: could not decode frame {i}: {e or 'end of stream'}") from e
            pos = int(np.searchsorted(self._pts, frame.pts)) if frame.pts is not None else self._next
            self._next = pos + 1
            if pos == i:
                return _resize(frame, self.size, self.resize, self.info.rotation)
            if keep_from <= pos < i and pos not in self._cache:
                self._remember(pos, _resize(frame, self.size, self.resize, self.info.rotation))
            if frame.pts is not None and frame.pts > target:
                self.close()
                raise VideoError(f"{self.path}: frame {i} (pts {target}) was not found while decoding")


def _open_decord(path: Path, size: tuple[int, int] | None):
    try:
        import decord
    except ImportError as e:
        raise VideoError(f"{path}: backend 'decord' requested but decord is not installed (pip install decord==0.6.0)") from e
    kwargs = {} if size is None else {"width": size[0], "height": size[1]}
    try:
        return decord.VideoReader(str(path), **kwargs)
    except decord.DECORDError as e:
        raise VideoError(f"{path}: decord cannot read it: {e}") from e


def read_video(path: str | os.PathLike, size: tuple[int, int] | None = None, resize: Resize = "stretch") -> np.ndarray:
    """All frames, uint8 [N, H, W, 3]."""
    with VideoReader(path, size=size, resize=resize, min_frames=1) as r:
        return r.get_batch(range(len(r)))


def planes_shape(pix_fmt: str, height: int, width: int) -> tuple[int, ...]:
    """Shape of one planar frame as PyAV takes it: yuv420p [H * 3 / 2, W] (Y, then U and V of
    [H/2, W/2] each, packed as rows of W); yuv444p [3, H, W]."""
    if pix_fmt == "yuv420p":
        return (height * 3 // 2, width)
    if pix_fmt == "yuv444p":
        return (3, height, width)
    raise VideoError(f"planar frames are yuv420p or yuv444p, not {pix_fmt!r}")


def yuv_planes(rgb: torch.Tensor, pix_fmt: str = "yuv420p") -> torch.Tensor:
    """float RGB [B, 3, H, W] in [0, 1] -> uint8 planes [B, *planes_shape(pix_fmt, H, W)] for
    ``VideoWriter.write_planes``: limited-range BT.601, rounded once from float (no intermediate
    8-bit RGB); yuv420p chroma is the mean over each 2x2 block (swscale's AREA conversion)."""
    B, _, H, W = rgb.shape
    if pix_fmt == "yuv420p" and (H % 2 or W % 2):
        raise VideoError(f"yuv420p needs even width and height, got {W}x{H}")
    out = torch.empty((B, *planes_shape(pix_fmt, H, W)), dtype=torch.uint8, device=rgb.device)
    flat = out.view(B, -1)
    if pix_fmt == "yuv420p":  # sums of 2x2 blocks (avg_pool2d is several times slower on CPU)
        rows = rgb[:, :, 0::2] + rgb[:, :, 1::2]
        chroma, chroma_weight = rows[..., 0::2] + rows[..., 1::2], 0.25
    else:
        chroma, chroma_weight = rgb, 1.0
    start = 0
    for (cr, cg, cb), (scale, offset), src, k in zip(_YUV_ROWS, _YUV_RANGE, (rgb, chroma, chroma), (1.0, chroma_weight, chroma_weight)):
        r, g, b = src.unbind(1)
        k *= scale
        plane = torch.mul(r, cr * k).add_(g, alpha=cg * k).add_(b, alpha=cb * k).add_(offset + 0.5).clamp_(0, 255)
        n = plane[0].numel()
        flat[:, start : start + n].view_as(plane).copy_(plane)  # truncation of x + 0.5: rounding
        start += n
    return out


class VideoWriter:
    """H.264 writer: ``with VideoWriter(path, fps, w, h) as w: w.write(frame)``.

    Frames are uint8 [H, W, 3] RGB or [H, W] grey. Grey frames skip the RGB conversion: their luma
    is written directly (limited range, 16 + 219 v / 255, neutral chroma), so 0 and 255 decode back
    exactly at crf 0. The file appears at ``path`` only when the block exits without error.
    """

    def __init__(self, path: str | os.PathLike, fps: float, width: int, height: int, options: EncodeOptions = EncodeOptions()) -> None:
        self.path = Path(path)
        self.width, self.height, self.fps, self.options = int(width), int(height), fps, options
        if width <= 0 or height <= 0:
            raise VideoError(f"{self.path}: cannot write a {width}x{height} video")
        if options.pix_fmt == "yuv420p" and (width % 2 or height % 2):
            raise VideoError(
                f"{self.path}: {width}x{height} has an odd side; yuv420p H.264 needs even width and height "
                "(choose an even size or EncodeOptions(pix_fmt='yuv444p'))"
            )
        if not fps or fps <= 0:
            raise VideoError(f"{self.path}: fps must be positive, got {fps}")
        self._atomic = None
        self._container = None
        self._stream = None
        self.frames_written = 0

    def __enter__(self) -> "VideoWriter":
        self._atomic = atomic_write(self.path)
        tmp = self._atomic.__enter__()
        try:
            self._container = av.open(str(tmp), mode="w", format="mp4")
            rate = Fraction(self.fps).limit_denominator(1001)
            self._stream = self._container.add_stream("libx264", rate=rate)
            self._stream.width, self._stream.height = self.width, self.height
            self._stream.pix_fmt = self.options.pix_fmt
            self._stream.thread_count = self.options.threads
            self._stream.options = {"crf": str(self.options.crf), "preset": self.options.preset}
        except Exception as e:
            self._abort(e)
            raise
        return self

    def write(self, frame: np.ndarray) -> None:
        if frame.shape not in ((self.height, self.width, 3), (self.height, self.width)) or frame.dtype != np.uint8:
            raise VideoError(
                f"{self.path}: frame must be uint8 [{self.height},{self.width},3] or [{self.height},{self.width}], "
                f"got {frame.dtype} {list(frame.shape)}"
            )
        if frame.ndim == 2 and self.options.pix_fmt in ("yuv420p", "yuv444p"):
            vf = self._grey_frame(frame)
        else:
            if frame.ndim == 2:
                frame = np.repeat(frame[:, :, None], 3, axis=2)
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf = vf.reformat(format=self.options.pix_fmt, interpolation="AREA")
        self._encode(vf)

    def write_planes(self, planes: np.ndarray) -> None:
        """Write one frame already in the writer's pixel format, uint8 in the layout of
        ``planes_shape`` (e.g. from ``yuv_planes``)."""
        expected = planes_shape(self.options.pix_fmt, self.height, self.width)
        if planes.shape != expected or planes.dtype != np.uint8:
            raise VideoError(f"{self.path}: {self.options.pix_fmt} planes must be uint8 {list(expected)}, got {planes.dtype} {list(planes.shape)}")
        self._encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(planes), format=self.options.pix_fmt))

    def _encode(self, vf: av.VideoFrame) -> None:
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self.frames_written += 1

    def _grey_frame(self, grey: np.ndarray) -> av.VideoFrame:
        h, w = grey.shape
        planes = np.full(planes_shape(self.options.pix_fmt, h, w), 128, np.uint8)
        planes.reshape(-1)[: h * w] = _GREY_TO_LUMA[grey].reshape(-1)
        return av.VideoFrame.from_ndarray(planes, format=self.options.pix_fmt)

    def _abort(self, exc: BaseException) -> None:
        if self._container is not None:
            self._container.close()
        self._atomic.__exit__(type(exc), exc, exc.__traceback__)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._abort(exc)
            return
        try:
            if self.frames_written == 0:
                raise VideoError(f"{self.path}: no frames were written")
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
        except BaseException as e:
            self._abort(e)
            raise
        self._atomic.__exit__(None, None, None)


def write_video(path: str | os.PathLike, frames: np.ndarray | Sequence[np.ndarray], fps: float, options: EncodeOptions = EncodeOptions()) -> None:
    """Write uint8 frames [N, H, W, 3] as H.264 (atomically)."""
    if len(frames) == 0:
        raise VideoError(f"{path}: no frames to write")
    h, w = frames[0].shape[:2]
    with VideoWriter(path, fps, w, h, options) as writer:
        for f in frames:
            writer.write(f)
