"""The render folder: what the render stage writes and the generate and publish stages read.

  render.mp4    H.264 render of the geometry along the camera path (black where nothing is seen)
  mask.mp4      H.264 coverage mask (white = covered), for viewing and for the model
  mask.npz      the same mask, lossless: ``packed`` uint8 [N, H, ceil(W/8)] (np.packbits along
                width, big bit order) and ``shape`` [N, H, W]; read it with ``load_mask``
  cameras.json  the camera path (``CameraPath.save``): per frame c2w, K, source index
  ply/source_XXXXX.ply  optional: binary PLY of each used source frame's world points with colour

This module is the one place these names are spelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trajectories.camera_path import CameraPath


def load_mask(path: str | Path) -> np.ndarray:
    """The lossless mask of a ``mask.npz``: bool [N, H, W]."""
    with np.load(path) as data:
        n, h, w = (int(v) for v in data["shape"])
        return np.unpackbits(data["packed"], axis=-1, count=w).astype(bool).reshape(n, h, w)


@dataclass(frozen=True)
class RenderFolder:
    """Paths of one render folder (``root``) and readers of its contents."""

    root: Path

    OUTPUTS = ("render.mp4", "mask.mp4", "mask.npz", "cameras.json")  # every file the render stage writes
    CONDITIONS = ("render.mp4", "mask.mp4", "cameras.json")  # what the generator is conditioned on, as published

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def render_video(self) -> Path:
        return self.root / "render.mp4"

    @property
    def mask_video(self) -> Path:
        return self.root / "mask.mp4"

    @property
    def mask_npz(self) -> Path:
        return self.root / "mask.npz"

    @property
    def cameras_json(self) -> Path:
        return self.root / "cameras.json"

    @property
    def ply_dir(self) -> Path:
        return self.root / "ply"

    def ply(self, source_index: int) -> Path:
        """The optional PLY of source frame ``source_index``."""
        return self.ply_dir / f"source_{source_index:05d}.ply"

    def load_mask(self) -> np.ndarray:
        """bool [N, H, W] from ``mask.npz``."""
        return load_mask(self.mask_npz)

    def cameras(self) -> CameraPath:
        """The camera path of ``cameras.json``."""
        return CameraPath.load(self.cameras_json)
