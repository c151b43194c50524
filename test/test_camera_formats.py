"""Camera formats of other tools: round trips, and projections of known points under each tool's own
conventions (written out here independently: OpenGL axes, COLMAP quaternions, +0.5 pixel centres)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from typer.testing import CliRunner

from geometry.cache import GeometryCache, save_geometry
from pipeline.cli import app
from trajectories import CameraPath, MatrixTrajectory, TrajectoryError, read_trajectory
from trajectories.formats import CameraSet, format_cameras, read_cameras

W, H = 832, 480


def rigid(rng) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = Rotation.random(random_state=rng).as_matrix()
    m[:3, 3] = rng.normal(size=3) * 2
    return m


def camera_set(n: int = 6, centred: bool = False, seed: int = 0) -> CameraSet:
    rng = np.random.default_rng(seed)
    K = np.zeros((n, 3, 3))
    f = rng.uniform(300, 900, n)
    K[:, 0, 0], K[:, 1, 1] = f, f if centred else f * rng.uniform(0.9, 1.1, n)
    K[:, 0, 2], K[:, 1, 2] = (W / 2 - 0.5, H / 2 - 0.5) if centred else (rng.uniform(380, 440, n), rng.uniform(220, 260, n))
    K[:, 2, 2] = 1
    return CameraSet(np.stack([rigid(rng) for _ in range(n)]), K, W, H, 30.0, tuple(f"im_{i}.png" for i in range(n)))


def write(cameras: CameraSet, path, fmt=None):
    for target, text in format_cameras(cameras, path, fmt).items():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def points_in_front(c2w: np.ndarray, rng) -> np.ndarray:
    cam = rng.uniform([-1, -1, 2], [1, 1, 5], (8, 3))
    return cam @ c2w[:3, :3].T + c2w[:3, 3]


def opencv_pixels(cameras: CameraSet, i: int, X: np.ndarray) -> np.ndarray:
    w2c = np.linalg.inv(cameras.c2w[i])
    p = X @ w2c[:3, :3].T + w2c[:3, 3]
    uv = p @ cameras.K[i].T
    return uv[:, :2] / uv[:, 2:]


@pytest.mark.parametrize("name, centred, intrinsics", [
    ("path_tcw.txt", False, False), ("camera_path.json", True, True), ("transforms.json", False, True), ("colmap", False, True),
])
def test_round_trip(tmp_path, name, centred, intrinsics):
    cams = camera_set(centred=centred)
    write(cams, tmp_path / name)
    back = read_cameras(tmp_path / name)
    np.testing.assert_allclose(back.c2w, cams.c2w, atol=1e-10)
    if intrinsics:
        np.testing.assert_allclose(back.K, cams.K, atol=1e-9)
        assert (back.width, back.height) == (W, H)
    else:
        assert back.K is None
    if name in ("transforms.json", "colmap"):
        assert back.names == cams.names


def test_colmap_projects_known_points(tmp_path):
    cams = camera_set(seed=1)
    write(cams, tmp_path / "model")
    cam_lines = [line.split() for line in (tmp_path / "model" / "cameras.txt").read_text().splitlines() if not line.startswith("#")]
    img_lines = [line for line in (tmp_path / "model" / "images.txt").read_text().splitlines() if not line.startswith("#")]
    rng = np.random.default_rng(2)
    for i in range(len(cams)):
        qw, qx, qy, qz, tx, ty, tz = map(float, img_lines[2 * i].split()[1:8])
        # Hamilton unit quaternion -> rotation, written out (the world-to-camera rotation in COLMAP)
        R = np.array([[1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qz * qw), 2 * (qx * qz + qy * qw)],
                      [2 * (qx * qy + qz * qw), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qx * qw)],
                      [2 * (qx * qz - qy * qw), 2 * (qy * qz + qx * qw), 1 - 2 * (qx * qx + qy * qy)]])
        assert cam_lines[i][1] == "PINHOLE" and img_lines[2 * i + 1] == ""
        fx, fy, cx, cy = map(float, cam_lines[i][4:8])
        X = points_in_front(cams.c2w[i], rng)
        p = X @ R.T + [tx, ty, tz]
        colmap_uv = np.c_[fx * p[:, 0] / p[:, 2] + cx, fy * p[:, 1] / p[:, 2] + cy]
        np.testing.assert_allclose(colmap_uv, opencv_pixels(cams, i, X) + 0.5, atol=1e-7)  # COLMAP: centres at +0.5


@pytest.mark.parametrize("name", ["transforms.json", "camera_path.json"])
def test_nerfstudio_projects_known_points_in_opengl_axes(tmp_path, name):
    cams = camera_set(centred=name == "camera_path.json", seed=3)
    write(cams, tmp_path / name)
    data = json.loads((tmp_path / name).read_text())
    rng = np.random.default_rng(4)
    entries = data["frames"] if name == "transforms.json" else data["camera_path"]
    for i, entry in enumerate(entries):
        if name == "transforms.json":
            c2w_gl = np.array(entry["transform_matrix"])
            fx, fy, cx, cy = entry["fl_x"], entry["fl_y"], entry["cx"], entry["cy"]
        else:
            c2w_gl = np.array(entry["camera_to_world"]).reshape(4, 4)
            fx = fy = (data["render_height"] / 2) / np.tan(np.deg2rad(entry["fov"]) / 2)
            cx, cy = data["render_width"] / 2, data["render_height"] / 2
        X = points_in_front(cams.c2w[i], rng)
        w2c = np.linalg.inv(c2w_gl)
        p = X @ w2c[:3, :3].T + w2c[:3, 3]
        assert (p[:, 2] < 0).all()  # OpenGL: the camera looks down -z
        uv = np.c_[fx * p[:, 0] / -p[:, 2] + cx, fy * -p[:, 1] / -p[:, 2] + cy]  # and y points up
        np.testing.assert_allclose(uv, opencv_pixels(cams, i, X) + 0.5, atol=1e-7)


def test_camera_path_json_is_a_trajectory(tmp_path):
    cams = camera_set(centred=True, seed=5)
    write(cams, tmp_path / "camera_path.json")
    traj = read_trajectory(tmp_path / "camera_path.json")
    assert isinstance(traj, MatrixTrajectory)
    np.testing.assert_allclose(traj.w2c, np.linalg.inv(cams.c2w), atol=1e-10)


@pytest.mark.parametrize("edit, words", [
    (lambda d: d.pop("render_height"), "not a nerfstudio camera path"),
    (lambda d: d["camera_path"][1].update(camera_to_world=(np.diag([1, 1, -1, 1.0]) @ np.eye(4)).reshape(16).tolist()),
     "determinant"),
    (lambda d: d.update(camera_path=[]), "camera_path is empty"),
])
def test_camera_path_errors_name_the_file(tmp_path, edit, words):
    write(camera_set(centred=True), tmp_path / "camera_path.json")
    data = json.loads((tmp_path / "camera_path.json").read_text())
    edit(data)
    (tmp_path / "camera_path.json").write_text(json.dumps(data))
    with pytest.raises(TrajectoryError) as info:
        read_trajectory(tmp_path / "camera_path.json")
    assert str(tmp_path / "camera_path.json") in str(info.value) and words in str(info.value)


def test_cli_convert_round_trip_and_errors(tmp_path):
    cams = camera_set(seed=6)
    write(cams, tmp_path / "in_tcw.txt")
    runner = CliRunner()
    result = runner.invoke(app, ["cameras", "convert", str(tmp_path / "in_tcw.txt"), str(tmp_path / "model"),
                                 "--width", "640", "--height", "360", "--vfov", "50"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["cameras", "convert", str(tmp_path / "model"), str(tmp_path / "back.txt")]).exit_code == 0
    np.testing.assert_allclose(read_trajectory(tmp_path / "back.txt").w2c, np.linalg.inv(cams.c2w), atol=1e-10)
    model = read_cameras(tmp_path / "model")
    np.testing.assert_allclose(model.K[0, 1, 1], 180 / np.tan(np.deg2rad(25)))
    bad = runner.invoke(app, ["cameras", "convert", str(tmp_path / "in_tcw.txt"), str(tmp_path / "t.json")])
    assert bad.exit_code == 1 and "needs intrinsics" in bad.output and "Traceback" not in bad.output


def test_cli_export_puts_both_in_the_first_source_camera_frame(tmp_path):
    rng = np.random.default_rng(7)
    n = 4
    source_c2w = np.stack([rigid(rng) for _ in range(n)])
    K = np.array([[200.0, 0, 159.5], [0, 200.0, 89.5], [0, 0, 1]])
    run = tmp_path / "work" / "clip" / "renders" / "orbit"
    save_geometry(tmp_path / "work" / "clip" / "geometry" / "geometry.npz",
                  GeometryCache(np.full((n, 180, 320), 2.0, np.float32), np.linalg.inv(source_c2w), np.tile(K, (n, 1, 1))))
    target_c2w = source_c2w[:1] @ np.stack([rigid(rng) for _ in range(5)])
    CameraPath(target_c2w, np.tile(K * [[2], [2], [1]], (5, 1, 1)), 640, 360, 24.0, np.zeros(5, np.int64)).save(run / "cameras.json")
    result = CliRunner().invoke(app, ["cameras", "export", str(run), "--format", "tcw"])
    assert result.exit_code == 0, result.output
    source = read_trajectory(run / "cameras_tcw" / "source" / "source_tcw.txt")
    target = read_trajectory(run / "cameras_tcw" / "target" / "target_tcw.txt")
    np.testing.assert_allclose(source.w2c[0], np.eye(4), atol=1e-10)
    np.testing.assert_allclose(target.w2c, np.linalg.inv(np.linalg.inv(source_c2w[0]) @ target_c2w), atol=1e-9)
    result = CliRunner().invoke(app, ["cameras", "export", str(run), "--format", "transforms"])
    assert result.exit_code == 0, result.output
    frames = json.loads((run / "cameras_transforms" / "source" / "transforms.json").read_text())["frames"]
    assert len(frames) == n and frames[0]["w"] == 320 and frames[0]["file_path"] == "images/source_00000.png"
    missing = CliRunner().invoke(app, ["cameras", "export", str(tmp_path), "--format", "colmap"])
    assert missing.exit_code == 1 and "cameras.json" in missing.output
