"""One entry point for every trajectory file the pipeline accepts: ``read_trajectory``.

- keyframe files (pitch / yaw / displacement [/ time] [/ zoom] lines): ``trajectories.spec``;
- per-frame world-to-camera matrix files (``target_tcw.txt``): ``trajectories.matrix_file``;
- a nerfstudio viewer ``camera_path.json`` (any ``.json`` name): its cameras become a matrix trajectory
  (``trajectories.formats``); their world must be the first source camera's frame, and the source
  focal length is kept (the file's field of view is not used).
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

from trajectories.formats import read_camera_path_json
from trajectories.matrix_file import MatrixTrajectory, looks_like_matrix_text, parse_matrix_trajectory
from trajectories.spec import TrajectorySpec, parse_trajectory, read_trajectory_text

Trajectory = Union[TrajectorySpec, MatrixTrajectory]


def read_trajectory(path: str | Path) -> Trajectory:
    """Read and validate a trajectory file of either kind; raises ``TrajectoryError`` naming file, line and token."""
    path = Path(path)
    text = read_trajectory_text(path)
    if path.suffix.lower() == ".json":
        return MatrixTrajectory(np.linalg.inv(read_camera_path_json(path).c2w), str(path), text)
    if looks_like_matrix_text(text, path.name):
        return parse_matrix_trajectory(text, str(path))
    return parse_trajectory(text, str(path))
