"""The camera path object that crosses from trajectory planning to the render and generate stages.

Conventions: OpenCV camera axes (x right, y down, z forward); ``c2w`` maps camera to world, where
the world is the geometry cache's world frame; intrinsics are in pixels at (height, width).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CAMERAS_FORMAT = "inspatio-cameras/1"


@dataclass(frozen=True)
class CameraPath:
    """Target cameras, one per output frame.

    c2w:          [N, 4, 4] float64, camera-to-world, OpenCV axes, geometry world frame.
    intrinsics:   [N, 3, 3] float64, pixels at (height, width).
    width/height: output resolution in pixels.
    fps:          output frame rate.
    source_index: [N] int64, the source video frame each output frame shows (the time map).
    """

    c2w: np.ndarray
    intrinsics: np.ndarray
    width: int
    height: int
    fps: float
    source_index: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.c2w)
        if self.c2w.shape != (n, 4, 4):
            raise ValueError(f"c2w must be [N,4,4], got {self.c2w.shape}")
        if self.intrinsics.shape != (n, 3, 3):
            raise ValueError(f"intrinsics must be [{n},3,3], got {self.intrinsics.shape}")
        if self.source_index.shape != (n,):
            raise ValueError(f"source_index must be [{n}], got {self.source_index.shape}")
        if n == 0:
            raise ValueError("a camera path needs at least one frame")

    def __len__(self) -> int:
        return len(self.c2w)

    @property
    def w2c(self) -> np.ndarray:
        """[N, 4, 4] world-to-camera extrinsics."""
        return np.linalg.inv(self.c2w)

    def to_json(self) -> dict:
        return {
            "format": CAMERAS_FORMAT,
            "convention": "OpenCV camera axes (x right, y down, z forward); c2w = camera-to-world "
            "in the geometry cache's world frame; K in pixels at (height, width)",
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "frames": [
                {"c2w": c.tolist(), "K": k.tolist(), "source_index": int(s)}
                for c, k, s in zip(self.c2w, self.intrinsics, self.source_index)
            ],
        }

    @classmethod
    def from_json(cls, data: dict) -> "CameraPath":
        if data.get("format") != CAMERAS_FORMAT:
            raise ValueError(f"not a cameras file of format {CAMERAS_FORMAT}: {data.get('format')!r}")
        frames = data["frames"]
        return cls(
            c2w=np.array([f["c2w"] for f in frames], dtype=np.float64),
            intrinsics=np.array([f["K"] for f in frames], dtype=np.float64),
            width=int(data["width"]),
            height=int(data["height"]),
            fps=float(data["fps"]),
            source_index=np.array([f["source_index"] for f in frames], dtype=np.int64),
        )

    def save(self, path: str | Path) -> None:
        from pipeline.fsutil import atomic_write

        with atomic_write(path) as tmp:
            tmp.write_text(json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "CameraPath":
        return cls.from_json(json.loads(Path(path).read_text()))
