"""Render stage: source video + geometry cache + camera path -> a folder of render outputs.

Writes (each file atomically):
  render.mp4    H.264 render of the geometry along the camera path (black where nothing is seen)
  mask.mp4      H.264 coverage mask (white = covered), for viewing and for the model
  mask.npz      the same mask, lossless: ``packed`` uint8 [N, H, ceil(W/8)] (np.packbits along
                width, big bit order) and ``shape`` [N, H, W]; read it with ``load_mask``
  cameras.json  the camera path (``CameraPath.save``): per frame c2w, K, source index
  ply/source_XXXXX.ply  optional: binary PLY of each used source frame's world points with colour
Output frame i shows source frame ``camera_path.source_index[i]``; fps = ``camera_path.fps``;
size = camera path size. Frames stream through in chunks, so memory does not grow with length.
"""

from __future__ import annotations

import time
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from geometry.cache import GeometryCache
from geometry.render import RenderSettings, prepare_sources, render_views
from geometry.unproject import unproject
from pipeline.fsutil import atomic_write
from pipeline.video_io import EncodeOptions, VideoReader, VideoWriter
from trajectories.camera_path import CameraPath


@dataclass(frozen=True)
class RenderOptions:
    """chunk_frames: output frames rendered per batch (memory vs. speed); device: torch device;
    colour_size: (W, H) the source video is read at (stretch; default = output size);
    encode / mask_encode: H.264 settings of render.mp4 / mask.mp4; export_ply: write ply/."""

    chunk_frames: int = 4
    device: str = "cpu"
    colour_size: tuple[int, int] | None = None
    settings: RenderSettings = field(default_factory=RenderSettings)
    encode: EncodeOptions = field(default_factory=lambda: EncodeOptions(crf=10, preset="ultrafast"))
    mask_encode: EncodeOptions = field(default_factory=lambda: EncodeOptions(crf=0, preset="ultrafast"))
    export_ply: bool = False


@dataclass(frozen=True)
class RenderOutputs:
    render_video: Path
    mask_video: Path
    mask_npz: Path
    cameras_json: Path
    ply_dir: Path | None
    num_frames: int
    coverage: float  # mean fraction of covered pixels
    seconds: float


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


def load_mask(path: str | Path) -> np.ndarray:
    """The lossless mask of a render folder's ``mask.npz``: bool [N, H, W]."""
    with np.load(path) as data:
        n, h, w = (int(v) for v in data["shape"])
        return np.unpackbits(data["packed"], axis=-1, count=w).astype(bool).reshape(n, h, w)


def _write_ply(path: Path, points: np.ndarray, colours: np.ndarray) -> None:
    from plyfile import PlyData, PlyElement

    vertex = np.empty(len(points), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    for i, c in enumerate("xyz"):
        vertex[c] = points[:, i]
    for i, c in enumerate(("red", "green", "blue")):
        vertex[c] = colours[:, i]
    with atomic_write(path) as tmp:
        PlyData([PlyElement.describe(vertex, "vertex")], text=False).write(str(tmp))


def render_to_folder(
    video_path: str | Path,
    geometry: GeometryCache,
    camera_path: CameraPath,
    out_dir: str | Path,
    options: RenderOptions = RenderOptions(),
) -> RenderOutputs:
    """Render ``geometry`` (coloured by ``video_path``) along ``camera_path`` into ``out_dir``.

    Raises ValueError when the video and geometry disagree in frame count or the time map points
    past the source; VideoError for unreadable videos.
    """
    t0 = time.perf_counter()
    video_path, out_dir = Path(video_path), Path(out_dir)
    W, H = camera_path.width, camera_path.height
    colour_size = options.colour_size or (W, H)
    src_idx = np.asarray(camera_path.source_index, dtype=np.int64)
    dev = torch.device(options.device)
    ply_dir = out_dir / "ply" if options.export_ply else None
    covered = 0
    with ExitStack() as stack:
        reader = stack.enter_context(VideoReader(video_path, size=colour_size))
        if len(reader) != geometry.num_frames:
            raise ValueError(
                f"{video_path}: video has {len(reader)} frames but its geometry cache has {geometry.num_frames}; "
                "recompute the geometry for this video"
            )
        if src_idx.min() < 0 or src_idx.max() >= len(reader):
            raise ValueError(f"camera path shows source frame {src_idx.max()} but {video_path} has {len(reader)} frames")
        render_w = stack.enter_context(VideoWriter(out_dir / "render.mp4", camera_path.fps, W, H, options.encode))
        mask_w = stack.enter_context(VideoWriter(out_dir / "mask.mp4", camera_path.fps, W, H, options.mask_encode))
        npz_tmp = stack.enter_context(atomic_write(out_dir / "mask.npz"))
        npz = _MaskNpz(npz_tmp, len(camera_path), H, W)
        stack.callback(npz.close)
        encoder = stack.enter_context(ThreadPoolExecutor(1))
        pending: Future | None = None
        exported: set[int] = set()

        def encode(rgb: np.ndarray, mask: np.ndarray) -> None:
            for frame, m in zip(rgb, mask):
                render_w.write(frame)
                mask_w.write(m.astype(np.uint8) * 255)
                npz.write(m)

        w2c_all = torch.from_numpy(camera_path.w2c).float()
        K_all = torch.from_numpy(camera_path.intrinsics).float()
        for start in range(0, len(camera_path), options.chunk_frames):
            chunk = slice(start, min(start + options.chunk_frames, len(camera_path)))
            uniq, inverse = np.unique(src_idx[chunk], return_inverse=True)
            colour = torch.from_numpy(reader.get_batch(uniq)).to(dev)
            conf = None if geometry.conf is None else torch.from_numpy(geometry.conf[uniq]).to(dev)
            src = prepare_sources(
                colour,
                torch.from_numpy(geometry.depth[uniq]).to(dev),
                torch.from_numpy(geometry.intrinsics[uniq]).to(dev),
                torch.from_numpy(geometry.c2w[uniq]).to(dev),
                conf,
                options.settings,
            )
            out = render_views(src.select(torch.from_numpy(inverse).to(dev)), w2c_all[chunk].to(dev), K_all[chunk].to(dev), W, H, options.settings)
            rgb = (out.rgb.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
            mask = out.mask.cpu().numpy()
            covered += int(mask.sum())
            if pending is not None:
                pending.result()
            pending = encoder.submit(encode, rgb, mask)
            if ply_dir is not None:
                for k, s in enumerate(uniq):
                    if int(s) not in exported:
                        exported.add(int(s))
                        pts = unproject(src.depth[k : k + 1], src.K[k : k + 1], src.c2w[k : k + 1])[0][src.valid[k]]
                        cols = colour[k][src.valid[k]]
                        _write_ply(ply_dir / f"source_{int(s):05d}.ply", pts.cpu().numpy(), cols.cpu().numpy())
        if pending is not None:
            pending.result()
    camera_path.save(out_dir / "cameras.json")
    return RenderOutputs(
        render_video=out_dir / "render.mp4",
        mask_video=out_dir / "mask.mp4",
        mask_npz=out_dir / "mask.npz",
        cameras_json=out_dir / "cameras.json",
        ply_dir=ply_dir,
        num_frames=len(camera_path),
        coverage=covered / (len(camera_path) * H * W),
        seconds=time.perf_counter() - t0,
    )
