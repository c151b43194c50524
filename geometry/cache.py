"""The geometry cache: one documented, DA3-compatible ``.npz`` plus a JSON sidecar.

Keys (the ones the ``depth-anything-3`` package's npz export writes):
  depth       [N, h, w] float32  z-depth in scene units (metres for metric DA3 models)
  extrinsics  [N, 3, 4] or [N, 4, 4] world-to-camera, OpenCV axes (held here as [N, 4, 4] float64)
  intrinsics  [N, 3, 3] pixels at the depth resolution (h, w)
  conf        [N, h, w] float32, optional, higher = more confident
  image       [N, h, w, 3] uint8, optional, colour at the depth resolution
The sidecar ``<name>.json`` records the source video, its content hash, fps, frame count, producer
and the format version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

FORMAT_VERSION = 1


class GeometryCacheError(ValueError):
    """A geometry cache file is missing, malformed or does not match its video."""


@dataclass(frozen=True)
class GeometryMeta:
    source_video: str = ""
    video_sha256: str = ""
    fps: float = 0.0
    frame_count: int = 0
    producer: str = ""
    format_version: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class GeometryCache:
    """Per-frame depth and cameras of one video (see module docstring for shapes and conventions)."""

    depth: np.ndarray
    extrinsics: np.ndarray
    intrinsics: np.ndarray
    conf: Optional[np.ndarray] = None
    image: Optional[np.ndarray] = None
    meta: GeometryMeta = field(default_factory=GeometryMeta)

    @property
    def num_frames(self) -> int:
        return int(self.depth.shape[0])

    @property
    def resolution(self) -> tuple[int, int]:
        """(h, w) of the depth maps."""
        return int(self.depth.shape[1]), int(self.depth.shape[2])

    @property
    def c2w(self) -> np.ndarray:
        """[N, 4, 4] camera-to-world."""
        return np.linalg.inv(self.extrinsics)
