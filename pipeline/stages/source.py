"""Input videos: validation at the door and the content hash every stage key starts from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.video_io import VideoError, VideoInfo, file_sha256, probe_video

# One generation block is 3 latent frames = 1 + 4*2 = 9 video frames.
MIN_SOURCE_FRAMES = 9
# Below this the upsampling to the working resolution has nothing left to show.
MIN_SOURCE_SIDE = 32


@dataclass(frozen=True)
class SourceVideo:
    """An input as the stages read it; ``static``: its frames are views of one moment (an image scene,
    see ``pipeline.inputs``), not times."""

    path: Path
    sha256: str
    info: VideoInfo
    static: bool = False

    @property
    def name(self) -> str:
        return self.path.stem


def open_source(path: Path, static: bool = False) -> SourceVideo:
    """Probe and hash one input video; raises VideoError naming the file and the problem. A static
    source (views of one scene) may have any number of frames."""
    info = probe_video(path, min_frames=1)
    if info.num_frames < MIN_SOURCE_FRAMES and not static:
        raise VideoError(
            f"{path}: has {info.num_frames} frame(s), shorter than one generation block "
            f"({MIN_SOURCE_FRAMES} frames = 3 latent frames); use a longer clip"
        )
    if min(info.width, info.height) < MIN_SOURCE_SIDE:
        raise VideoError(
            f"{path}: resolution {info.width}x{info.height} is too small; "
            f"at least {MIN_SOURCE_SIDE} px on each side is needed"
        )
    return SourceVideo(path=Path(path), sha256=file_sha256(path), info=info, static=static)
