"""Orbit / dolly poses relative to the first source camera.

Frame: the first source camera's OpenCV frame (x right, y down, z forward), origin at its centre.
For pitch p, yaw y (degrees at the boundary) and displacement r, the pose is the camera-to-world
matrix ``[[R, T], [0, 1]]`` with

    R = Ry(y) · Rx(p),  Ry = [[cos y, 0, sin y], [0, 1, 0], [-sin y, 0, cos y]],
                        Rx = [[1, 0, 0], [0, cos p, sin p], [0, -sin p, cos p]]
    T = [-r cos p sin y, -r sin p, r - r cos p cos y]

i.e. R and T are camera-to-world (T is the camera centre; the reference fixture confirms this
reading). The camera sits on a sphere of radius r around the orbit centre C = (0, 0, r), the point r
in front of the first camera, and looks at C: +pitch moves it up (-y), +yaw moves it left (-x).
When every pitch and yaw is 0 the path is a dolly: T = (0, 0, r), + moves forward.
``rotation_only`` sets T = 0 (a tripod pan/tilt: +yaw turns the view right, +pitch down); a dolly
still applies.
"""

from __future__ import annotations

import numpy as np


def orbit_c2w(
    pitch_deg: np.ndarray, yaw_deg: np.ndarray, displacement: np.ndarray, rotation_only: bool = False
) -> np.ndarray:
    """[N, 4, 4] float64 camera-to-world poses relative to the first source camera (see module doc)."""
    p = np.deg2rad(np.asarray(pitch_deg, dtype=np.float64))
    y = np.deg2rad(np.asarray(yaw_deg, dtype=np.float64))
    r = np.asarray(displacement, dtype=np.float64)
    n = len(r)
    if not len(p) == len(y) == n:
        raise ValueError(f"pitch, yaw and displacement need one value per frame, got {len(p)}, {len(y)}, {n}")
    cp, sp, cy, sy = np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    zero, one = np.zeros(n), np.ones(n)
    ry = np.stack([np.stack([cy, zero, sy], -1), np.stack([zero, one, zero], -1), np.stack([-sy, zero, cy], -1)], -2)
    rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cp, sp], -1), np.stack([zero, -sp, cp], -1)], -2)
    c2w = np.tile(np.eye(4), (n, 1, 1))
    c2w[:, :3, :3] = ry @ rx
    if np.all(p == 0.0) and np.all(y == 0.0):
        c2w[:, 2, 3] = r
    elif not rotation_only:
        c2w[:, :3, 3] = np.stack([-r * cp * sy, -r * sp, r - r * cp * cy], -1)
    return c2w
