"""Small synthetic input folders for the pipeline tests: videos, their geometry caches, captions."""

from __future__ import annotations

import dataclasses
import functools
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from geometry.cache import GeometryMeta, save_geometry
from geometry.synthetic import SyntheticScene, make_geometry, make_source_clip
from pipeline.video_io import EncodeOptions, file_sha256, read_video, write_video

FPS = 8.0
ORBIT = "# small orbit for tests\n0 4 8\n0 6 12\n1 1 1\n"
ARGS = ["--width", "64", "--height", "48", "--disable_adaptive_frame"]


@functools.lru_cache(maxsize=None)
def synthetic_clip(n_frames: int, width: int, height: int):
    """The synthetic room seen by a static camera, and its analytic geometry at half resolution (cached)."""
    scene = SyntheticScene()
    clip = make_source_clip(scene, n_frames, width, height, FPS)
    return clip, make_geometry(scene, clip, depth_hw=(max(8, height // 2), max(8, width // 2)))


def write_lossless(path: Path, upright: np.ndarray, degrees: int = 0, times: np.ndarray | None = None,
                   fps: float = FPS) -> Path:
    """A lossless H.264 file that a player shows as ``upright`` [N, H, W, 3]. ``degrees``: stored turned that
    far clockwise with a display matrix that turns it back counter-clockwise, as phones record portrait
    video. ``times``: frame timestamps in seconds (a variable frame rate; millisecond time base)."""
    stored = np.ascontiguousarray(np.rot90(upright, -(degrees // 90), axes=(1, 2)))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = stored.shape[1:3]
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": "0"}
        stream.set_display_rotation(degrees)
        if times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for i, frame in enumerate(stored):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            if times is not None:
                vf.pts, vf.time_base = round(times[i] * 1000), Fraction(1, 1000)
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def add_video(folder: Path, name: str, n_frames: int = 12, size: tuple[int, int] = (64, 48),
              geometry: bool = True, rotation: int | None = None, times: np.ndarray | None = None) -> Path:
    """Write ``<folder>/<name>.mp4`` (a synthetic orbit clip) and, if asked, ``<folder>/geometry/<name>.npz``.
    ``rotation`` / ``times``: write it lossless (``write_lossless``), stored turned by that many degrees with
    display rotation metadata (0 = upright, same codec settings), or with these frame timestamps."""
    width, height = size
    clip, cache = synthetic_clip(n_frames, width, height)
    video = folder / f"{name}.mp4"
    folder.mkdir(parents=True, exist_ok=True)
    odd = width % 2 or height % 2
    if rotation is not None or times is not None:
        write_lossless(video, clip.frames, rotation or 0, times)
    else:
        write_video(video, clip.frames, FPS, EncodeOptions(pix_fmt="yuv444p") if odd else EncodeOptions())
    if geometry:
        meta = GeometryMeta(source_video=video.name, video_sha256=file_sha256(video), fps=FPS,
                            frame_count=n_frames, producer="test")
        save_geometry(folder / "geometry" / f"{name}.npz", dataclasses.replace(cache, meta=meta))
    return video


def make_input(folder: Path, names=("a", "b"), **kw) -> Path:
    """An input folder with synthetic videos, their geometry caches and a captions.json."""
    for n in names:
        add_video(folder, n, **kw)
    (folder / "captions.json").write_text(json.dumps({f"{n}.mp4": f"A synthetic room, clip {n}." for n in names}))
    return folder


def write_traj(path: Path, text: str = ORBIT) -> Path:
    path.write_text(text)
    return path


def leftovers(*roots: Path) -> list[Path]:
    """Temporary files an interrupted atomic write would leave (none may survive)."""
    return [p for r in roots if r.exists() for p in r.rglob("*") if ".tmp" in p.name]


def frames_of(path: Path) -> np.ndarray:
    return read_video(path)


def table(output: str) -> dict[str, list[str]]:
    """video -> [caption, geometry, render, generate] cells of the end table."""
    lines = output.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("video "))
    rows = {}
    for ln in lines[start + 2:]:
        if not ln.split() or not ln.split()[0].endswith(".mp4"):
            break
        cells = [c for c in ln.split("  ") if c.strip()]
        rows[cells[0].strip()] = [c.strip() for c in cells[1:5]]
    return rows
