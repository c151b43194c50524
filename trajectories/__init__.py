"""Camera paths from editable trajectory text files (pitch / yaw / displacement keyframes) and time maps."""

from trajectories.camera_path import CameraPath, FrameCount, PathOptions, make_camera_path, output_frame_count
from trajectories.depth import foreground_depth
from trajectories.interpolate import interpolate_keys
from trajectories.orbit import orbit_c2w
from trajectories.presets import find_trajectory, list_presets
from trajectories.spec import TrajectoryError, TrajectorySpec, load_trajectory, parse_trajectory
from trajectories.timemap import adaptive_frame_count, source_times, time_map

__all__ = [
    "CameraPath",
    "FrameCount",
    "PathOptions",
    "TrajectoryError",
    "TrajectorySpec",
    "adaptive_frame_count",
    "find_trajectory",
    "foreground_depth",
    "interpolate_keys",
    "list_presets",
    "load_trajectory",
    "make_camera_path",
    "orbit_c2w",
    "output_frame_count",
    "parse_trajectory",
    "source_times",
    "time_map",
]
