"""SpaceTimePilot conditions: camera rows against analytic poses, the 81-frame window policy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from models.spacetimepilot_conditions import WINDOW, WindowError, plan_window, source_camera_rows, target_camera_rows


def _pose(rotvec, t) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    m[:3, 3] = t
    return m


def test_target_rows_are_relative_to_the_first_camera():
    """c2w_i = A · P_i for any world anchor A gives rows P_i[:3] (P_0 = identity), every 4th frame."""
    rng = np.random.default_rng(0)
    relative = [np.eye(4)] + [_pose(rng.normal(size=3) * 0.2, rng.normal(size=3)) for _ in range(80)]
    anchor = _pose([0.3, -0.5, 0.2], [4.0, -1.0, 2.0])
    rows = target_camera_rows(np.stack([anchor @ p for p in relative]))
    assert rows.shape == (21, 12) and rows.dtype == np.float32
    np.testing.assert_allclose(rows, np.stack([p[:3].reshape(12) for p in relative[::4]]), atol=1e-5)
    np.testing.assert_allclose(rows[0], np.eye(4)[:3].reshape(12), atol=1e-6)
    assert rows[1, 3] == pytest.approx(relative[4][0, 3], abs=1e-5)  # t_x sits at index 3 (row-major [3, 4])


def test_source_rows_right_multiplied_and_normalised():
    """A rotated camera sliding along world x: c2w_i @ inv(c2w_0) = [I | t_i - t_0] in WORLD axes, scaled to max 1."""
    rot = [0.0, 0.6, 0.0]
    c2w = np.stack([_pose(rot, [0.05 * i, 0.0, 1.0]) for i in range(81)])
    rows = source_camera_rows(np.linalg.inv(c2w))
    want = np.zeros((21, 3, 4))
    want[:, :, :3] = np.eye(3)
    want[:, 0, 3] = np.arange(0, 81, 4) / 80  # largest |t| is 0.05 * 80 = 4 -> 1
    np.testing.assert_allclose(rows, want.reshape(21, 12), atol=1e-6)


def test_source_rows_small_motion_is_not_scaled():
    c2w = np.stack([_pose([0, 0, 0], [0.0001 * i, 0, 0]) for i in range(81)])
    rows = source_camera_rows(np.linalg.inv(c2w))
    assert rows[-1, 3] == pytest.approx(0.008, abs=1e-7)


def test_window_pads_a_short_request():
    win = plan_window(np.array([5, 6, 7, 7, 6]), n_source=30)
    assert win.requested == 5 and len(win.target_index) == WINDOW
    assert win.start == 0 and win.source_frames[:3].tolist() == [0, 1, 2] and win.source_frames[29:].tolist() == [29] * 52
    assert win.target_times[:5].tolist() == [5, 6, 7, 7, 6] and np.all(win.target_times[5:] == 6)
    assert "76 not written" in win.describe()


def test_window_on_a_short_source_repeats_its_last_frame():
    win = plan_window(np.arange(12), n_source=12)
    assert win.source_frames[11:].tolist() == [11] * 70 and win.target_times[11] == 11


def test_window_starts_at_the_first_frame_shown():
    win = plan_window(np.array([50, 60, 70]), n_source=300)
    assert win.start == 50 and win.target_times[:3].tolist() == [0, 10, 20] and win.source_frames[-1] == 130


def test_window_late_in_a_long_source():
    idx = 200 - np.arange(81)  # reverse over source frames 120..200 of 201
    win = plan_window(idx, n_source=201)
    assert win.start == 120 and win.source_frames[-1] == 200 and win.target_times[0] == 80


def test_window_refusals_name_the_fix():
    with pytest.raises(WindowError, match="--num_frames 81 --disable_adaptive_frame"):
        plan_window(np.arange(121), n_source=121)
    with pytest.raises(WindowError, match="source frames 0..99"):
        plan_window(np.linspace(0, 99, 81).round().astype(int), n_source=100)
