"""The command line: flags, caching across runs, the plan, stage commands, explicit render, the wrapper script."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.manifest import read_manifest
from pipeline_inputs import ARGS, frames_of, leftovers, make_input, table, write_traj

REPO = Path(__file__).resolve().parents[1]
REFERENCE_FLAGS = [
    "--input_dir", "--traj_txt_path", "--checkpoint_path", "--config_path", "--da3_model_path",
    "--florence_model_path", "--output_folder", "--skip_step1", "--skip_step2", "--skip_step3",
    "--relative_to_source", "--rotation_only", "--disable_adaptive_frame", "--freeze_repeat", "--freeze_frame",
    "--render_backend", "--use_tae", "--tae_checkpoint_path", "--compile_dit", "--step1_gpus", "--step2_gpus",
    "--step3_gpus", "--step3_nproc", "--master_port",
]
OWN_FLAGS = ["--force", "--dry_run", "--verbose", "--caption", "--captions_file", "--seed", "--interpolation",
             "--radius_mode", "--time_mode", "--slowmo", "--width", "--height", "--resize", "--fps", "--geometry_dir",
             "--da3_process_res", "--da3_chunk_size", "--da3_overlap", "--da3_random_weights"]


@pytest.fixture(scope="module")
def two_videos(tmp_path_factory) -> Path:
    return make_input(tmp_path_factory.mktemp("cli") / "in", names=("a", "b"))


@pytest.fixture
def env(tmp_path, two_videos):
    return dict(tmp=tmp_path, inp=two_videos, traj=write_traj(tmp_path / "orbit.txt"), out=tmp_path / "out",
                work=tmp_path / "work")


def cli(e: dict, *extra: str, command: str = "run", traj: Path | None = None):
    args = [command, "--input_dir", str(e["inp"]), "--traj_txt_path", str(traj or e["traj"]),
            "--output_folder", str(e["out"]), "--work_dir", str(e["work"]),
            "--checkpoints_dir", str(e["tmp"] / "no-weights"), *ARGS, *extra]
    return CliRunner().invoke(app, args)


@pytest.mark.parametrize("command", ["run", "caption", "geometry", "render", "generate"])
def test_help_lists_every_flag(command):
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    for flag in REFERENCE_FLAGS + OWN_FLAGS:
        assert flag in result.output, flag
    assert "[default: 832]" in result.output and "[default: 29513]" in result.output
    assert "./output/<input dir name>/<trajectory name>" in result.output


def test_rerun_reuses_and_trajectory_change_rerenders_only(env):
    first = cli(env)
    assert first.exit_code == 3, first.output  # everything but generation (no weights here)
    assert table(first.output) == {v: ["ran", "ran", "ran", "missing weights"] for v in ("a.mp4", "b.mp4")}
    for v in ("a", "b"):
        for name in ("source.mp4", "render.mp4", "mask.mp4", "cameras.json", "preview.mp4", "viewer.html", "trajectory.png"):
            assert (env["out"] / v / name).is_file()
    index = (env["out"] / "index.html").read_text()
    assert index.count('viewer.html">viewer</a>') == 2 and "generation weights missing" in index
    assert (env["work"] / "a" / "caption" / "caption.txt").read_text().strip() == "A synthetic room, clip a."
    published = read_manifest(env["out"] / "a")

    second = cli(env)
    assert second.exit_code == 3
    assert table(second.output) == {v: ["reused", "reused", "reused", "missing weights"] for v in ("a.mp4", "b.mp4")}
    assert read_manifest(env["out"] / "a") == published

    other = write_traj(env["tmp"] / "other.txt", "0 -5\n0 -10\n1 1\n")
    third = cli(env, "--output_folder", str(env["tmp"] / "out_other"), traj=other)
    assert table(third.output) == {v: ["reused", "reused", "ran", "missing weights"] for v in ("a.mp4", "b.mp4")}
    assert (env["work"] / "a" / "renders" / "other" / "render.mp4").is_file()

    write_traj(env["traj"], "0 3\n0 3\n1 1\n")  # same file name, new content
    fourth = cli(env, "--dry_run")
    assert "render    would run input 'trajectory' changed" in fourth.output
    assert "caption   reuse" in fourth.output and "geometry  reuse" in fourth.output
    assert not leftovers(env["out"], env["work"])


def test_parameter_change_and_force(env):
    assert cli(env).exit_code == 3
    slow = cli(env, "--slowmo", "2")
    assert table(slow.output)["a.mp4"][:3] == ["reused", "reused", "ran"]
    forced = cli(env, "--slowmo", "2", "--force")
    assert table(forced.output)["a.mp4"][:3] == ["ran", "ran", "ran"]
    caption = cli(env, "--slowmo", "2", "--caption", "Another caption.")
    assert table(caption.output)["a.mp4"][:3] == ["ran", "reused", "reused"]


def test_dry_run_writes_nothing(env):
    result = cli(env, "--dry_run")
    assert result.exit_code == 0, result.output
    assert "Plan (nothing computed)" in result.output and "would run" in result.output
    assert "no manifest" in result.output and "bash scripts/download.sh inspatio" in result.output
    assert not env["out"].exists() and not env["work"].exists()


def test_skip_step_reuses_or_fails_clearly(env):
    result = cli(env, "--skip_step2")
    assert result.exit_code == 1
    assert "--skip_step2 was given" in result.output and "no manifest" in result.output
    assert str(env["work"] / "a" / "geometry") in result.output
    assert not (env["out"] / "a").exists()
    assert cli(env).exit_code == 3
    again = cli(env, "--skip_step1", "--skip_step2", "--force")
    assert table(again.output)["a.mp4"][:3] == ["reused", "reused", "ran"]


def test_stage_commands_compute_one_stage(env):
    render_first = cli(env, command="render")
    assert render_first.exit_code == 1
    assert "does not compute the geometry stage" in render_first.output
    assert "python -m pipeline geometry" in render_first.output
    geometry = cli(env, command="geometry")
    assert geometry.exit_code == 0, geometry.output
    assert table(geometry.output)["a.mp4"] == ["-", "ran", "-", "-"]
    render = cli(env, command="render")
    assert render.exit_code == 0, render.output
    assert table(render.output)["a.mp4"] == ["-", "reused", "ran", "-"]
    assert (env["out"] / "a" / "preview.mp4").is_file()


def test_render_on_explicit_files(env):
    args = ["render", "--video", str(env["inp"] / "a.mp4"), "--geometry", str(env["inp"] / "geometry" / "a.npz"),
            "--traj", str(env["traj"]), "--out", str(env["tmp"] / "r"), *ARGS]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "rendered" in first.output
    names = sorted(p.name for p in (env["tmp"] / "r").iterdir())
    assert names == ["cameras.json", "manifest.json", "mask.mp4", "mask.npz", "render.mp4"]
    cams = json.loads((env["tmp"] / "r" / "cameras.json").read_text())
    assert (cams["width"], cams["height"], len(cams["frames"])) == (64, 48, 12)
    again = CliRunner().invoke(app, args)
    assert "reused" in again.output
    missing = CliRunner().invoke(app, args[:3] + ["--out", str(env["tmp"] / "r2"), *ARGS])
    assert missing.exit_code == 1 and "--geometry" in missing.output


def test_wrapper_script(tmp_path):
    proc = subprocess.run(["bash", str(REPO / "run_pipeline.sh"), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--traj_txt_path" in proc.stdout and "--skip_step3" in proc.stdout
    proc = subprocess.run(["bash", str(REPO / "run_pipeline.sh"), "--input_dir", str(tmp_path / "none"),
                           "--traj_txt_path", "orbit_left"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "does not exist" in proc.stderr


def test_bad_options(env):
    odd = cli(env, "--width", "70")
    assert odd.exit_code == 1 and "multiple of 16" in odd.output
    slow = cli(env, "--slowmo", "0.5")
    assert slow.exit_code == 1 and "slowmo" in slow.output
    assert not env["out"].exists()


def test_published_source_follows_the_time_map(env):
    result = cli(env, "--time_mode", "reverse")
    assert result.exit_code == 3, result.output
    source = frames_of(env["inp"] / "a.mp4").astype(np.float64)
    shown = frames_of(env["out"] / "a" / "source.mp4").astype(np.float64)
    preview = frames_of(env["out"] / "a" / "preview.mp4").astype(np.float64)
    render = frames_of(env["out"] / "a" / "render.mp4").astype(np.float64)
    assert shown.shape == source.shape == (12, 48, 64, 3) and preview.shape == (12, 48, 3 * 64, 3)

    def psnr(a, b):
        return 10 * np.log10(255.0**2 / np.mean((a - b) ** 2))

    assert min(psnr(shown[i], source[11 - i]) for i in range(12)) > 35
    assert psnr(shown[0], source[0]) < 30  # reversed, not the identity
    assert psnr(preview[:, :, :64], shown) > 30 and psnr(preview[:, :, 64:128], render) > 30


def test_bundled_example_runs_as_far_as_weights_allow(tmp_path):
    """The README's first command, at a small working size: captions and geometry come with the example."""
    example = REPO / "test" / "example"
    args = ["run", "--input_dir", str(example), "--traj_txt_path", "orbit_left", "--output_folder", str(tmp_path / "o"),
            "--checkpoints_dir", str(tmp_path / "no-weights"), "--width", "96", "--height", "64",
            "--disable_adaptive_frame"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 3, result.output
    assert table(result.output) == {"synthetic_orbit.mp4": ["ran", "ran", "ran", "missing weights"]}
    caption = (tmp_path / "work" / "synthetic_orbit" / "caption" / "caption.txt").read_text().strip()
    assert caption == json.loads((example / "captions.json").read_text())["synthetic_orbit.mp4"]
    assert "bash scripts/download.sh inspatio" in result.output
    assert (tmp_path / "o" / "synthetic_orbit" / "preview.mp4").is_file()


def test_render_backend_help_promises_only_what_is_accepted():
    from pipeline.stages.config import OutputSettings
    from pipeline.stages.render import BACKENDS, check_settings

    result = CliRunner().invoke(app, ["render", "--help"], terminal_width=400)
    line = next(s for s in result.output.splitlines() if "--render_backend" in s)
    assert all(b in line for b in BACKENDS) and "pytorch3d" not in line, line
    with pytest.raises(ValueError, match="--render_backend 'pytorch3d' is not available; choose one of torch"):
        check_settings(OutputSettings(backend="pytorch3d"))
