"""Every flag is checked once, up front, with its own name, for ``run``, the stage commands and
``render`` on explicit files: a bad value fails before anything is computed or written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline_inputs import make_input, write_traj

SIZE = ["--width", "64", "--height", "48", "--disable_adaptive_frame"]
BAD_FLAGS = {
    "width-63": (["--width", "63"], "--width 63"),
    "width-0": (["--width", "0"], "--width 0"),
    "height-negative": (["--height", "-16"], "--height -16"),
    "num-frames-0": (["--num_frames", "0"], "--num_frames 0"),
    "num-frames-1": (["--num_frames", "1"], "--num_frames 1"),
    "fps-0": (["--fps", "0"], "--fps 0"),
    "fps-negative": (["--fps", "-5"], "--fps -5"),
    "fps-nan": (["--fps", "nan"], "--fps nan"),
    "fps-huge": (["--fps", "1e9"], "--fps 1e+09"),
    "freeze-frame-negative": (["--freeze_frame", "-1", "--freeze_repeat", "3"], "--freeze_frame -1"),
    "freeze-repeat-negative": (["--freeze_repeat", "-2"], "--freeze_repeat -2"),
    "slowmo-half": (["--slowmo", "0.5"], "--slowmo 0.5"),
    "slowmo-inf": (["--slowmo", "inf"], "--slowmo inf"),
    "max-frames-0": (["--max_frames", "0"], "--max_frames 0"),
    "num-frames-above-max": (["--num_frames", "50", "--max_frames", "40"], "--max_frames 40"),
    "freeze-repeat-above-max": (["--freeze_repeat", "100000"], "exceed --max_frames 1000"),
}
BATCH_ONLY = {
    "nproc-0": (["--step3_nproc", "0"], "--step3_nproc 0"),
    "port-0": (["--master_port", "0"], "--master_port 0"),
    "port-huge": (["--master_port", "70000"], "--master_port 70000"),
    "gpus-words": (["--step2_gpus", "first"], "--step2_gpus 'first'"),
    "da3-chunk-1": (["--da3_chunk_size", "1"], "--da3_chunk_size 1"),
    "geometry-dir-missing": (["--geometry_dir", "/nonexistent/caches"], "--geometry_dir /nonexistent/caches"),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    return make_input(tmp_path_factory.mktemp("flags") / "in", names=("a",))


@pytest.fixture
def env(tmp_path, inputs):
    return dict(inp=inputs, traj=write_traj(tmp_path / "orbit.txt"), out=tmp_path / "out", work=tmp_path / "work",
                weights=tmp_path / "no-weights", tmp=tmp_path)


def batch(e: dict, command: str, *extra: str):
    return CliRunner().invoke(app, [command, "--input_dir", str(e["inp"]), "--traj_txt_path", str(e["traj"]),
                                    "--output_folder", str(e["out"]), "--work_dir", str(e["work"]),
                                    "--checkpoints_dir", str(e["weights"]), *SIZE, *extra])


def on_files(e: dict, *extra: str):
    return CliRunner().invoke(app, ["render", "--video", str(e["inp"] / "a.mp4"), "--geometry",
                                    str(e["inp"] / "geometry" / "a.npz"), "--traj", str(e["traj"]),
                                    "--out", str(e["out"]), *SIZE, *extra])


def assert_refused(result, words: str, e: dict) -> None:
    assert result.exit_code == 1, result.output
    assert words in result.output, result.output
    assert "Traceback" not in result.output and "EncodeOptions" not in result.output
    assert not e["out"].exists() and not e["work"].exists(), "a refused flag must not write anything"


@pytest.mark.parametrize("command", ["run", "render", "caption"])
@pytest.mark.parametrize("kind", list(BAD_FLAGS) + list(BATCH_ONLY))
def test_batch_commands_refuse_bad_flags_up_front(env, command, kind):
    flags, words = {**BAD_FLAGS, **BATCH_ONLY}[kind]
    assert_refused(batch(env, command, *flags), words, env)


@pytest.mark.parametrize("kind", list(BAD_FLAGS))
def test_render_on_files_refuses_bad_flags_up_front(env, kind):
    flags, words = BAD_FLAGS[kind]
    assert_refused(on_files(env, *flags), words, env)


def test_freeze_frame_beyond_the_video_fails_that_video_before_any_stage(env, tmp_path):
    inp = shutil.copytree(env["inp"], tmp_path / "two")
    make_input(inp, names=("long",), n_frames=24)  # 24 frames: frame 20 exists; a.mp4 has 12
    result = CliRunner().invoke(app, ["run", "--input_dir", str(inp), "--traj_txt_path", str(env["traj"]),
                                      "--output_folder", str(env["out"]), "--work_dir", str(env["work"]),
                                      "--checkpoints_dir", str(env["weights"]), *SIZE,
                                      "--freeze_frame", "20", "--freeze_repeat", "3"])
    assert result.exit_code == 1, result.output
    assert "--freeze_frame 20" in result.output and "a.mp4" in result.output and "12 frames" in result.output
    assert not (env["work"] / "a").exists(), "caption and geometry must not run for a video the flags cannot fit"
    assert (env["out"] / "long" / "preview.mp4").is_file()
    files = dict(env, out=tmp_path / "files", work=tmp_path / "unused")
    assert_refused(on_files(files, "--freeze_frame", "12", "--freeze_repeat", "3"), "--freeze_frame 12", files)


def test_source_longer_than_max_frames_fails_that_video_before_any_stage(env):
    result = batch(env, "run", "--max_frames", "10")
    assert result.exit_code == 1, result.output
    assert "a.mp4: 12 output frames" in result.output and "exceed --max_frames 10" in result.output
    assert not (env["work"] / "a").exists()


def test_good_flags_still_run(env):
    result = on_files(env, "--fps", "12", "--num_frames", "9", "--freeze_frame", "11", "--freeze_repeat", "2")
    assert result.exit_code == 0, result.output


def test_frame_count_is_capped_and_shown_in_the_plan_and_the_log(env, tmp_path):
    """A 10,000-keyframe file: the adaptive count (ceil(total / 0.8) + 1 = 499,951 here) is capped by
    --max_frames, and the count is in the --dry_run plan, the log and the render's cameras.json."""
    many = write_traj(tmp_path / "many.txt", "0\n" + " ".join(["20", "-20"] * 5000) + "\n1\n")
    adaptive = ["--width", "64", "--height", "48"]
    plan = CliRunner().invoke(app, ["run", "--input_dir", str(env["inp"]), "--traj_txt_path", str(many),
                                    "--output_folder", str(env["out"]), "--work_dir", str(env["work"]),
                                    "--checkpoints_dir", str(env["weights"]), *adaptive, "--dry_run"])
    assert plan.exit_code == 0, plan.output
    assert "1000 output frames (capped by --max_frames: the adaptive count is 499951" in plan.output
    assert not env["out"].exists()
    out = tmp_path / "r"
    result = CliRunner().invoke(app, ["render", "--video", str(env["inp"] / "a.mp4"), "--geometry",
                                      str(env["inp"] / "geometry" / "a.npz"), "--traj", str(many), "--out", str(out),
                                      *adaptive, "--max_frames", "130"])
    assert result.exit_code == 0, result.output
    assert "130 output frames (capped by --max_frames" in result.output
    assert len(json.loads((out / "cameras.json").read_text())["frames"]) == 130
