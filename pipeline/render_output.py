"""Render stage: source video + geometry cache + camera path -> a render folder
(``pipeline.render_folder.RenderFolder``: render.mp4, mask.mp4, mask.npz, cameras.json, optional
ply/), each file written atomically.
Output frame i shows source frame ``camera_path.source_index[i]``; fps = ``camera_path.fps``;
size = camera path size. Frames stream through in chunks, so memory does not grow with length.
"""

from __future__ import annotations

import ctypes
import functools
import threading
import time
import zipfile
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from geometry.cache import GeometryCache
from geometry.multiview import render_fused
from geometry.render import RenderSettings, SourceViews, prepare_sources, render_views
from geometry.unproject import unproject
from pipeline.fsutil import atomic_write
from pipeline.render_folder import RenderFolder, load_mask  # noqa: F401  (load_mask: kept importable from here)
from pipeline.video_io import EncodeOptions, VideoReader, VideoWriter, yuv_planes
from trajectories.camera_path import CameraPath


# Decoded source frames kept by the reader (~1.2 MB each at 832x480): time maps that run backwards
# decode a keyframe interval once per this many frames.
_DECODED_FRAMES = 32


@dataclass(frozen=True)
class RenderOptions:
    """chunk_frames: output frames rendered per batch (memory vs. speed); device: torch device;
    colour_size: (W, H) the whole source frame is read at (scaled to it, aspect ignored; default = output
    size); colour is sampled there, so its pixel density should match the output camera's;
    encode / mask_encode: H.264 settings of render.mp4 / mask.mp4; export_ply: write ply/;
    workers: chunks rendered concurrently (on CPU each worker runs torch single-threaded, which
    beats torch's own threading: most ops are too small to split and idle threads spin);
    source_cache: prepared source frames kept by source index (time maps repeat frames);
    fuse_views: the source frames are views of one moment (an image scene): every output frame is
    rendered from all of them, fused by a hard z-test (``geometry.multiview``), whatever its source index."""

    chunk_frames: int = 1
    device: str = "cpu"
    colour_size: tuple[int, int] | None = None
    settings: RenderSettings = field(default_factory=RenderSettings)
    encode: EncodeOptions = field(default_factory=lambda: EncodeOptions(crf=10, preset="ultrafast"))
    mask_encode: EncodeOptions = field(default_factory=lambda: EncodeOptions(crf=0, preset="ultrafast"))
    export_ply: bool = False
    workers: int = 2
    source_cache: int = 4
    fuse_views: bool = False


@dataclass(frozen=True)
class RenderOutputs:
    folder: RenderFolder
    ply_dir: Path | None  # folder.ply_dir when PLYs were exported
    num_frames: int
    coverage: float  # mean fraction of covered pixels
    seconds: float
    view_coverage: np.ndarray | None = None  # fuse_views: [N, V] target pixels each view covers on its own


class _MaskNpz:
    """Streams packed mask frames into an .npz (zip of .npy) without holding them in memory."""

    def __init__(self, path: Path, n: int, h: int, w: int) -> None:
        self._zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED)
        with self._zip.open("shape.npy", "w") as f:
            np.save(f, np.array([n, h, w], dtype=np.int64))
        self._f = self._zip.open("packed.npy", "w", force_zip64=True)
        np.lib.format.write_array_header_1_0(self._f, {"descr": "|u1", "fortran_order": False, "shape": (n, h, (w + 7) // 8)})

    def write(self, mask: np.ndarray) -> None:
        self._f.write(np.packbits(mask, axis=-1).tobytes())

    def close(self) -> None:
        self._f.close()
        self._zip.close()


def _write_ply(path: Path, points: np.ndarray, colours: np.ndarray) -> None:
    from plyfile import PlyData, PlyElement

    vertex = np.empty(len(points), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    for i, c in enumerate("xyz"):
        vertex[c] = points[:, i]
    for i, c in enumerate(("red", "green", "blue")):
        vertex[c] = colours[:, i]
    with atomic_write(path) as tmp:
        PlyData([PlyElement.describe(vertex, "vertex")], text=False).write(str(tmp))


def _prepare_source(
    colour: np.ndarray, geometry: GeometryCache, s: int, dev: torch.device, settings: RenderSettings, ply_path: Path | None
) -> SourceViews:
    """Source frame s (colour uint8 [H,W,3]) ready to render; optionally its PLY."""
    depth = torch.from_numpy(geometry.depth[s : s + 1]).to(dev)
    conf = None if geometry.conf is None else torch.from_numpy(geometry.conf[s : s + 1]).to(dev)
    K = torch.from_numpy(geometry.intrinsics[s : s + 1]).to(dev)
    c2w = torch.from_numpy(geometry.c2w[s : s + 1]).to(dev)
    src = prepare_sources(torch.from_numpy(colour[None]).to(dev), depth, K, c2w, conf, settings)
    if ply_path is not None:
        valid = src.valid[0]
        pts = unproject(src.depth, src.K, src.c2w)[0][valid]
        _write_ply(ply_path, pts.cpu().numpy(), colour[valid.cpu().numpy()])
    return src


class _Once:
    """A value computed by the first thread that asks for it; later callers wait for it.

    Render tasks prepare their own source views this way, so no render task idles waiting on a
    preparation queued behind it on the same pool."""

    def __init__(self, fn: Callable[[], SourceViews]) -> None:
        self._fn = fn
        self._claim = threading.Lock()
        self._result: Future = Future()

    def get(self) -> SourceViews:
        if self._claim.acquire(blocking=False):
            try:
                self._result.set_result(self._fn())
            except BaseException as e:
                self._result.set_exception(e)
            finally:
                self._fn = None  # drop the decoded frame
        return self._result.result()


def _render_chunk(
    sources: list[_Once],
    inverse: np.ndarray,
    w2c: torch.Tensor,
    K: torch.Tensor,
    width: int,
    height: int,
    settings: RenderSettings,
    pix_fmt: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Render output frames whose source views are ``sources[inverse[i]]`` (``inverse`` None: all of
    ``sources`` fused, for every frame) -> (frames as uint8 ``pix_fmt`` planes [n, ...] for
    ``VideoWriter.write_planes``, mask bool [n,H,W], per-view coverage [n, V] or None)."""
    src = SourceViews.cat([f.get() for f in sources])
    dev = src.depth.device
    if inverse is None:
        fused = render_fused(src, w2c.to(dev), K.to(dev), width, height, settings)
        return yuv_planes(fused.rgb, pix_fmt).cpu().numpy(), fused.mask.cpu().numpy(), fused.coverage.cpu().numpy()
    if not np.array_equal(inverse, np.arange(len(sources))):
        src = src.select(torch.from_numpy(inverse).to(dev))
    out = render_views(src, w2c.to(dev), K.to(dev), width, height, settings)
    return yuv_planes(out.rgb, pix_fmt).cpu().numpy(), out.mask.cpu().numpy(), None


def _single_threaded_torch() -> None:
    torch.set_num_threads(1)


@functools.cache
def _keep_freed_heap() -> None:
    """Let glibc keep freed heap memory for reuse instead of returning it to the system.

    Rendering allocates and frees ~100 MB of tensors per frame; by default glibc unmaps or trims
    them and the next frame faults every page back in, which costs about as much CPU as the
    rendering itself. Blocks up to 32 MB are served from the heap and the heap is not trimmed, so
    the process keeps its high-water mark (peak RSS is unchanged). Process-wide and permanent (it
    only changes when memory goes back to the system). No-op without glibc.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
    mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest allowed value
    mallopt(m_trim_threshold, 1 << 30)
    mallopt(m_arena_max, 1)  # threads share the main heap: a thread's extra heaps would be unmapped


def render_to_folder(
    video_path: str | Path,
    geometry: GeometryCache,
    camera_path: CameraPath,
    out_dir: str | Path,
    options: RenderOptions = RenderOptions(),
) -> RenderOutputs:
    """Render ``geometry`` (coloured by ``video_path``) along ``camera_path`` into ``out_dir``.

    The main thread decodes source frames in time-map order; ``options.workers`` threads render
    chunks, each preparing the source views it is the first to need; one thread encodes the results
    in order. Prepared source views are reused by source index (LRU of ``options.source_cache``).
    Memory is bounded by the chunks in flight.
    Raises ValueError when the video and geometry disagree in frame count or the time map points
    past the source; VideoError for unreadable videos.
    """
    t0 = time.perf_counter()
    video_path, folder = Path(video_path), RenderFolder(out_dir)
    W, H = camera_path.width, camera_path.height
    colour_size = options.colour_size or (W, H)
    src_idx = np.asarray(camera_path.source_index, dtype=np.int64)
    dev = torch.device(options.device)
    ply_dir = folder.ply_dir if options.export_ply else None
    covered = 0
    with ExitStack() as stack:
        reader = stack.enter_context(VideoReader(video_path, size=colour_size, min_frames=1, verify=False,
                                                          cache_frames=_DECODED_FRAMES))
        if len(reader) != geometry.num_frames:
            raise ValueError(
                f"{video_path}: video has {len(reader)} frames but its geometry cache has {geometry.num_frames}; "
                "recompute the geometry for this video"
            )
        if src_idx.min() < 0 or src_idx.max() >= len(reader):
            raise ValueError(f"camera path shows source frame {src_idx.max()} but {video_path} has {len(reader)} frames")
        render_w = stack.enter_context(VideoWriter(folder.render_video, camera_path.fps, W, H, options.encode))
        mask_w = stack.enter_context(VideoWriter(folder.mask_video, camera_path.fps, W, H, options.mask_encode))
        npz_tmp = stack.enter_context(atomic_write(folder.mask_npz))
        npz = _MaskNpz(npz_tmp, len(camera_path), H, W)
        stack.callback(npz.close)
        if dev.type == "cpu":
            _keep_freed_heap()
            stack.callback(torch.set_num_threads, torch.get_num_threads())
            _single_threaded_torch()
        workers = ThreadPoolExecutor(max(options.workers, 1), initializer=_single_threaded_torch if dev.type == "cpu" else None)
        stack.callback(workers.shutdown, wait=True, cancel_futures=True)
        encoder = ThreadPoolExecutor(1)
        stack.callback(encoder.shutdown, wait=True, cancel_futures=True)
        cache: OrderedDict[int, _Once] = OrderedDict()
        cache_size = max(options.source_cache, len(reader) if options.fuse_views else 0)
        view_coverage: list[np.ndarray] = []
        exported: set[int] = set()
        rendering: deque[Future] = deque()
        encoding: deque[Future] = deque()

        def source(s: int) -> _Once:
            if s in cache:
                cache.move_to_end(s)
                return cache[s]
            ply = None
            if ply_dir is not None and s not in exported:
                exported.add(s)
                ply = folder.ply(s)
            cache[s] = prepared = _Once(functools.partial(_prepare_source, reader[s], geometry, s, dev, options.settings, ply))
            while len(cache) > cache_size:
                cache.popitem(last=False)
            return prepared

        def encode(frames: np.ndarray, mask: np.ndarray) -> None:
            for frame, m in zip(frames, mask):
                render_w.write_planes(frame)
                mask_w.write(m.view(np.uint8) * np.uint8(255))
                npz.write(m)

        def drain() -> None:
            nonlocal covered
            frames, mask, per_view = rendering.popleft().result()
            covered += int(mask.sum())
            if per_view is not None:
                view_coverage.append(per_view)
            while len(encoding) >= max(options.workers, 1):
                encoding.popleft().result()
            encoding.append(encoder.submit(encode, frames, mask))

        w2c_all = torch.from_numpy(camera_path.w2c).float()
        K_all = torch.from_numpy(camera_path.intrinsics).float()
        for start in range(0, len(camera_path), options.chunk_frames):
            chunk = slice(start, min(start + options.chunk_frames, len(camera_path)))
            if options.fuse_views:
                uniq, inverse = np.arange(len(reader)), None
            else:
                uniq, inverse = np.unique(src_idx[chunk], return_inverse=True)
            sources = [source(int(s)) for s in uniq]
            rendering.append(workers.submit(_render_chunk, sources, inverse, w2c_all[chunk], K_all[chunk], W, H, options.settings, options.encode.pix_fmt))
            while len(rendering) > max(options.workers, 1):
                drain()
        while rendering:
            drain()
        while encoding:
            encoding.popleft().result()
    camera_path.save(folder.cameras_json)
    return RenderOutputs(
        folder=folder,
        ply_dir=ply_dir,
        num_frames=len(camera_path),
        coverage=covered / (len(camera_path) * H * W),
        seconds=time.perf_counter() - t0,
        view_coverage=np.concatenate(view_coverage) if view_coverage else None,
    )
