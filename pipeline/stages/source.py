"""Input videos: validation at the door and the content hash every stage key starts from."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline.video_io import VideoError, VideoInfo, file_sha256, probe_video

log = logging.getLogger("pipeline")

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

    @property
    def key_inputs(self) -> dict[str, str | int]:
        """The video's part of every stage key: its content hash, plus its display rotation when it has one
        (absent for upright videos, so their caches from before rotation was applied stay valid)."""
        rotation = {"rotation": self.info.rotation} if self.info.rotation else {}
        return {"video": self.sha256, **rotation}


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
    if info.variable_rate:
        log.warning("%s: variable frame rate (average %.3g fps); the time map follows its timestamps, and the "
                    "output plays at a constant %.3g fps", path, info.fps, info.fps)
    return SourceVideo(path=Path(path), sha256=file_sha256(path), info=info, static=static)
