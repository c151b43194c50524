"""Camera poses read back as the trajectory file's quantities (the inverse of ``orbit_c2w``).

For a camera-to-world pose [R | T] in the first source camera's frame (OpenCV axes), with
R = Ry(yaw)·Rx(pitch) as in ``trajectories.orbit``:
  pitch = atan2(R[1,2], hypot(R[0,2], R[2,2]))   degrees, + = orbit up / tilt down (rotation only)
  yaw   = atan2(R[0,2], R[2,2])                  degrees, + = orbit left / pan right (rotation only)
  displacement r = T·v / v·v with v = (-cos p sin y, -sin p, 1 - cos p cos y) (the orbit's T = r·v),
                 or T_z where v vanishes (a dolly: p = y = 0, T = (0, 0, r)).
A rotation-only pose (T = 0) reads back r = 0, and so does an orbit frame at pitch = yaw = 0 (the
camera sits on the source camera, where the orbit radius cannot be seen). Poses that are not of this family (e.g.
``relative_to_source`` on a moving source) still get well-defined angles of their rotation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PathReadout:
    """Per output frame: pitch and yaw in degrees, displacement in scene units, camera centre [N, 3]
    and viewing direction (camera +z) [N, 3] in the world frame."""

    pitch_deg: np.ndarray
    yaw_deg: np.ndarray
    displacement: np.ndarray
    centre: np.ndarray
    forward: np.ndarray


def read_path(c2w: np.ndarray) -> PathReadout:
    """Pitch, yaw and displacement of camera-to-world poses ``c2w`` [N, 4, 4] (see module doc)."""
    c2w = np.asarray(c2w, dtype=np.float64)
    R, T = c2w[:, :3, :3], c2w[:, :3, 3]
    yaw = np.arctan2(R[:, 0, 2], R[:, 2, 2])
    pitch = np.arctan2(R[:, 1, 2], np.hypot(R[:, 0, 2], R[:, 2, 2]))
    cp, sp, cy, sy = np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    v = np.stack([-cp * sy, -sp, 1 - cp * cy], -1)
    vv = np.einsum("ij,ij->i", v, v)
    orbit = vv > 1e-12
    r = np.where(orbit, np.einsum("ij,ij->i", T, v) / np.where(orbit, vv, 1.0), T[:, 2])
    return PathReadout(np.rad2deg(pitch), np.rad2deg(yaw), r, T.copy(), R[:, :, 2].copy())
