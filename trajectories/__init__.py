"""Camera paths from editable trajectory text files (pitch / yaw / displacement keyframes, or one
world-to-camera matrix per frame) and time maps."""

from trajectories.camera_path import (
    CameraPath,
    FrameCount,
    PathOptions,
    make_camera_path,
    output_frame_count,
    zoomed_intrinsics,
)
from trajectories.depth import foreground_depth
from trajectories.interpolate import interpolate_keys
from trajectories.loader import Trajectory, read_trajectory
from trajectories.matrix_file import MatrixTrajectory, format_matrix_trajectory, parse_matrix_trajectory
from trajectories.orbit import orbit_c2w
from trajectories.presets import find_trajectory, list_presets
from trajectories.spec import TrajectoryError, TrajectorySpec, load_trajectory, parse_trajectory
from trajectories.timemap import adaptive_frame_count, source_times, time_map

__all__ = [
    "CameraPath",
    "FrameCount",
    "MatrixTrajectory",
    "PathOptions",
    "Trajectory",
    "TrajectoryError",
    "TrajectorySpec",
    "adaptive_frame_count",
    "find_trajectory",
    "foreground_depth",
    "format_matrix_trajectory",
    "interpolate_keys",
    "list_presets",
    "load_trajectory",
    "make_camera_path",
    "orbit_c2w",
    "output_frame_count",
    "parse_matrix_trajectory",
    "parse_trajectory",
    "read_trajectory",
    "source_times",
    "time_map",
    "zoomed_intrinsics",
]
