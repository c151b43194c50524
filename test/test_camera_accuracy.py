"""camera_errors: known similarity transforms are undone exactly, known noise gives its known error."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from geometry.camera_accuracy import camera_errors
from trajectories import orbit_c2w

N = 24


def _requested() -> np.ndarray:
    return orbit_c2w(np.linspace(0, 10, N), np.linspace(0, 40, N), np.full(N, 2.0))


def _in_other_frame(req: np.ndarray, s: float, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """What an estimator in another world frame and scale reports: x_est = R^T (x_req - t) / s."""
    est = req.copy()
    est[:, :3, :3] = R.T @ req[:, :3, :3]
    est[:, :3, 3] = (req[:, :3, 3] - t) @ R / s
    return est


def test_similarity_is_undone_exactly():
    req = _requested()
    R = Rotation.from_rotvec([0.3, -1.2, 0.5]).as_matrix()
    err = camera_errors(_in_other_frame(req, 0.37, R, np.array([4.0, -2.0, 1.0])), req)
    np.testing.assert_allclose(err.rotation_deg, 0.0, atol=1e-5)
    np.testing.assert_allclose(err.translation, 0.0, atol=1e-9)
    assert abs(err.alignment.scale - 0.37) < 1e-12
    np.testing.assert_allclose(err.alignment.rotation, R, atol=1e-12)


def test_rotation_noise_gives_its_angle():
    req = _requested()
    rng = np.random.default_rng(1)
    angles = rng.uniform(0.5, 5.0, N // 2).repeat(2)
    axes = rng.normal(size=(N // 2, 3)).repeat(2, axis=0)
    signs = np.tile([1.0, -1.0], N // 2)  # +/- pairs about one axis: their chordal mean is the identity
    noise = Rotation.from_rotvec(axes / np.linalg.norm(axes, axis=1, keepdims=True)
                                 * np.deg2rad(angles * signs)[:, None]).as_matrix()
    noisy = req.copy()
    noisy[:, :3, :3] = noise @ req[:, :3, :3]
    R = Rotation.from_rotvec([1.0, 0.2, -0.4]).as_matrix()
    err = camera_errors(_in_other_frame(noisy, 2.5, R, np.array([0.1, 0.2, 0.3])), req)
    np.testing.assert_allclose(err.rotation_deg, angles, atol=1e-6)
    np.testing.assert_allclose(err.translation, 0.0, atol=1e-9)


def test_translation_noise_gives_its_closed_form_error():
    req = orbit_c2w(np.zeros(N), np.linspace(-30, 30, N), np.full(N, 2.0))  # centres in the y = 0 plane
    eps = 0.05
    noisy = req.copy()
    noisy[:, 1, 3] += eps * np.tile([1.0, -1.0], N // 2)  # orthogonal to the path, zero mean
    err = camera_errors(_in_other_frame(noisy, 3.0, np.eye(3), np.zeros(3)), req)
    c = req[:, :3, 3] - req[:, :3, 3].mean(0)
    S2 = np.sum(c * c)
    s = S2 / (S2 + N * eps**2)  # the least-squares scale shrinks by the noise energy
    expected = np.sqrt((1 - s) ** 2 * np.sum(c * c, axis=1) + (s * eps) ** 2) / np.sqrt(S2 / N)
    np.testing.assert_allclose(err.translation, expected, rtol=1e-9)
    np.testing.assert_allclose(err.rotation_deg, 0.0, atol=1e-5)


def test_static_camera_has_no_translation_scale():
    req = orbit_c2w(np.zeros(N), np.linspace(0, 20, N), np.ones(N), rotation_only=True)
    err = camera_errors(req, req)
    assert np.isnan(err.translation).all() and err.path_scale == 0.0
    np.testing.assert_allclose(err.rotation_deg, 0.0, atol=1e-5)


def test_rotation_error_is_the_geodesic_angle():
    a, b = Rotation.random(N, random_state=3), Rotation.random(N, random_state=4)
    req = np.tile(np.eye(4), (N, 1, 1))
    est = req.copy()
    req[:, :3, :3], est[:, :3, :3] = a.as_matrix(), b.as_matrix()
    err = camera_errors(est, req)
    R = err.alignment.rotation
    expected = (a.inv() * Rotation.from_matrix(R) * b).magnitude()
    np.testing.assert_allclose(err.rotation_deg, np.rad2deg(expected), atol=1e-6)


@pytest.mark.parametrize("motion", ["static", "backwards"])
def test_estimate_without_a_positive_scale_scores_as_not_moving(motion):
    req = _requested()
    est = req.copy()
    if motion == "static":
        est[:, :3, 3] = 0.0
    else:
        est[:, :3, 3] = -req[:, :3, 3]  # the camera runs the path backwards: the fitted scale would be negative
    err = camera_errors(est, req)
    assert err.alignment.scale == 0.0
    c = req[:, :3, 3] - req[:, :3, 3].mean(0)
    np.testing.assert_allclose(err.translation, np.linalg.norm(c, axis=1) / err.path_scale, rtol=1e-9)
    np.testing.assert_allclose(np.sqrt(np.mean(err.translation**2)), 1.0, rtol=1e-9)
    np.testing.assert_allclose(err.rotation_deg, 0.0, atol=1e-5)
