"""Trajectory files -> camera paths: reference parity, exact interpolation, orbit geometry, presets, I/O."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from trajectories import (
    CameraPath,
    PathOptions,
    adaptive_frame_count,
    find_trajectory,
    foreground_depth,
    interpolate_keys,
    list_presets,
    load_trajectory,
    make_camera_path,
    orbit_c2w,
    parse_trajectory,
)

K = np.array([[500.0, 0.0, 416.0], [0.0, 480.0, 240.0], [0.0, 0.0, 1.0]])
ABSOLUTE = dict(radius="absolute", adaptive_frames=False)


def rigid(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = np.eye(4)
    m[:3, :3] = Rotation.random(random_state=rng).as_matrix()
    m[:3, 3] = rng.normal(size=3)
    return m


def path_for(text: str, n_source: int = 49, source_c2w: np.ndarray | None = None, **options) -> CameraPath:
    if source_c2w is None:
        source_c2w = np.tile(np.eye(4), (n_source, 1, 1))
    return make_camera_path(parse_trajectory(text), source_c2w, K, 832, 480, 24.0, PathOptions(**options))


@pytest.fixture(scope="module")
def reference(shared_dir):
    data = np.load(shared_dir / "fixtures" / "trajectories_reference.npz")
    return {k: data[k] for k in data.files}


def test_reference_mode_matches_fixture(reference):
    files = json.loads(str(reference["files"]))
    source0 = rigid(0)
    checked = 0
    for key, expected in reference.items():
        if key == "files":
            continue
        name, n, rot = key.rsplit(".", 2)
        n, rotation_only = int(n[1:]), rot == "rot1"
        spec = parse_trajectory(files[name], name)
        options = PathOptions(n_frames=n, interpolation="reference", rotation_only=rotation_only, **ABSOLUTE)
        identity = make_camera_path(spec, np.tile(np.eye(4), (n, 1, 1)), K, 832, 480, 24.0, options)
        np.testing.assert_allclose(identity.c2w, expected, atol=1e-6, err_msg=key)
        moved = make_camera_path(spec, np.tile(source0, (n, 1, 1)), K, 832, 480, 24.0, options)
        np.testing.assert_allclose(moved.c2w, source0 @ expected, atol=1e-6, err_msg=key)
        checked += 1
    assert checked == 30


def test_reference_presets_keep_the_reference_numbers(reference):
    files = json.loads(str(reference["files"]))
    presets = list_presets()
    for name in ("x_y_circle_cycle", "zoom_out_in"):
        ours, theirs = load_trajectory(presets[name]), parse_trajectory(files[name])
        for line in ("pitch", "yaw", "displacement"):
            np.testing.assert_array_equal(getattr(ours, line), getattr(theirs, line))


def test_exact_interpolation_passes_through_keys_without_overshoot():
    keys = np.array([0.0, 10.0, 10.0, 25.0, -5.0, -5.0, 3.0])
    knots = np.linspace(0, 1, len(keys))
    np.testing.assert_allclose(interpolate_keys(keys, knots), keys, atol=1e-12)
    dense = np.linspace(0, 1, 2001)
    values = interpolate_keys(keys, dense)
    for a, b, lo, hi in zip(knots[:-1], knots[1:], keys[:-1], keys[1:]):
        seg = values[(dense >= a) & (dense <= b)]
        assert seg.min() >= min(lo, hi) - 1e-9 and seg.max() <= max(lo, hi) + 1e-9
    assert values[0] == keys[0] and values[-1] == keys[-1]
    smooth = interpolate_keys(keys, knots, mode="reference")
    assert np.abs(smooth - keys).max() > 0.5  # the reference spline smooths: the modes really differ


def test_exact_path_starts_exactly_at_the_source_view():
    source = np.stack([rigid(i) for i in range(49)])
    text = "0 10 20 10 0 -10 -20 -10 0\n0 5 0 -5 0 5 0 -5 0\n1 1.2 1 0.8 1\n"
    path = path_for(text, source_c2w=source, **ABSOLUTE)
    np.testing.assert_array_equal(path.c2w[0], source[0])
    ref = path_for(text, source_c2w=source, interpolation="reference", **ABSOLUTE)
    assert np.abs(ref.c2w[0] - source[0]).max() > 1e-4


def test_orbit_pose_geometry():
    rng = np.random.default_rng(1)
    pitch, yaw, r = rng.uniform(-60, 60, 50), rng.uniform(-170, 170, 50), rng.uniform(0.5, 3, 50)
    c2w = orbit_c2w(pitch, yaw, r)
    rot = c2w[:, :3, :3]
    np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-12)
    oracle = Rotation.from_euler("YX", np.stack([yaw, -pitch], -1), degrees=True).as_matrix()
    np.testing.assert_allclose(rot, oracle, atol=1e-12)
    centre = np.stack([np.zeros(50), np.zeros(50), r, np.ones(50)], -1)
    in_cam = np.einsum("nij,nj->ni", np.linalg.inv(c2w), centre)[:, :3]
    np.testing.assert_allclose(in_cam[:, :2], 0.0, atol=1e-12)
    np.testing.assert_allclose(in_cam[:, 2], r, atol=1e-12)
    up, left = orbit_c2w([10.0], [0.0], [1.0]), orbit_c2w([0.0], [10.0], [1.0])
    assert up[0, 1, 3] < 0 and abs(up[0, 0, 3]) < 1e-12  # +pitch: camera moves up (-y)
    assert left[0, 0, 3] < 0 and abs(left[0, 1, 3]) < 1e-12  # +yaw: camera moves left (-x)


def test_orbit_path_keeps_the_subject_at_the_image_centre():
    source0 = rigid(3)
    depth = 2.5
    path = make_camera_path(
        load_trajectory(list_presets()["spiral"]), np.tile(source0, (49, 1, 1)), K, 832, 480, 24.0,
        PathOptions(radius="scene"), scene_depth=depth,
    )
    subject = source0 @ np.array([0.0, 0.0, depth, 1.0])
    cam = np.einsum("nij,j->ni", path.w2c, subject)[:, :3]
    pix = np.einsum("nij,nj->ni", path.intrinsics, cam)
    np.testing.assert_allclose(pix[:, :2] / pix[:, 2:], np.broadcast_to(K[:2, 2], (len(path), 2)), atol=1e-6)
    assert (cam[:, 2] > 0).all()


def test_dolly_moves_along_the_optical_axis():
    source0 = rigid(4)
    path = make_camera_path(
        parse_trajectory("0 0\n0\n0 0.5 -1\n"), np.tile(source0, (21, 1, 1)), K, 832, 480, 24.0,
        PathOptions(interpolation="exact", radius="scene"), scene_depth=2.0,
    )
    rel = np.linalg.inv(source0) @ path.c2w
    np.testing.assert_allclose(rel[:, :3, :3], np.broadcast_to(np.eye(3), (21, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(rel[:, :2, 3], 0.0, atol=1e-12)
    expected = interpolate_keys(np.array([0.0, 0.5, -1.0]), np.linspace(0, 1, 21)) * 2.0
    np.testing.assert_allclose(rel[:, 2, 3], expected, atol=1e-12)
    assert rel[10, 2, 3] == pytest.approx(1.0)  # + moves forward (scene units = 0.5 x depth 2)


def test_rotation_only_drops_orbit_translation_but_keeps_dolly():
    text = "0 10 -5\n0 20 30\n1 2\n"
    full = path_for(text, **ABSOLUTE)
    rot = path_for(text, rotation_only=True, **ABSOLUTE)
    np.testing.assert_array_equal(rot.c2w[:, :3, :3], full.c2w[:, :3, :3])
    np.testing.assert_array_equal(rot.c2w[:, :3, 3], 0.0)
    assert np.abs(full.c2w[:, :3, 3]).max() > 0.1
    dolly = path_for("0\n0\n0 1\n", rotation_only=True, **ABSOLUTE)
    assert dolly.c2w[-1, 2, 3] == 1.0


def test_relative_to_source_rides_on_the_source_camera():
    source = np.stack([rigid(10 + i) for i in range(30)])
    still = "0\n0\n0\n"
    anchored = path_for(still, source_c2w=source, **ABSOLUTE)
    np.testing.assert_array_equal(anchored.c2w, np.broadcast_to(source[0], (30, 4, 4)))
    riding = path_for(still, source_c2w=source, relative_to_source=True, freeze_frame=7, freeze_repeat=5, **ABSOLUTE)
    np.testing.assert_allclose(riding.c2w, source[riding.source_index], atol=1e-12)
    orbit = "0 5\n0 30\n1\n"
    riding = path_for(orbit, source_c2w=source, relative_to_source=True, **ABSOLUTE)
    pose = np.linalg.inv(source[0]) @ path_for(orbit, source_c2w=source, **ABSOLUTE).c2w
    np.testing.assert_allclose(riding.c2w, source @ pose, atol=1e-12)


def test_scene_radius_needs_a_depth():
    with pytest.raises(ValueError, match="foreground_depth"):
        path_for("0\n0 10\n1\n", radius="scene")


def test_adaptive_frame_count_bounds():
    assert adaptive_frame_count(np.array([0.0, 40.0]), np.array([0.0]), 49) == 121  # at least 121
    assert adaptive_frame_count(np.array([0.0, 40.0]), np.array([0.0]), 200) == 134  # floor(40/0.3)+1
    assert adaptive_frame_count(np.array([0.0, 40.0]), np.array([0.0]), 130) == 130
    yaw = np.array([0.0, 100.0, 0.0])  # total 200
    assert adaptive_frame_count(np.array([0.0, 50.0]), yaw, 49) == 251  # ceil(200/0.8)+1
    assert adaptive_frame_count(np.array([0.0, 50.0]), yaw, 1000) == 667  # floor(200/0.3)+1
    assert adaptive_frame_count(np.zeros(3), np.zeros(2), 49) == 49  # no rotation keeps n
    path = path_for("0\n0 100 0\n1\n", adaptive_frames=True, radius="absolute")
    assert len(path) == 251 and path.source_index[0] == 0 and path.source_index[-1] == 48


def test_every_preset_parses_and_yields_a_finite_path():
    presets = list_presets()
    required = {"x_y_circle_cycle", "zoom_out_in", "orbit_left", "orbit_right", "arc_up", "arc_down",
                "dolly_in", "dolly_out", "pan_tilt", "spiral", "bullet_time_orbit"}
    assert required <= set(presets)
    for name, path in presets.items():
        assert path.read_text().startswith("#"), f"{name} lacks a header comment"
        spec = load_trajectory(path)
        cams = make_camera_path(spec, np.tile(np.eye(4), (49, 1, 1)), K, 832, 480, 24.0, PathOptions(), scene_depth=3.0)
        assert np.isfinite(cams.c2w).all() and len(cams) >= 49, name
        np.testing.assert_allclose(cams.c2w[0], np.eye(4), atol=1e-12, err_msg=name)  # every preset starts at the source view
    assert (make_camera_path(load_trajectory(presets["pan_tilt"]), np.tile(np.eye(4), (49, 1, 1)), K, 832, 480, 24.0,
                             PathOptions(), scene_depth=3.0).c2w[:, :3, 3] == 0).all()
    assert find_trajectory("orbit_left") == presets["orbit_left"] == find_trajectory("orbit_left.txt")
    with pytest.raises(FileNotFoundError, match="orbit_left"):
        find_trajectory("no_such_trajectory")


def test_cameras_json_round_trip(tmp_path):
    path = path_for("0 10\n0 -20 15\n1\n0 1 0.5\n", source_c2w=np.stack([rigid(i) for i in range(49)]), **ABSOLUTE)
    path.save(tmp_path / "cameras.json")
    back = CameraPath.load(tmp_path / "cameras.json")
    np.testing.assert_array_equal(back.c2w, path.c2w)
    np.testing.assert_array_equal(back.intrinsics, path.intrinsics)
    np.testing.assert_array_equal(back.source_index, path.source_index)
    assert (back.width, back.height, back.fps) == (832, 480, 24.0)


def test_foreground_depth_statistic():
    depth = np.full((40, 60), 10.0)
    depth[12:28, 20:40] = 2.0  # subject filling most of the central half
    assert foreground_depth(depth) == 2.0
    noisy = depth.copy()
    noisy[10:30, 15:25] = 0.05  # a third of the centre: unconfident near junk the confidence rejects
    noisy[0, 0], noisy[1, 1], noisy[20, 30] = np.inf, np.nan, -1.0
    conf = np.ones_like(depth)
    conf[10:30, 15:25] = 0.0
    assert foreground_depth(noisy, conf) == 2.0
    assert foreground_depth(noisy) == 0.05
    centre = np.full((40, 60), np.nan)
    centre[:5] = 4.0  # nothing valid in the centre: the whole frame is used
    assert foreground_depth(centre) == 4.0
    with pytest.raises(ValueError, match="no finite positive"):
        foreground_depth(np.zeros((8, 8)))


def test_largest_displacement_gives_a_finite_path():
    """The parse-time bound keeps every camera finite, even with a large scene scale."""
    from trajectories.spec import MAX_DISPLACEMENT

    text = f"0 90\n0 -180\n{MAX_DISPLACEMENT:g} {-MAX_DISPLACEMENT:g}\n"
    path = make_camera_path(parse_trajectory(text), np.tile(np.eye(4), (9, 1, 1)), K, 64, 48, 8.0,
                            PathOptions(adaptive_frames=False), scene_depth=1e3)
    assert np.isfinite(path.c2w).all()
    r = -MAX_DISPLACEMENT * 1e3  # last key: pitch 90, yaw -180 -> T = (0, -r, r) (trajectories.orbit)
    np.testing.assert_allclose(path.c2w[-1, :3, 3], [0.0, -r, r], rtol=1e-12, atol=1e-6)


@pytest.mark.parametrize("field", ["c2w", "intrinsics"])
def test_camera_path_rejects_non_finite_cameras(field):
    good = path_for("0 10\n0 20\n1\n", **ABSOLUTE)
    values = {"c2w": good.c2w.copy(), "intrinsics": good.intrinsics.copy()}
    values[field][7, 0, 2] = np.inf
    with pytest.raises(ValueError, match=rf"{field}.*frame 7.*not finite"):
        CameraPath(c2w=values["c2w"], intrinsics=values["intrinsics"], width=good.width, height=good.height,
                   fps=good.fps, source_index=good.source_index)


def test_huge_scene_scale_is_refused_before_rendering():
    with pytest.raises(ValueError, match="not finite"):
        make_camera_path(parse_trajectory("0 10\n0 20\n1e4\n"), np.tile(np.eye(4), (9, 1, 1)), K, 64, 48, 8.0,
                         PathOptions(adaptive_frames=False), scene_depth=1e306)


def test_adaptive_count_is_capped_by_max_frames():
    """10,000 keyframes of +-20 degrees: the adaptive count (ceil(total / 0.8) + 1) is capped."""
    from trajectories import output_frame_count

    yaw = " ".join(["20", "-20"] * 5000)
    spec = parse_trajectory(f"0\n{yaw}\n1\n")
    uncapped = math.ceil(40 * 9999 / 0.8) + 1
    free = output_frame_count(spec, 49, PathOptions(max_frames=10**6))
    assert (free.count, free.adaptive, free.capped) == (uncapped, uncapped, False)
    capped = output_frame_count(spec, 49, PathOptions())
    assert (capped.count, capped.adaptive, capped.capped) == (1000, uncapped, True)
    assert "1000 output frames" in capped.describe() and "--max_frames" in capped.describe()
    path = make_camera_path(spec, np.tile(np.eye(4), (49, 1, 1)), K, 64, 48, 8.0, PathOptions(max_frames=300),
                            scene_depth=1.0)
    assert len(path) == 300 and path.source_index[0] == 0 and path.source_index[-1] == 48
    with pytest.raises(ValueError, match="the source frames .* exceed --max_frames 1000"):
        output_frame_count(spec, 995, PathOptions(freeze_repeat=6))
    with pytest.raises(ValueError, match="max_frames"):
        PathOptions(n_frames=990, freeze_repeat=20)
