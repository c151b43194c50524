"""Pose smoothing: rotation-aware, sign-free, keeps constant-velocity paths and the end frames."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from geometry.registration import pose_errors
from geometry.smoothing import gaussian_weights, smooth_poses


def constant_velocity_path(n: int, start: np.ndarray, omega: np.ndarray, velocity: np.ndarray) -> np.ndarray:
    """R_j = R_0 exp(j ω), c_j = c_0 + j v (an analytic constant-velocity camera)."""
    c2w = np.tile(np.eye(4), (n, 1, 1))
    for j in range(n):
        c2w[j, :3, :3] = start[:3, :3] @ Rotation.from_rotvec(j * omega).as_matrix()
        c2w[j, :3, 3] = start[:3, 3] + j * velocity
    return c2w


@pytest.mark.parametrize("identity_start", [True, False])
@pytest.mark.parametrize("sigma", [1.0, 2.0, 5.0])
def test_constant_velocity_path_is_unchanged(identity_start, sigma):
    start = np.eye(4)
    if not identity_start:
        start[:3, :3] = Rotation.from_rotvec([0.4, -0.3, 1.2]).as_matrix()
        start[:3, 3] = [1.0, -2.0, 0.5]
    path = constant_velocity_path(30, start, np.array([0.01, 0.03, -0.02]), np.array([0.05, -0.01, 0.02]))
    out = smooth_poses(path, sigma)
    assert np.abs(out - path).max() < 1e-12
    if identity_start:
        assert np.array_equal(out[0], np.eye(4))


def test_rotation_through_half_turn_is_unchanged():
    """Quaternion components flip sign past 180°; the tangent-space mean does not care."""
    path = constant_velocity_path(60, np.eye(4), np.array([0.0, np.radians(6.0), 0.0]), np.zeros(3))
    q = Rotation.from_matrix(path[:, :3, :3]).as_quat()
    assert (np.sign(q[:, 3]) != np.sign(q[0, 3])).any() or (q[:, 3] < 0.1).any()
    assert np.abs(smooth_poses(path, 2.0) - path).max() < 1e-12


def test_end_frames_are_kept_and_noise_is_reduced():
    rng = np.random.default_rng(0)
    truth = constant_velocity_path(80, np.eye(4), np.array([0.0, 0.02, 0.0]), np.array([0.03, 0.0, 0.01]))
    noisy = truth.copy()
    noisy[1:, :3, 3] += rng.normal(0, 0.01, (79, 3))
    noisy[1:, :3, :3] = noisy[1:, :3, :3] @ Rotation.from_rotvec(rng.normal(0, np.radians(0.5), (79, 3))).as_matrix()
    out = smooth_poses(noisy, 2.0)
    assert np.abs(out[0] - noisy[0]).max() < 1e-12 and np.abs(out[-1] - noisy[-1]).max() < 1e-12
    rot_in, pos_in = pose_errors(noisy, truth)
    rot_out, pos_out = pose_errors(out, truth)
    assert rot_out[1:-1].mean() < 0.6 * rot_in[1:-1].mean()
    assert pos_out[1:-1].mean() < 0.6 * pos_in[1:-1].mean()
    assert np.allclose(out[:, :3, :3] @ out[:, :3, :3].transpose(0, 2, 1), np.eye(3))


def test_off_and_short_inputs_return_copies():
    path = constant_velocity_path(5, np.eye(4), np.array([0.1, 0, 0]), np.array([0, 0, 1.0]))
    for out in (smooth_poses(path, 0.0), smooth_poses(path[:2], 3.0)):
        assert np.array_equal(out, path[: len(out)]) and out is not path


def test_gaussian_weights():
    w = gaussian_weights(2.0)
    assert len(w) == 13 and np.isclose(w.sum(), 1.0) and np.allclose(w, w[::-1])
    assert w.argmax() == 6
