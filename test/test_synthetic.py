from pathlib import Path

import numpy as np
import pytest
import torch

from geometry.cache import load_geometry, save_geometry
from geometry.metrics import edge_band
from geometry.synthetic import (
    Box,
    SceneObject,
    Slats,
    SyntheticScene,
    Texture,
    _rotation,
    ground_truth,
    handheld_path,
    intrinsics_for,
    make_geometry,
    make_scene,
    make_source_clip,
)
from geometry.unproject import scale_intrinsics
from trajectories.camera_path import CameraPath

SCENE = SyntheticScene()
NAMES = [o.name for o in SCENE.objects]
PLANES = [NAMES.index(n) for n in ("floor", "wall", "board")]
FPS = 8.0


def object_named(name: str):
    return SCENE.objects[NAMES.index(name)]


def look_at(centre: np.ndarray, target: np.ndarray) -> np.ndarray:
    """c2w of a camera at ``centre`` whose optical axis passes through ``target`` (y roughly down)."""
    z = (target - centre) / np.linalg.norm(target - centre)
    x = np.cross(np.array([0.0, 1.0, 0.0]), z)
    x /= np.linalg.norm(x)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
    c2w[:3, 3] = centre
    return c2w


K_CENTRED = np.array([[40.0, 0, 16], [0, 40.0, 12], [0, 0, 1]])  # pixel (16, 12) lies on the optical axis


@pytest.fixture(scope="module")
def clip():
    return make_source_clip(SCENE, 9, 96, 66, FPS, handheld_path(9, FPS))


def test_sphere_depth_is_analytic():
    for name, t in (("sphere", 0.0), ("ball", 0.7)):
        rot, centre = object_named(name).pose(t)
        cam = np.array([0.2, -0.3, 0.1])
        view = SCENE.render(look_at(cam, centre), K_CENTRED, 32, 24, t)
        expected = np.linalg.norm(centre - cam) - object_named(name).shape.radius
        assert view.object_id[12, 16] == NAMES.index(name)
        assert view.depth[12, 16] == pytest.approx(expected, abs=1e-9)


def test_plane_depth_is_analytic():
    wall = object_named("wall")
    rot, pos = wall.pose(0.0)
    c2w = np.eye(4)
    c2w[:3, :3] = rot  # looking along the wall normal
    c2w[:3, 3] = [0.3, -0.5, 0.2]
    view = SCENE.render(c2w, intrinsics_for(64, 48), 64, 48, 0.0)
    on_wall = view.object_id == NAMES.index("wall")
    assert on_wall[0].all()
    np.testing.assert_allclose(view.depth[on_wall], rot[:, 2] @ (pos - c2w[:3, 3]), rtol=1e-12)


def test_z_buffer_keeps_the_nearest_object():
    """Full render == per-pixel nearest of single-object renders, with the ball in front of the sphere."""
    K = intrinsics_for(96, 64)
    t = 1.0
    full = SCENE.render(np.eye(4), K, 96, 64, t)
    singles = np.stack([SyntheticScene(objects=(o,)).render(np.eye(4), K, 96, 64, t).depth for o in SCENE.objects])
    np.testing.assert_array_equal(full.depth, singles.min(axis=0))
    np.testing.assert_array_equal(full.object_id, singles.argmin(axis=0))
    ball, sphere = NAMES.index("ball"), NAMES.index("sphere")
    overlap = np.isfinite(singles[ball]) & np.isfinite(singles[sphere])
    assert overlap.sum() > 50
    assert (full.object_id[overlap] == ball).all()


def test_moving_object_moves_and_others_do_not():
    ball = object_named("ball")
    (r0, p0), (r1, p1) = ball.pose(0.0), ball.pose(1.25)
    np.testing.assert_allclose(np.linalg.norm(p1 - p0), 1.2, rtol=1e-12)
    assert np.degrees(np.arccos((np.trace(r0.T @ r1) - 1) / 2)) == pytest.approx(90 * 1.25)
    K = intrinsics_for(96, 64)
    a, b = SCENE.render(np.eye(4), K, 96, 64, 0.0), SCENE.render(np.eye(4), K, 96, 64, 1.25)
    ball_id = NAMES.index("ball")
    cols_a = np.nonzero(a.object_id == ball_id)[1].mean()
    cols_b = np.nonzero(b.object_id == ball_id)[1].mean()
    assert cols_b - cols_a > 10
    static = (a.object_id != ball_id) & (b.object_id != ball_id)
    np.testing.assert_array_equal(a.rgb[static], b.rgb[static])


def test_colour_of_a_surface_point_is_the_same_from_any_camera():
    K = intrinsics_for(96, 64)
    view = SCENE.render(np.eye(4), K, 96, 64, 0.5)
    rng = np.random.default_rng(1)
    checked = 0
    for v, u in zip(rng.integers(0, 64, 30), rng.integers(0, 96, 30)):
        ray = np.linalg.inv(K) @ [u, v, 1.0]
        point = view.depth[v, u] * ray
        cam = point + np.array([0.8, -0.6, -2.0]) * rng.uniform(0.3, 1.0)
        other = SCENE.render(look_at(cam, point), K_CENTRED, 32, 24, 0.5)
        if abs(other.depth[12, 16] - np.linalg.norm(point - cam)) < 1e-9:  # on the axis: z-depth = distance
            np.testing.assert_allclose(other.rgb[12, 16], view.rgb[v, u], atol=1e-6)
            checked += 1
    assert checked >= 20


def test_source_clip_frames_are_renders_at_their_time(clip):
    assert clip.frames.shape == (9, 66, 96, 3) and clip.frames.dtype == np.uint8
    np.testing.assert_array_equal(clip.c2w[0], np.eye(4))
    for i in (0, 5):
        view = SCENE.render(clip.c2w[i], clip.K, 96, 66, i / FPS)
        np.testing.assert_array_equal(clip.frames[i], np.round(view.rgb * 255).astype(np.uint8))
    assert not np.array_equal(clip.frames[0], clip.frames[5])


def test_handheld_path_is_gentle_and_starts_at_identity():
    c2w = handheld_path(49, 24.0)
    np.testing.assert_array_equal(c2w[0], np.eye(4))
    rot = c2w[:, :3, :3]
    np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.tile(np.eye(3), (49, 1, 1)), atol=1e-12)
    angles = np.degrees(np.arccos(np.clip((np.trace(rot, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    assert 0.2 < angles.max() < 3.0
    assert 0.1 < np.linalg.norm(c2w[-1, :3, 3]) < 0.6


def test_geometry_matches_full_resolution_pixels(clip):
    """Depth grid 3x coarser, intrinsics scaled as DA3 scales them (x' = x / 3): low-res pixel (u', v')
    sees the ray of full-res pixel (3u', 3v')."""
    geo = make_geometry(SCENE, clip, depth_hw=(22, 32))
    assert geo.resolution == (22, 32) and geo.num_frames == 9
    np.testing.assert_allclose(geo.intrinsics[0], scale_intrinsics(torch.from_numpy(clip.K), (66, 96), (22, 32)).numpy())
    np.testing.assert_array_equal(geo.extrinsics, np.linalg.inv(clip.c2w))
    for i in (0, 7):
        full = SCENE.render(clip.c2w[i], clip.K, 96, 66, i / FPS)
        np.testing.assert_allclose(geo.depth[i], full.depth[::3, ::3], rtol=1e-6)
        np.testing.assert_array_equal(geo.image[i], clip.frames[i, ::3, ::3])
    assert (geo.conf == 1).all()


def bilinear(img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
    fu, fv = u - u0, v - v0
    return (
        img[v0, u0] * (1 - fu) * (1 - fv)
        + img[v0, u0 + 1] * fu * (1 - fv)
        + img[v0 + 1, u0] * (1 - fu) * fv
        + img[v0 + 1, u0 + 1] * fu * fv
    )


def test_geometry_reprojects_between_views(clip, tmp_path: Path):
    """Unproject view A's cached depth, reproject into view B: on planes, inverse depth is affine in
    pixels, so B's bilinearly interpolated inverse depth must equal 1/z of the reprojected point."""
    save_geometry(tmp_path / "g.npz", make_geometry(SCENE, clip, depth_hw=(44, 64)))
    geo = load_geometry(tmp_path / "g.npz", expect_frames=9)
    h, w = geo.resolution
    a, b = 0, 8
    u, v = np.meshgrid(np.arange(w, dtype=float), np.arange(h, dtype=float))
    rays = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3) @ np.linalg.inv(geo.intrinsics[a]).T
    cam_a = rays * geo.depth[a].reshape(-1, 1)
    world = (cam_a - geo.extrinsics[a, :3, 3]) @ geo.extrinsics[a, :3, :3]
    cam_b = world @ geo.extrinsics[b, :3, :3].T + geo.extrinsics[b, :3, 3]
    uv_b = cam_b @ geo.intrinsics[b].T
    ub, vb = uv_b[:, 0] / uv_b[:, 2], uv_b[:, 1] / uv_b[:, 2]
    inside = (ub >= 0) & (ub < w - 1) & (vb >= 0) & (vb < h - 1) & (cam_b[:, 2] > 0)
    ids_a = SCENE.render(clip.c2w[a], geo.intrinsics[a], w, h, a / FPS).object_id.ravel()
    ids_b = SCENE.render(clip.c2w[b], geo.intrinsics[b], w, h, b / FPS).object_id
    ub, vb, idx = ub[inside], vb[inside], np.flatnonzero(inside)
    u0, v0 = np.floor(ub).astype(int), np.floor(vb).astype(int)
    same = np.isin(ids_a[idx], PLANES)
    for du, dv in ((0, 0), (1, 0), (0, 1), (1, 1)):
        same &= ids_b[v0 + dv, u0 + du] == ids_a[idx]
    assert same.sum() > 0.5 * h * w
    inv_b = bilinear(1.0 / geo.depth[b].astype(np.float64), ub[same], vb[same])
    np.testing.assert_allclose(inv_b, 1.0 / cam_b[idx[same], 2], rtol=2e-6)
    occluded = ~same & np.isin(ids_a[idx], PLANES) & (ids_b[v0, u0] == NAMES.index("ball"))
    assert occluded.any()
    assert (1.0 / bilinear(1.0 / geo.depth[b].astype(np.float64), ub[occluded], vb[occluded])
            < cam_b[idx[occluded], 2] * 0.95).mean() > 0.8


def source_path(clip, source_index: np.ndarray, c2w: np.ndarray | None = None) -> CameraPath:
    n = len(source_index)
    return CameraPath(
        c2w=clip.c2w[source_index] if c2w is None else c2w,
        intrinsics=np.tile(clip.K, (n, 1, 1)),
        width=clip.width,
        height=clip.height,
        fps=clip.fps,
        source_index=np.asarray(source_index, dtype=np.int64),
    )


def test_ground_truth_of_the_source_cameras_is_the_source(clip):
    frames, visible = ground_truth(SCENE, source_path(clip, np.arange(9)), clip)
    assert frames.shape == (9, 66, 96, 3) and frames.dtype == np.float32
    np.testing.assert_array_equal(np.round(frames * 255).astype(np.uint8), clip.frames)
    assert visible.all()


def test_ground_truth_follows_the_time_map(clip):
    """Camera fixed at source camera 0 while time runs backwards: frame i shows source time 8 - i."""
    order = np.array([8, 4, 4, 0])
    frames, visible = ground_truth(SCENE, source_path(clip, order, np.tile(clip.c2w[0], (4, 1, 1))), clip)
    for i, s in enumerate(order):
        expected = SCENE.render(clip.c2w[0], clip.K, 96, 66, s / FPS).rgb
        np.testing.assert_array_equal(frames[i], expected)
    assert not np.array_equal(frames[0], frames[3])


def test_ground_truth_visibility(clip):
    """Visible = inside the source frame and not occluded there, checked against the source depth map."""
    target = clip.c2w[4].copy()
    target[:3, 3] += target[:3, :3] @ [0.6, -0.2, 0.3]
    backwards = clip.c2w[4] @ np.diag([-1.0, 1.0, -1.0, 1.0])
    path = source_path(clip, np.array([4, 4]), np.stack([target, backwards]))
    frames, visible, depth = ground_truth(SCENE, path, clip, return_depth=True)
    assert not visible[1].any() and np.isfinite(depth[1]).any()
    hit = np.isfinite(depth[0])
    v, u = np.nonzero(hit)
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(clip.K).T
    world = (rays * depth[0][hit][:, None]) @ target[:3, :3].T + target[:3, 3]
    w2c = np.linalg.inv(clip.c2w[4])
    cam = world @ w2c[:3, :3].T + w2c[:3, 3]
    uv = cam @ clip.K.T
    us, vs = np.round(uv[:, 0] / uv[:, 2]).astype(int), np.round(uv[:, 1] / uv[:, 2]).astype(int)
    inside = (cam[:, 2] > 0) & (us >= 0) & (us < 96) & (vs >= 0) & (vs < 66)
    src_depth = SCENE.render(clip.c2w[4], clip.K, 96, 66, 4 / FPS).depth
    approx = np.zeros(len(us), dtype=bool)
    approx[inside] = np.abs(src_depth[vs[inside], us[inside]] - cam[inside, 2]) < 0.02 * cam[inside, 2]
    near_edge = np.zeros(len(us), dtype=bool)  # where nearest-pixel lookup is ambiguous
    near_edge[inside] = edge_band(src_depth, px=1.5)[vs[inside], us[inside]]
    near_edge |= edge_band(depth[0], px=1.5)[hit]
    assert (approx == visible[0][hit])[~near_edge].all()
    assert (~visible[0][hit] & inside).sum() > 20  # disocclusions exist
    assert (~inside).sum() > 20  # and pixels outside the source frame


def _one_object(shape, rotation=np.eye(3), position=(0.0, 0.0, 4.0)) -> SyntheticScene:
    return SyntheticScene(objects=(SceneObject("o", shape, Texture((0.5, 0.5, 0.5)), position, rotation),))


def test_box_depth_and_normals_are_analytic():
    """A cube of half-size 0.5 at 4 m, turned 45 degrees about y: its nearest edge is at 4 - 0.5 sqrt 2,
    and each face's normal points out of it."""
    rot = _rotation((0, 1, 0), 45.0)
    scene = _one_object(Box((0.5, 0.5, 0.5)), rot)
    d = np.array([[0.0, 0, 1], [0.05, 0, 1], [0.3, 0, 1]])
    s, ids = scene.intersect(np.zeros(3), d, 0.0)
    assert s[0] == pytest.approx(4 - 0.5 * np.sqrt(2), abs=1e-12) and ids[0] == 0
    # Right of the nearest edge the ray meets the face whose outward normal is the object's +x.
    n = rot @ np.array([1.0, 0, 0])
    assert s[1] == pytest.approx(((np.array([0, 0, 4.0]) + 0.5 * n) @ n) / (d[1] @ n), abs=1e-12)
    assert np.isinf(s[2]) and ids[2] == -1  # passes beside the cube (|x| <= 0.5 sqrt 2 at z ~ 4)
    box = scene.objects[0].shape
    p = np.array([[0.2, 0.1, -0.5], [0.5, 0.3, 0.1], [0.0, -0.5, 0.2]])
    np.testing.assert_array_equal(box.normal(p), [[0, 0, -1], [1, 0, 0], [0, -1, 0]])


def test_slats_leave_gaps():
    """A fence 1 m wide at 4 m: slats 5 cm wide every 15 cm from its left end, nothing in between."""
    scene = _one_object(Slats(0.5, 0.5, period=0.15, slat_width=0.05))
    x = np.array([-0.5 + 0.02, -0.5 + 0.10, -0.5 + 0.17, -0.5 + 0.30 + 0.049, 0.6])
    s, _ = scene.intersect(np.zeros(3), np.stack([x / 4, np.zeros(5), np.ones(5)], 1), 0.0)
    np.testing.assert_allclose(s, [4, np.inf, 4, 4, np.inf])


def test_scenes_by_name():
    assert [o.name for o in make_scene("room").objects] == NAMES
    yard = [o.name for o in make_scene("yard").objects]
    assert {"ground", "crate", "fence", "ball", "pole0"} <= set(yard)
    with pytest.raises(ValueError, match="unknown synthetic scene 'attic'; choose one of room, yard"):
        make_scene("attic")


def test_edge_conf_marks_depth_edges_only(clip):
    geo = make_geometry(SCENE, clip, depth_hw=(22, 32), edge_conf=0.05)
    for i in (0, 8):
        band = edge_band(np.where(geo.depth[i] > 0, geo.depth[i], np.inf), px=1)
        assert band.any() and (~band).any()
        np.testing.assert_array_equal(geo.conf[i], np.where(band, np.float32(0.05), 1.0))
