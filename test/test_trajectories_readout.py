"""read_path inverts orbit_c2w: the trajectory file's pitch, yaw and displacement come back."""

from __future__ import annotations

import numpy as np

from trajectories import orbit_c2w
from trajectories.readout import read_path


def test_orbit_parameters_come_back():
    rng = np.random.default_rng(0)
    pitch, yaw = rng.uniform(-60, 60, 50), rng.uniform(-150, 150, 50)
    r = rng.uniform(-3, 3, 50)
    out = read_path(orbit_c2w(pitch, yaw, r))
    np.testing.assert_allclose(out.pitch_deg, pitch, atol=1e-9)
    np.testing.assert_allclose(out.yaw_deg, yaw, atol=1e-9)
    np.testing.assert_allclose(out.displacement, r, atol=1e-9)


def test_dolly_rotation_only_and_directions():
    dolly = read_path(orbit_c2w(np.zeros(3), np.zeros(3), np.array([0.0, 0.5, -1.0])))
    np.testing.assert_allclose(dolly.displacement, [0.0, 0.5, -1.0])
    np.testing.assert_allclose(dolly.centre, [[0, 0, 0], [0, 0, 0.5], [0, 0, -1.0]])
    pan = read_path(orbit_c2w(np.zeros(1), np.array([90.0]), np.ones(1), rotation_only=True))
    np.testing.assert_allclose(pan.displacement, [0.0])
    # +90 degrees of yaw turns the view to the camera's right: +z ends up along world +x.
    np.testing.assert_allclose(pan.forward, [[1.0, 0.0, 0.0]], atol=1e-12)
