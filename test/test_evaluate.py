"""evaluate: the camera x time grid on the bundled synthetic scene (a reduced grid) and camera accuracy
through a stand-in estimator whose error is known."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation
from typer.testing import CliRunner

from geometry.cache import load_geometry, save_geometry
from geometry.synthetic import SyntheticScene, make_source_clip
from pipeline.cli import app
from pipeline.evaluate import (EXAMPLE_GEOMETRY, EXAMPLE_VIDEO, GridSettings, evaluate_cameras, run_grid,
                               write_camera_report)
from pipeline.video_io import probe_video, write_video
from test_generate import weights  # noqa: F401  (tiny DiT, VAE, umT5 in the published layout)
from trajectories import orbit_c2w
from trajectories.camera_path import CameraPath

SMALL = GridSettings(cameras=("static", "orbit_left"), times=("reverse", "bullet", "zigzag", "freeze"), frames=9)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("grid")
    return out, run_grid(out, SMALL)


def test_grid_scores_every_cell_against_the_analytic_scene(grid):
    out, scores = grid
    assert [(s.camera, s.time) for s in scores] == [(c, t) for c in SMALL.cameras for t in SMALL.times]
    for s in scores:
        # Regression bounds of the render stage at 208x120 (measured ~26 dB / IoU 0.99; the textures are
        # near the pixel grid's limit at this size, so the masked PSNR is bounded by aliasing).
        assert s.psnr_mask > 24.0 and s.ssim_mask > 0.6 and s.mask_iou > 0.97, s
        assert s.psnr_full < s.psnr_mask and 0.5 < s.coverage <= 1.0, s
    rows = list(csv.DictReader((out / "grid.csv").open()))
    assert len(rows) == len(scores) and float(rows[0]["psnr_mask"]) == pytest.approx(scores[0].psnr_mask, abs=1e-4)
    md = (out / "grid.md").read_text()
    assert "| static | " in md and "## mask_iou" in md
    with Image.open(out / "heatmap.png") as img:
        assert img.format == "PNG"
    assert (out / "cells" / "static__zigzag" / "viewer.html").is_file()


def test_time_patterns_are_what_they_say(grid):
    out, _ = grid
    index = {t: CameraPath.load(out / "cells" / f"static__{t}" / "cameras.json").source_index for t in SMALL.times}
    last = load_geometry(EXAMPLE_GEOMETRY).num_frames - 1
    assert index["reverse"][0] == last and index["reverse"][-1] == 0 and (np.diff(index["reverse"]) <= 0).all()
    assert (index["bullet"] == round(0.5 * last)).all()
    steps = np.sign(np.diff(index["zigzag"]))
    assert (steps > 0).any() and (steps < 0).any() and index["zigzag"][-1] == last
    assert len(index["freeze"]) == 9 + round(0.5 * 9) and (np.diff(index["freeze"]) == 0).sum() >= 4


def test_grid_refuses_a_scene_without_analytic_truth(tmp_path):
    geo = load_geometry(EXAMPLE_GEOMETRY)
    import dataclasses

    save_geometry(tmp_path / "scaled.npz", dataclasses.replace(geo, depth=geo.depth * 1.05))
    with pytest.raises(ValueError, match="not the synthetic scene"):
        run_grid(tmp_path / "out", SMALL, EXAMPLE_VIDEO, tmp_path / "scaled.npz")


def test_grid_command_runs_a_tiny_grid(tmp_path):
    result = CliRunner().invoke(app, ["evaluate", "grid", "--out", str(tmp_path), "--cameras", "dolly_in",
                                      "--times", "forward", "--frames", "3"])
    assert result.exit_code == 0, result.output
    assert "| dolly_in |" in result.output and (tmp_path / "heatmap.png").is_file()
    bad = CliRunner().invoke(app, ["evaluate", "grid", "--out", str(tmp_path), "--times", "sideways"])
    assert bad.exit_code == 1 and "choose from forward" in bad.output


N = 12


@pytest.fixture()
def synthetic_video(tmp_path):
    """A small synthetic video rendered along known cameras, with its cameras.json."""
    c2w = orbit_c2w(np.linspace(0, 6, N), np.linspace(0, 20, N), np.full(N, 1.5))
    clip = make_source_clip(SyntheticScene(), N, 64, 48, 12.0, c2w)
    write_video(tmp_path / "clip.mp4", clip.frames, 12.0)
    CameraPath(c2w, np.tile(clip.K, (N, 1, 1)), 64, 48, 12.0, np.arange(N)).save(tmp_path / "cameras.json")
    return tmp_path / "clip.mp4", tmp_path / "cameras.json", c2w


def test_camera_accuracy_with_a_stand_in_estimator_gives_the_known_error(synthetic_video, tmp_path):
    video, cameras_json, true_c2w = synthetic_video
    angles = np.repeat([0.5, 1.0, 2.0, 3.0, 1.5, 4.0], 2)
    axes = np.repeat(np.eye(3)[[0, 1, 2, 0, 1, 2]], 2, axis=0)
    noise = Rotation.from_rotvec(axes * np.deg2rad(angles * np.tile([1, -1], N // 2))[:, None]).as_matrix()
    gauge = Rotation.from_rotvec([0.2, 0.9, -0.3]).as_matrix()  # the estimator's own world frame and scale

    def stand_in(path: Path) -> np.ndarray:
        est = true_c2w[: probe_video(path).num_frames].copy()
        est[:, :3, :3] = gauge.T @ noise @ est[:, :3, :3]
        est[:, :3, 3] = (est[:, :3, 3] - [1.0, 2.0, 3.0]) @ gauge / 0.25
        return est

    errors = evaluate_cameras(video, cameras_json, stand_in)
    np.testing.assert_allclose(errors.rotation_deg, angles, atol=1e-6)
    np.testing.assert_allclose(errors.translation, 0.0, atol=1e-9)
    write_camera_report(tmp_path / "report", errors, video, cameras_json)
    rows = list(csv.DictReader((tmp_path / "report" / "cameras.csv").open()))
    assert [float(r["rotation_deg"]) for r in rows] == pytest.approx(angles, abs=1e-3)
    assert f"| rotation (deg, geodesic) | {angles.mean():.4f}" in (tmp_path / "report" / "summary.md").read_text()


def test_camera_accuracy_refuses_mismatched_lengths(synthetic_video):
    video, cameras_json, true_c2w = synthetic_video
    with pytest.raises(ValueError, match="6 frames were estimated"):
        evaluate_cameras(video, cameras_json, lambda p: true_c2w[:6])


@pytest.mark.slow
def test_cameras_command_runs_the_real_da3_path(synthetic_video, tmp_path):
    """The command's estimator is the geometry stage's DA3 (a tiny random-weight model here, so only the
    plumbing is checked: one estimate per frame, a report, a clear error without a model)."""
    from da3_models import tiny_da3, write_da3_folder

    video, cameras_json, _ = synthetic_video
    model = write_da3_folder(tmp_path / "DA3", tiny_da3().net)
    args = ["evaluate", "cameras", "--video", str(video), "--cameras", str(cameras_json), "--out", str(tmp_path / "r"),
            "--da3_process_res", "42", "--da3_chunk_size", "6", "--da3_overlap", "2"]
    result = CliRunner().invoke(app, [*args, "--da3_model_path", str(model)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "r" / "cameras.csv").open()))
    assert len(rows) == N and all(0.0 <= float(r["rotation_deg"]) <= 180.0 for r in rows)
    assert "# Camera accuracy of clip.mp4" in result.output
    missing = CliRunner().invoke(app, [*args, "--da3_model_path", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "bash scripts/download.sh da3" in missing.output


@pytest.mark.slow
def test_grid_generates_and_scores_each_cell_with_the_weights_present(tmp_path, weights):  # noqa: F811
    """--generate runs the generate stage per cell (tiny random models in the checkpoints layout, so the
    values are meaningless) and scores generated.mp4 against the same ground truth as the render."""
    from geometry.metrics import psnr
    from geometry.synthetic import ground_truth
    from pipeline.evaluate import source_clip
    from pipeline.stages.source import open_source
    from pipeline.video_io import read_video

    ckpt = tmp_path / "checkpoints"
    (ckpt / "InSpatio-World-1.3B").mkdir(parents=True)
    (ckpt / "InSpatio-World-1.3B" / "InSpatio-World-1.3B.safetensors").symlink_to(weights.dit)
    (ckpt / "Wan2.1-T2V-1.3B").symlink_to(weights.wan_dir, target_is_directory=True)
    out = tmp_path / "grid"
    args = ["evaluate", "grid", "--out", str(out), "--cameras", "orbit_left", "--times", "bullet", "--frames", "9",
            "--width", "64", "--height", "48", "--checkpoints_dir", str(ckpt)]
    result = CliRunner().invoke(app, [*args, "--generate"])
    assert result.exit_code == 0, result.output
    assert "## gen_psnr_full" in result.output
    cell = out / "cells" / "orbit_left__bullet"
    generated = read_video(cell / "generated.mp4")
    assert generated.shape == (9, 48, 64, 3)
    path = CameraPath.load(cell / "cameras.json")
    source = open_source(EXAMPLE_VIDEO)
    truth, _ = ground_truth(SyntheticScene(), path, source_clip(source, load_geometry(EXAMPLE_GEOMETRY)))
    row = next(csv.DictReader((out / "grid.csv").open()))
    assert float(row["gen_psnr_full"]) == pytest.approx(psnr(generated, np.round(truth * 255).astype(np.uint8)), abs=1e-4)
    odd = CliRunner().invoke(app, [*args[:-2], "--width", "72", "--generate"])
    assert odd.exit_code == 1 and "multiples of 16" in odd.output
