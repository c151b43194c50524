"""trajectory.png: frustum geometry and first-frame points against analytic values, and the image itself."""

from __future__ import annotations

import numpy as np
from PIL import Image

from geometry.cache import GeometryCache
from pipeline.trajectory_plot import first_frame_points, frustum_segments, plot_trajectory
from trajectories import orbit_c2w
from trajectories.camera_path import CameraPath


def test_frustum_corners_are_the_image_corners_at_depth():
    K = np.array([[100.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    c2w = orbit_c2w(np.zeros(1), np.array([90.0]), np.zeros(1), rotation_only=True)[0]  # looks along world +x
    c2w[:3, 3] = [1.0, 2.0, 3.0]
    seg = frustum_segments(c2w, K, 64, 48, 2.0)
    assert seg.shape == (8, 2, 3)
    np.testing.assert_allclose(seg[:4, 0], np.tile([1.0, 2.0, 3.0], (4, 1)))
    # Camera corner (-32/100*2, -24/50*2, 2) = (-0.64, -0.96, 2); camera x -> world -z, y -> y, z -> x.
    np.testing.assert_allclose(seg[0, 1], [1.0 + 2.0, 2.0 - 0.96, 3.0 + 0.64], atol=1e-12)
    np.testing.assert_allclose(seg[2, 1], [1.0 + 2.0, 2.0 + 0.96, 3.0 - 0.64], atol=1e-12)
    np.testing.assert_allclose(seg[4:, 0], seg[:4, 1])  # the rectangle joins consecutive corners
    np.testing.assert_allclose(seg[4:, 1], np.roll(seg[:4, 1], -1, axis=0))


def _geometry(n=3, h=12, w=16):
    depth = np.full((n, h, w), 2.0, np.float32)
    depth[0, :, :4] = 0.0  # invalid columns are left out
    K = np.array([[20.0, 0, (w - 1) / 2], [0, 20.0, (h - 1) / 2], [0, 0, 1]])
    return GeometryCache(depth=depth, extrinsics=np.tile(np.eye(4), (n, 1, 1)), intrinsics=np.tile(K, (n, 1, 1)))


def test_first_frame_points_lie_on_the_plane_and_subsample():
    geo = _geometry()
    colours = np.zeros((12, 16, 3), np.uint8)
    colours[..., 0] = np.arange(16)[None, :] * 10
    pts, rgb = first_frame_points(geo, colours, max_points=1000)
    assert len(pts) == 12 * 12
    np.testing.assert_allclose(pts[:, 2], 2.0)
    # x = (u - 7.5) / 20 * 2 for the valid columns u = 4..15, colour red = 10 u.
    np.testing.assert_allclose(pts[:, 0], ((rgb[:, 0] * 255 / 10) - 7.5) / 10, atol=1e-6)
    few, _ = first_frame_points(geo, None, max_points=10)
    assert len(few) == 10


def test_plot_is_written(tmp_path):
    n = 20
    c2w = orbit_c2w(np.zeros(n), np.linspace(0, 30, n), np.ones(n))
    K = np.tile(np.array([[40.0, 0, 31.5], [0, 40.0, 23.5], [0, 0, 1]]), (n, 1, 1))
    path = CameraPath(c2w, K, 64, 48, 10.0, np.zeros(n, np.int64))
    out = plot_trajectory(tmp_path / "trajectory.png", path, _geometry(), title="t")
    with Image.open(out) as img:
        assert img.size == (1100, 500) and img.format == "PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["trajectory.png"]
