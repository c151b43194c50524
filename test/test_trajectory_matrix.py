"""Per-frame matrix trajectories (InSpatio-World 1.5's target_tcw.txt), the zoom line and dolly_zoom."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from trajectories import (
    MatrixTrajectory,
    PathOptions,
    TrajectoryError,
    TrajectorySpec,
    format_matrix_trajectory,
    list_presets,
    make_camera_path,
    parse_matrix_trajectory,
    parse_trajectory,
    read_trajectory,
)

K = np.array([[500.0, 0.0, 416.0], [0.0, 480.0, 240.0], [0.0, 0.0, 1.0]])


def rigid(seed: int, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = np.eye(4)
    m[:3, :3] = Rotation.random(random_state=rng).as_matrix()
    m[:3, 3] = rng.normal(size=3) * scale
    return m


def project(w2c: np.ndarray, K_: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Pixels [N, P, 2] of world points [P, 3] through cameras w2c [N, 4, 4], K [N, 3, 3] (independent pinhole)."""
    cam = np.einsum("nij,pj->npi", w2c[:, :3, :3], points) + w2c[:, None, :3, 3]
    pix = np.einsum("nij,npj->npi", K_, cam)
    return pix[..., :2] / pix[..., 2:]


TCW_TEXT = """# target_tcw.txt: one OpenCV world-to-camera matrix per output frame, row-major
1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1
0.9998476951563913 0 -0.01745240643728351 0.02 0 1 0 0 0.01745240643728351 0 0.9998476951563913 -0.001 0 0 0 1

0.9993908270190958 0 -0.03489949670250097 0.04 0 1 0 0 0.03489949670250097 0 0.9993908270190958 -0.002 0 0 0 1  # frame 2
"""


def test_reference_tcw_file_loads_unchanged(tmp_path):
    path = tmp_path / "target_tcw.txt"
    path.write_text(TCW_TEXT)
    traj = read_trajectory(path)
    assert isinstance(traj, MatrixTrajectory) and len(traj) == 3
    assert traj.source == str(path) and traj.text == TCW_TEXT
    np.testing.assert_array_equal(traj.w2c[0], np.eye(4))
    assert traj.w2c[2, 0, 2] == -0.03489949670250097 and traj.w2c[2, 2, 3] == -0.002


def test_kind_is_told_by_name_or_first_line(tmp_path):
    # the same matrices under another name: the first line ends in 0 0 0 1
    (tmp_path / "path.txt").write_text(TCW_TEXT)
    assert isinstance(read_trajectory(tmp_path / "path.txt"), MatrixTrajectory)
    # a keyframe file whose pitch line has 16 keys stays a keyframe file
    sixteen = " ".join(str(v) for v in range(16))
    (tmp_path / "keys.txt").write_text(f"{sixteen}\n0\n1\n")
    assert isinstance(read_trajectory(tmp_path / "keys.txt"), TrajectorySpec)
    # a file named *_tcw.txt is a matrix file even when its first line is broken, so the error says so
    (tmp_path / "target_tcw.txt").write_text("0 10 20\n0\n1\n")
    with pytest.raises(TrajectoryError, match="holds 3 numbers, not 16"):
        read_trajectory(tmp_path / "target_tcw.txt")


def _line(m: np.ndarray) -> str:
    return " ".join(repr(float(v)) for v in m.reshape(16))


MIRROR = np.diag([1.0, 1.0, -1.0, 1.0])
SCALED = np.diag([1.001, 1.0, 1.0, 1.0])
NEARLY = np.eye(4)
NEARLY[0, 1] = 5e-5  # within the 1e-4 tolerance


@pytest.mark.parametrize(
    "second, words",
    [
        ("1 0 0 0 0 1 0 0 0 0 1 0 0 0 0", "holds 15 numbers, not 16"),
        ("1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1 0", "holds 17 numbers, not 16"),
        ("1 0 0 nan 0 1 0 0 0 0 1 0 0 0 0 1", "non-finite"),
        ("1 0 0 x 0 1 0 0 0 0 1 0 0 0 0 1", "not a number"),
        (_line(SCALED), "not orthonormal"),
        (_line(MIRROR), "determinant -1.0000"),
        ("1 0 0 0 0 1 0 0 0 0 1 0 0 0 1 1", "bottom row"),
    ],
)
def test_matrix_errors_name_file_and_line(tmp_path, second, words):
    path = tmp_path / "target_tcw.txt"
    path.write_text(f"# header\n{_line(np.eye(4))}\n{second}\n")
    with pytest.raises(TrajectoryError) as info:
        read_trajectory(path)
    assert str(info.value).startswith(f"{path}:3: ") and words in str(info.value)


def test_empty_matrix_file_and_tolerance():
    with pytest.raises(TrajectoryError, match="no matrix lines"):
        parse_matrix_trajectory("# nothing\n", "t")
    assert len(parse_matrix_trajectory(_line(NEARLY))) == 1


def test_format_round_trips_exactly():
    w2c = np.stack([rigid(s, 3.0) for s in range(5)])
    back = parse_matrix_trajectory(format_matrix_trajectory(w2c, "five cameras\nsecond line"))
    np.testing.assert_array_equal(back.w2c, w2c)


def test_matrix_path_projects_points_as_the_matrices_say():
    """World = the first source camera's frame: a point X there lands where K · w2c_i · X says."""
    source_c2w = np.stack([rigid(10 + s) for s in range(7)])
    w2c = np.stack([rigid(20 + i, 0.3) for i in range(11)])
    w2c[0] = np.eye(4)
    path = make_camera_path(parse_matrix_trajectory(format_matrix_trajectory(w2c)), source_c2w, K, 832, 480, 30.0)
    assert len(path) == 11 and path.fps == 30.0  # the line count sets the frame count, no adaptive count
    points_cam0 = np.random.default_rng(0).uniform([-1, -1, 2], [1, 1, 6], (9, 3))
    points_world = points_cam0 @ source_c2w[0, :3, :3].T + source_c2w[0, :3, 3]
    np.testing.assert_allclose(project(path.w2c, path.intrinsics, points_world),
                               project(w2c, np.repeat(K[None], 11, 0), points_cam0), atol=1e-7)
    np.testing.assert_allclose(path.c2w[0], source_c2w[0], atol=1e-12)  # identity = the first source view
    np.testing.assert_array_equal(path.source_index, np.round(np.linspace(0, 6, 11) + 1e-6).astype(int))


def test_matrix_path_ignores_frame_count_options():
    w2c = np.repeat(np.eye(4)[None], 5, 0)
    path = make_camera_path(parse_matrix_trajectory(format_matrix_trajectory(w2c)), np.tile(np.eye(4), (40, 1, 1)),
                            K, 832, 480, 24.0, PathOptions(n_frames=100, adaptive_frames=True))
    assert len(path) == 5


# --- zoom line ------------------------------------------------------------------------------------


def test_zoom_line_is_optional_and_named():
    assert parse_trajectory("0\n0\n1\n").zoom is None
    spec = parse_trajectory("0 5\n0\n1\nzoom 1 2 # comment\n0 1\n")
    np.testing.assert_array_equal(spec.zoom, [1, 2])
    np.testing.assert_array_equal(spec.time, [0, 1])
    spec = parse_trajectory("0\n0\n1\n0.5\nZoom: 0.5\n")
    np.testing.assert_array_equal(spec.zoom, [0.5])
    np.testing.assert_array_equal(spec.time, [0.5])


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("0\nzoom 2\n0\n1\n", 2, "misplaced or empty zoom line"),
        ("0\n0\n1\nzoom\n", 4, "misplaced or empty zoom line"),
        ("0\n0\n1\nzoom 1\nzoom 2\n", 5, "misplaced or empty zoom line"),
        ("0\n0\n1\nzoom 1 0\n", 4, "zoom key outside"),
        ("0\n0\n1\nzoom 1 -2\n", 4, "zoom key outside"),
        ("0\n0\n1\nzoom 1 inf\n", 4, "non-finite"),
    ],
)
def test_zoom_errors(text, line, words):
    with pytest.raises(TrajectoryError) as info:
        parse_trajectory(text, "z.txt")
    assert str(info.value).startswith(f"z.txt:{line}: ") and words in str(info.value)


def test_pure_zoom_is_the_analytic_homography():
    """Same pose, focal x z about the principal point: pixel' = H · pixel with H = [[z,0,(1-z)cx],[0,z,(1-z)cy],[0,0,1]]."""
    source0 = rigid(5)
    path = make_camera_path(parse_trajectory("0\n0\n0\nzoom 1 3\n"), np.tile(source0, (9, 1, 1)), K, 832, 480, 24.0,
                            PathOptions(radius="absolute", adaptive_frames=False))
    np.testing.assert_allclose(path.c2w, np.broadcast_to(source0, path.c2w.shape), atol=1e-12)
    zoom = np.linspace(1, 3, len(path))
    points = (source0 @ np.c_[np.random.default_rng(1).uniform([-2, -2, 1], [2, 2, 9], (20, 3)), np.ones(20)].T).T[:, :3]
    base = project(path.w2c[:1], K[None], points)[0]
    cx, cy = K[0, 2], K[1, 2]
    for i, z in enumerate(zoom):
        H = np.array([[z, 0, (1 - z) * cx], [0, z, (1 - z) * cy], [0, 0, 1]])
        expected = (np.c_[base, np.ones(len(base))] @ H.T)[:, :2]
        np.testing.assert_allclose(project(path.w2c[i : i + 1], path.intrinsics[i : i + 1], points)[0], expected, atol=1e-8)
    np.testing.assert_allclose(path.intrinsics[:, 0, 0], K[0, 0] * zoom, rtol=1e-12)
    np.testing.assert_allclose(path.intrinsics[:, :2, 2], np.broadcast_to(K[:2, 2], (len(path), 2)))


def test_cameras_json_carries_the_zoomed_intrinsics(tmp_path):
    path = make_camera_path(parse_trajectory("0\n0\n0\nzoom 1 2\n"), np.tile(np.eye(4), (5, 1, 1)), K, 832, 480, 24.0,
                            PathOptions(radius="absolute", adaptive_frames=False))
    path.save(tmp_path / "cameras.json")
    from trajectories import CameraPath

    np.testing.assert_allclose(CameraPath.load(tmp_path / "cameras.json").intrinsics[-1, 0, 0], 2 * K[0, 0])


def test_dolly_zoom_preset_keeps_the_subject_size_and_moves_the_background():
    source0 = rigid(6)
    depth = 2.0
    spec = read_trajectory(list_presets()["dolly_zoom"])
    path = make_camera_path(spec, np.tile(source0, (30, 1, 1)), K, 832, 480, 24.0, PathOptions(), scene_depth=depth)
    # a square of side 0.4 at the subject's depth, and one 3x further away
    square = np.array([[-0.2, -0.2], [0.2, -0.2], [0.2, 0.2], [-0.2, 0.2]])
    subject = np.c_[square, np.full(4, depth)]
    background = np.c_[square, np.full(4, 3 * depth)]

    def pixels(points_cam0):
        world = points_cam0 @ source0[:3, :3].T + source0[:3, 3]
        return project(path.w2c, path.intrinsics, world)

    sub, bg = pixels(subject), pixels(background)
    np.testing.assert_allclose(sub, np.broadcast_to(sub[0], sub.shape), atol=1e-6)
    width_bg = bg[:, 1, 0] - bg[:, 0, 0]
    assert width_bg[-1] > 1.4 * width_bg[0]  # background grows: 2 / (3 + 1) * 3 = 1.5x
    np.testing.assert_allclose(width_bg[-1] / width_bg[0], 1.5, rtol=1e-6)
