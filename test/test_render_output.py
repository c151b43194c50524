"""render_to_folder: outputs, lossless mask, time map, fps, PLY export, errors leave nothing behind."""

from __future__ import annotations

import numpy as np
import pytest

from geometry.cache import GeometryCache
from pipeline.render_folder import RenderFolder, load_mask
from pipeline.render_output import RenderOptions, render_to_folder
from pipeline.video_io import EncodeOptions, probe_video, read_video, write_video
from trajectories.camera_path import CameraPath

H, W, h, w = 48, 64, 30, 40


def _K(height, width, f=50.0):
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]])


@pytest.fixture()
def inputs(tmp_path):
    """4 source frames, each a flat distinct grey, seen by a static camera on a plane 2 m away;
    the right 10 depth columns are missing (depth 0)."""
    frames = np.stack([np.full((H, W, 3), 40 + 50 * i, np.uint8) for i in range(4)])
    video = tmp_path / "src.mp4"
    write_video(video, frames, fps=12, options=EncodeOptions(crf=0, pix_fmt="yuv444p"))
    depth = np.full((4, h, w), 2.0, np.float32)
    depth[:, :, 30:] = 0.0
    Kd = np.array([[50.0 * w / W, 0, (w - 1) / 2], [0, 50.0 * h / H, (h - 1) / 2], [0, 0, 1]])
    geo = GeometryCache(depth=depth, extrinsics=np.tile(np.eye(4), (4, 1, 1)), intrinsics=np.tile(Kd, (4, 1, 1)))
    return video, frames, geo


def _path(source_index, fps=30.0):
    n = len(source_index)
    return CameraPath(np.tile(np.eye(4), (n, 1, 1)), np.tile(_K(H, W), (n, 1, 1)), W, H, fps, np.asarray(source_index, np.int64))


def test_outputs_follow_time_map_and_fps(inputs, tmp_path):
    video, frames, geo = inputs
    path = _path([2, 2, 0, 3, 1])
    out = render_to_folder(video, geo, path, tmp_path / "out", RenderOptions(chunk_frames=2, export_ply=True))
    info = probe_video(out.folder.render_video)
    assert (info.num_frames, info.width, info.height) == (5, W, H) and info.fps == pytest.approx(30.0)
    assert sorted(p.name for p in out.folder.root.iterdir()) == sorted([*RenderFolder.OUTPUTS, "ply"])
    mask = out.folder.load_mask()
    assert mask.shape == (5, H, W)
    # Depth pixels 0..29 span depth x in [-0.5, 29.5] = colour x in [-0.5, 48.5]: colour columns 0..48.
    expected_cols = np.arange(W) < 49
    assert (mask == expected_cols[None, None, :]).all()
    assert ((read_video(out.folder.mask_video) > 127).all(-1) == mask).all()
    rendered = read_video(out.folder.render_video).astype(int)
    for i, s in enumerate(path.source_index):
        assert np.abs(rendered[i][mask[i]] - int(frames[s, 0, 0, 0])).max() <= 3
        assert (rendered[i][~mask[i]] <= 3).all()
    back = out.folder.cameras()
    np.testing.assert_array_equal(back.source_index, path.source_index)
    np.testing.assert_allclose(back.c2w, path.c2w)
    plys = sorted(out.ply_dir.glob("*.ply"))
    assert plys == [out.folder.ply(i) for i in (0, 1, 2, 3)]
    from plyfile import PlyData

    v = PlyData.read(str(plys[0]))["vertex"]
    assert len(v) == H * 49 and np.allclose(np.asarray(v["z"]), 2.0)
    assert out.coverage == pytest.approx(49 / 64)


def test_errors_leave_no_partial_outputs(inputs, tmp_path):
    video, _, geo = inputs
    with pytest.raises(ValueError, match="source frame 7"):
        render_to_folder(video, geo, _path([0, 7]), tmp_path / "o1")
    short = GeometryCache(depth=geo.depth[:3], extrinsics=geo.extrinsics[:3], intrinsics=geo.intrinsics[:3])
    with pytest.raises(ValueError, match="3"):
        render_to_folder(video, short, _path([0, 1]), tmp_path / "o2")
    for d in ("o1", "o2"):
        assert not (tmp_path / d).exists() or list((tmp_path / d).iterdir()) == []


def test_source_cache_and_workers_give_identical_outputs(inputs, tmp_path, monkeypatch):
    """Repeated source frames (freeze, slow motion) are prepared once while cached; the concurrent,
    cached path writes exactly what the plain one-frame-at-a-time path writes."""
    import geometry.render
    import pipeline.render_output as ro

    video, frames, geo = inputs
    calls = []
    prepare = geometry.render.prepare_sources

    def counting(colour, *args, **kwargs):
        calls.append(int(colour[0, 0, 0, 0]))
        return prepare(colour, *args, **kwargs)

    monkeypatch.setattr(ro, "prepare_sources", counting)
    path = _path([0, 1, 1, 1, 0, 2, 2, 3, 0, 3])
    plain = render_to_folder(video, geo, path, tmp_path / "plain", RenderOptions(chunk_frames=1, workers=1, source_cache=0))
    assert len(calls) == len(path)
    calls.clear()
    fast = render_to_folder(video, geo, path, tmp_path / "fast", RenderOptions(chunk_frames=3, workers=2, source_cache=2))
    assert sorted(set(calls)) == sorted(set(int(f[0, 0, 0]) for f in frames)) and len(calls) < len(path)
    np.testing.assert_array_equal(load_mask(fast.folder.mask_npz), load_mask(plain.folder.mask_npz))
    np.testing.assert_array_equal(read_video(fast.folder.render_video), read_video(plain.folder.render_video))
    np.testing.assert_array_equal(read_video(fast.folder.mask_video), read_video(plain.folder.mask_video))
    rendered = read_video(fast.folder.render_video).astype(int)
    for i, s in enumerate(path.source_index):
        assert np.abs(rendered[i, :, :40] - int(frames[s, 0, 0, 0])).max() <= 3


def test_failure_while_preparing_a_source_frame_surfaces_and_leaves_nothing(inputs, tmp_path, monkeypatch):
    """A source frame that fails to prepare raises its own error from render_to_folder (also when
    several render tasks share that frame) and no output file appears."""
    import pipeline.render_output as ro

    video, _, geo = inputs

    def broken(*args, **kwargs):
        raise RuntimeError("depth of frame 1 is unusable")

    monkeypatch.setattr(ro, "prepare_sources", broken)
    with pytest.raises(RuntimeError, match="frame 1 is unusable"):
        render_to_folder(video, geo, _path([1, 1, 1, 1]), tmp_path / "o", RenderOptions(workers=2, source_cache=2))
    assert not (tmp_path / "o").exists() or list((tmp_path / "o").iterdir()) == []


def test_render_video_in_yuv444p(inputs, tmp_path):
    """The render video follows the requested pixel format (planes converted for it)."""
    video, frames, geo = inputs
    opts = RenderOptions(encode=EncodeOptions(crf=0, preset="ultrafast", pix_fmt="yuv444p"))
    out = render_to_folder(video, geo, _path([2, 3]), tmp_path / "o", opts)
    rendered = read_video(out.folder.render_video).astype(int)
    assert np.abs(rendered[0, :, :40] - int(frames[2, 0, 0, 0])).max() <= 1
    assert np.abs(rendered[1, :, :40] - int(frames[3, 0, 0, 0])).max() <= 1
    assert (rendered[:, :, -8:] <= 1).all()  # no depth there: black
