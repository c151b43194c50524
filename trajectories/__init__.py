"""Camera paths from editable trajectory text files (pitch / yaw / displacement keyframes) and time maps."""

from trajectories.camera_path import CameraPath

__all__ = ["CameraPath"]
