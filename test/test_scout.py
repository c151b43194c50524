"""Scout mode on the bundled example: the render stage at a quarter size, checked against the
full-size camera path and the synthetic scene's analytic ground truth; caching; per-video failures."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from geometry.cache import load_geometry
from geometry.metrics import psnr
from geometry.synthetic import SourceClip, SyntheticScene, ground_truth_frame, intrinsics_for
from pipeline.cli import app
from pipeline.render_output import load_mask
from pipeline.stages.config import OutputSettings
from pipeline.stages.render import build_camera_path
from pipeline.video_io import probe_video, read_video
from trajectories import PathOptions, find_trajectory, load_trajectory
from trajectories.camera_path import CameraPath

EXAMPLE = Path(__file__).resolve().parent / "example"
ARGS = ["--traj_txt_path", "orbit_left", "--disable_adaptive_frame", "--num_frames", "9"]


@pytest.fixture(scope="module")
def scouted(tmp_path_factory):
    """The example plus a second video without geometry, scouted once."""
    tmp = tmp_path_factory.mktemp("scout")
    inp = tmp / "in"
    shutil.copytree(EXAMPLE, inp)
    shutil.copyfile(EXAMPLE / "synthetic_orbit.mp4", inp / "no_geometry.mp4")
    args = ["scout", "--input_dir", str(inp), *ARGS, "--output_folder", str(tmp / "scout"), "--work_dir", str(tmp / "work")]
    result = CliRunner().invoke(app, args)
    return tmp, args, result


def test_scout_writes_quarter_size_preview_and_reports_failures(scouted):
    tmp, args, result = scouted
    assert result.exit_code == 1, result.output  # one video has no geometry
    assert "no_geometry.mp4" in result.output and "run `python -m pipeline geometry`" in result.output
    out = tmp / "scout" / "synthetic_orbit"
    for name in ("render.mp4", "mask.mp4", "mask.npz", "cameras.json", "source.mp4", "trajectory.png", "viewer.html"):
        assert (out / name).is_file(), name
    info = probe_video(out / "render.mp4")
    assert (info.width, info.height, info.num_frames) == (208, 120, 9)
    index = (tmp / "scout" / "index.html").read_text()
    assert 'href="synthetic_orbit/viewer.html"' in index and "failed" in index
    assert not (tmp / "scout" / "no_geometry").exists()
    again = CliRunner().invoke(app, args)
    assert "synthetic_orbit.mp4      reused" in again.output


def test_scout_cameras_are_the_full_path_at_a_quarter_size(scouted):
    tmp, _, _ = scouted
    scout = CameraPath.load(tmp / "scout" / "synthetic_orbit" / "cameras.json")
    video = EXAMPLE / "synthetic_orbit.mp4"
    geometry = load_geometry(EXAMPLE / "geometry" / "synthetic_orbit.npz")
    options = PathOptions(n_frames=9, adaptive_frames=False)
    full = build_camera_path(geometry, load_trajectory(find_trajectory("orbit_left")), options, OutputSettings(),
                             probe_video(video))
    np.testing.assert_allclose(scout.c2w, full.c2w)
    np.testing.assert_array_equal(scout.source_index, full.source_index)
    K = full.intrinsics.copy()  # intrinsics scaled plainly between resolutions (DA3's convention): x' = x / 4
    K[:, :2, :] /= 4
    np.testing.assert_allclose(scout.intrinsics, K, atol=1e-9)


def test_scout_render_matches_the_analytic_scene(scouted):
    tmp, _, _ = scouted
    out = tmp / "scout" / "synthetic_orbit"
    path = CameraPath.load(out / "cameras.json")
    geometry = load_geometry(EXAMPLE / "geometry" / "synthetic_orbit.npz")
    clip = SourceClip(np.empty((geometry.num_frames, 480, 832, 3), np.uint8), geometry.c2w, intrinsics_for(832, 480), 24.0)
    frames, mask = read_video(out / "render.mp4"), load_mask(out / "mask.npz")
    for i in (0, 4, 8):
        truth, visible, _ = ground_truth_frame(SyntheticScene(), path, clip, i)
        both = mask[i] & visible
        assert both.mean() > 0.6
        assert psnr(frames[i], np.round(truth * 255).astype(np.uint8), both) > 24.0


def test_scout_default_folders_sit_beside_the_full_run(tmp_path, monkeypatch):
    """Default: ./output/<input>/<trajectory>-scout, sharing the full run's work folder; nothing else is made."""
    shutil.copytree(EXAMPLE, tmp_path / "in")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["scout", "--input_dir", "in", *ARGS, "--scale", "0.125"])
    assert result.exit_code == 0, result.output
    assert probe_video(tmp_path / "output/in/orbit_left-scout/synthetic_orbit/render.mp4").width == 104
    assert sorted(p.name for p in (tmp_path / "output" / "in").iterdir()) == ["orbit_left-scout", "work"]
    bad = CliRunner().invoke(app, ["scout", "--input_dir", "in", *ARGS, "--scale", "1.5"])
    assert bad.exit_code == 1 and "--scale 1.5: must be in (0, 1]" in bad.output
