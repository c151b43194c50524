"""SpaceTimePilot's conditions from this project's objects: the 81-frame window, cameras and frame times.

Conventions (``SPACETIMEPILOT_SPEC.md`` section 7), stated once:
- A camera row is a [3, 4] pose flattened row-major (R row 0, t_x, R row 1, t_y, R row 2, t_z), OpenCV
  axes, one row per latent frame = every 4th video frame of the window (frames 0, 4, ..., T-1).
- Target rows: the camera path's c2w relative to its first frame, ``inv(c2w_0) @ c2w_i``; translations
  in scene units (metres for metric DA3; upstream: ReCamMaster centimetres / 100). Row 0 is the identity.
- Source rows: from the geometry cache's world-to-camera extrinsics, ``c2w_i @ inv(c2w_0)`` (right-
  multiplied, as upstream), translations divided by their largest absolute component over all T
  frames (not divided when that is below 1e-2).
- Frame times are in video frames of the source window: source times 0..T-1 (always forward), target
  time of output frame i = the time map's source frame minus the window's first source frame.

Window: the model was trained on T = 81 frames (21 latent frames per half). A shorter request is
padded to 81 (the last camera, time and source frame repeated; the padded output frames are dropped);
a longer one is refused, as is a time map whose source frames do not fit 81 consecutive frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WINDOW = 81
STRIDE = 4  # video frames per latent frame
SOURCE_SCALE_FLOOR = 1e-2


class WindowError(ValueError):
    """The request does not fit SpaceTimePilot's 81-frame window; the message says what to change."""


@dataclass(frozen=True)
class Window:
    """One 81-frame generation window.

    requested:     output frames asked for (the camera path's N <= 81); only these are written.
    target_index:  [81] int64, camera-path frame of each window frame (0..N-1, then N-1 repeated).
    source_frames: [81] int64, source video frame of each source-half frame (start.., last repeated).
    target_times:  [81] float64, target frame times (time map minus the window start).
    """

    requested: int
    target_index: np.ndarray
    source_frames: np.ndarray
    target_times: np.ndarray

    @property
    def start(self) -> int:
        return int(self.source_frames[0])

    def describe(self) -> str:
        text = (f"{self.requested} frames requested -> one {WINDOW}-frame SpaceTimePilot window over source frames "
                f"{self.start}..{self.source_frames.max()}")
        if self.requested < WINDOW:
            text += f"; the last camera and time padded to {WINDOW} frames, {WINDOW - self.requested} not written"
        return text


def plan_window(source_index: np.ndarray, n_source: int) -> Window:
    """The window for a time map ``source_index`` [N] (source frames per output frame) over a source of
    ``n_source`` frames. Raises ``WindowError`` naming the fix when it does not fit."""
    source_index = np.asarray(source_index, dtype=np.int64)
    n = len(source_index)
    if n > WINDOW:
        raise WindowError(
            f"SpaceTimePilot generates one {WINDOW}-frame window and the camera path has {n} frames; "
            f"use --num_frames {WINDOW} --disable_adaptive_frame (or fewer frames)")
    lo, hi = int(source_index.min()), int(source_index.max())
    if hi - lo >= WINDOW:
        raise WindowError(
            f"the time map shows source frames {lo}..{hi} ({hi - lo + 1} frames) but SpaceTimePilot sees {WINDOW} "
            f"consecutive source frames; trim the video to {WINDOW} frames or choose a time map within them")
    start = max(0, min(lo, n_source - WINDOW))
    target = np.minimum(np.arange(WINDOW), n - 1)
    return Window(
        requested=n,
        target_index=target,
        source_frames=np.minimum(start + np.arange(WINDOW), n_source - 1),
        target_times=(source_index[target] - start).astype(np.float64),
    )


def _rows(poses: np.ndarray) -> np.ndarray:
    """[T, 4, 4] -> [F, 12] rows of every 4th frame (float32)."""
    return poses[::STRIDE, :3, :].reshape(-1, 12).astype(np.float32)


def target_camera_rows(c2w: np.ndarray) -> np.ndarray:
    """[T, 4, 4] target camera-to-world (T = 4k+1) -> [F, 12]: ``inv(c2w_0) @ c2w_i``."""
    c2w = np.asarray(c2w, dtype=np.float64)
    return _rows(np.linalg.inv(c2w[0]) @ c2w)


def source_camera_rows(w2c: np.ndarray) -> np.ndarray:
    """[T, 4, 4] source world-to-camera (T = 4k+1) -> [F, 12]: ``c2w_i @ inv(c2w_0)``, translations
    divided by their largest absolute component over all T frames (1 if that is below 1e-2)."""
    c2w = np.linalg.inv(np.asarray(w2c, dtype=np.float64))
    rel = c2w @ np.linalg.inv(c2w[0])
    scale = float(np.abs(rel[:, :3, 3]).max())
    rel[:, :3, 3] /= scale if scale >= SOURCE_SCALE_FLOOR else 1.0
    return _rows(rel)
