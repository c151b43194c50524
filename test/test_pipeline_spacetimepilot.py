"""``--generator spacetimepilot`` end to end through run_pipeline.sh, with tiny random models written to disk
and loaded by the real loaders."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from models.dit import DiTConfig
from models.spacetimepilot import SpaceTimePilot
from pipeline.cli import app
from pipeline.video_io import probe_video
from pipeline_inputs import ARGS, make_input, table, write_traj
from trajectories.camera_path import CameraPath
from test_generate import weights  # noqa: F401  (tiny VAE, umT5 and config.json in the published layout)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stp_checkpoint(weights, tmp_path_factory):  # noqa: F811
    """A random SpaceTimePilot of the tiny config.json's sizes, saved as the released .ckpt format."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("stp") / "SpacetimePilot_tiny.ckpt"
    torch.save(SpaceTimePilot(DiTConfig.from_json(weights.wan_dir / "config.json")).state_dict(), path)
    return path


def _args(tmp_path, weights, stp_checkpoint, *extra):  # noqa: F811
    inp = make_input(tmp_path / "in", names=("a",))
    return ["--input_dir", str(inp), "--traj_txt_path", str(write_traj(tmp_path / "orbit.txt")),
            "--output_folder", str(tmp_path / "out"), "--work_dir", str(tmp_path / "work"),
            "--checkpoints_dir", str(tmp_path / "no-weights"), "--config_path", str(weights.wan_dir / "config.json"),
            "--generator", "spacetimepilot", "--spacetimepilot_path", str(stp_checkpoint),
            "--spacetimepilot_steps", "2", *ARGS, *extra]


def test_run_pipeline_sh_with_spacetimepilot(tmp_path, weights, stp_checkpoint):  # noqa: F811
    args = _args(tmp_path, weights, stp_checkpoint, "--time_preset", "reverse")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([str(REPO / "run_pipeline.sh"), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert table(done.stdout)["a.mp4"] == ["ran", "ran", "ran", "ran"]
    assert "one 81-frame SpaceTimePilot window" in output and "step 2/2" in output
    result = probe_video(tmp_path / "out" / "a" / "generated.mp4")
    assert (result.width, result.height, result.num_frames) == (64, 48, 12)
    (cameras,) = (tmp_path / "work").rglob("cameras.json")
    assert CameraPath.load(cameras).source_index.tolist() == list(range(11, -1, -1))  # --time_preset reverse

    again = CliRunner().invoke(app, ["run", *args])
    assert again.exit_code == 0 and table(again.output)["a.mp4"] == ["reused"] * 4
    causal = CliRunner().invoke(app, ["run", *args, "--generator", "causal", "--dry_run"])
    assert "generate  would run" in causal.output  # another generator is another output


def test_spacetimepilot_weights_are_named_when_missing(tmp_path, weights):  # noqa: F811
    args = _args(tmp_path, weights, tmp_path / "absent.ckpt")
    out = CliRunner().invoke(app, ["run", *args])
    assert out.exit_code != 0
    assert "absent.ckpt" in out.output and "bash scripts/download.sh spacetimepilot" in out.output


def test_too_long_a_path_is_refused_with_the_fix(tmp_path, weights, stp_checkpoint):  # noqa: F811
    args = _args(tmp_path, weights, stp_checkpoint, "--num_frames", "90")
    out = CliRunner().invoke(app, ["run", *args])
    assert out.exit_code != 0
    assert "--num_frames 81 --disable_adaptive_frame" in out.output


def test_weights_check_reads_the_ckpt_against_the_manifest(tmp_path, stp_checkpoint, monkeypatch):
    """The check of the SpaceTimePilot .ckpt (torch.load, mmap) against a key/shape map; optional unless asked."""
    import pipeline.weights as pw

    wf = next(w for w in pw.expected_weights(tmp_path) if w.check == "spacetimepilot")
    assert wf.required_for == "spacetimepilot" and wf.download_cmd == "bash scripts/download.sh spacetimepilot"
    state = torch.load(stp_checkpoint, weights_only=True)
    shapes = {"spacetimepilot": {k: tuple(v.shape) for k, v in state.items()}}
    wf.path.parent.mkdir(parents=True)
    torch.save(state, wf.path)
    assert pw.check_weight(wf, shapes) == []
    torch.save({k: v for k, v in state.items() if k != "blocks.0.cam_encoder.weight"}, wf.path)
    assert "missing, first: 'blocks.0.cam_encoder.weight'" in pw.check_weight(wf, shapes)[0]
    wf.path.unlink()
    only_stp = [p for p in pw.check_weights(tmp_path) if p.file.required_for == "spacetimepilot"]
    monkeypatch.setattr(pw, "check_weights", lambda *a, **k: only_stp)
    assert pw.main([str(tmp_path)]) == 0
    assert pw.main([str(tmp_path), "--only", "spacetimepilot"]) == 1
