"""Bad-input battery, real processes: what ``CliRunner`` cannot see (stderr of a real process, signals,
two runs at once, a rerun that fails after a good one)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.manifest import read_manifest
from pipeline_inputs import add_video, leftovers, make_input, write_traj

REPO = Path(__file__).resolve().parents[1]
# A render that takes a few seconds, so that a second process can start while the first still writes.
SLOW = ["--width", "256", "--height", "160", "--disable_adaptive_frame", "--num_frames", "200"]


@pytest.fixture(scope="module")
def good_input(tmp_path_factory) -> Path:
    return make_input(tmp_path_factory.mktemp("procs") / "in", names=("good",))


@pytest.fixture
def case(tmp_path, good_input):
    inp = shutil.copytree(good_input, tmp_path / "in")
    return dict(tmp=tmp_path, inp=inp, traj=write_traj(tmp_path / "orbit.txt"), out=tmp_path / "out",
                work=tmp_path / "work")


# `python -m pipeline ARGS` that first imports everything, then waits until the file GO exists, so that
# it starts its work at a chosen moment (imports alone take seconds on a loaded machine).
_ON_CUE = ("import pathlib, sys, time\nimport pipeline.batch, pipeline.render_output\nfrom pipeline.cli import main\ngo = pathlib.Path(sys.argv.pop(1))\n"
           "while not go.exists():\n    time.sleep(0.005)\nmain()\n")


def start(*args: str, cue: Path | None = None) -> subprocess.Popen:
    """``python -m pipeline ARGS`` as a new process group; with ``cue``, it begins once that file exists."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    head = ["-m", "pipeline"] if cue is None else ["-c", _ON_CUE, str(cue)]
    return subprocess.Popen([sys.executable, *head, *args], cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def wait_for_temp_files(folder: Path, proc: subprocess.Popen) -> None:
    """Until ``proc`` has opened its outputs in ``folder`` (its temporary files exist)."""
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if folder.is_dir() and any(".tmp" in p.name for p in folder.iterdir()):
            return
        time.sleep(0.005)
    pytest.fail(f"the process never started writing {folder} (exit status {proc.poll()})")


def render_args(c: dict, out: Path, traj: Path) -> list[str]:
    return ["render", "--video", str(c["inp"] / "good.mp4"), "--geometry", str(c["inp"] / "geometry" / "good.npz"),
            "--traj", str(traj), "--out", str(out), *SLOW]


def run_args(c: dict) -> list[str]:
    return ["run", "--input_dir", str(c["inp"]), "--traj_txt_path", str(c["traj"]), "--output_folder", str(c["out"]),
            "--work_dir", str(c["work"]), "--checkpoints_dir", str(c["tmp"] / "no-weights"), *SLOW]


def assert_clean(text: str) -> None:
    assert "Traceback" not in text and "Errno" not in text, text


@pytest.mark.parametrize("second_traj", ["same", "other"])
def test_two_renders_into_one_folder_both_succeed(case, second_traj):
    """The second run waits for the first (never deletes its temporary files), then reuses or redoes."""
    out = case["tmp"] / "render"
    other = write_traj(case["tmp"] / "other.txt", "0 -4 -8\n0 -6 -12\n1 1 1\n")
    cue = case["tmp"] / "go"
    second = start(*render_args(case, out, case["traj"] if second_traj == "same" else other), "-v", cue=cue)
    first = start(*render_args(case, out, case["traj"]))
    wait_for_temp_files(out, first)
    cue.touch()
    (code1, out1, err1), (code2, out2, err2) = finish(first), finish(second)
    assert (code1, code2) == (0, 0), out1 + err1 + out2 + err2
    for text in (out1, err1, out2, err2):
        assert_clean(text)
    assert "another run is writing" in err2
    if second_traj == "same":
        assert "reused" in out2
    else:
        assert "rendered" in out2
    manifest = read_manifest(out)
    assert manifest is not None and not leftovers(out)
    again = start(*render_args(case, out, case["traj"] if second_traj == "same" else other))
    assert "reused" in finish(again)[1]  # the folder holds exactly what its manifest says


def test_two_batch_runs_into_one_work_folder_both_finish(case):
    cue = case["tmp"] / "go"
    second = start(*run_args(case), cue=cue)
    first = start(*run_args(case))
    wait_for_temp_files(case["work"] / "good" / "renders" / "orbit", first)
    cue.touch()
    (code1, out1, err1), (code2, out2, err2) = finish(first), finish(second)
    assert (code1, code2) == (3, 3), out1 + err1 + out2 + err2  # only the generation weights are missing
    for text in (out1, err1, out2, err2):
        assert_clean(text)
    assert read_manifest(case["out"] / "good") is not None and not leftovers(case["out"], case["work"])


def test_sigint_mid_render_stops_cleanly_then_rerun_finishes(case):
    render_dir = case["work"] / "good" / "renders" / "orbit"
    proc = start(*run_args(case))
    wait_for_temp_files(render_dir, proc)
    os.killpg(proc.pid, signal.SIGINT)
    code, out, err = finish(proc)
    assert code == 130, out + err
    assert_clean(out + err)
    assert "interrupted" in err.lower()
    assert read_manifest(render_dir) is None, out + err
    assert not leftovers(case["out"], case["work"]), out + err
    code, out, err = finish(start(*run_args(case)))
    assert code == 3, out + err
    assert read_manifest(render_dir) is not None and (case["out"] / "good" / "preview.mp4").is_file()


def test_failed_rerun_withdraws_the_published_outputs(case):
    """Run, replace the input video with a different one (its provided geometry no longer fits), rerun:
    the rerun fails, and nothing in the output folder still looks like a result for the new input."""
    fast = ["--width", "64", "--height", "48", "--disable_adaptive_frame"]
    args = run_args(case)[: -len(SLOW)] + fast
    code, out, err = finish(start(*args))
    assert code == 3, out + err
    published = case["out"] / "good"
    assert (published / "preview.mp4").is_file() and read_manifest(published) is not None
    geometry = case["inp"] / "geometry" / "good.npz"
    kept = geometry.read_bytes(), geometry.with_suffix(".json").read_bytes()
    add_video(case["inp"], "good", n_frames=14)  # a different video under the same name
    geometry.write_bytes(kept[0])
    geometry.with_suffix(".json").write_bytes(kept[1])
    code, out, err = finish(start(*args))
    assert code == 1, out + err
    assert_clean(out + err)
    assert "withdrawn" in out and str(published) in out
    assert not published.exists()
    assert "the outputs of an earlier run" in err  # the log says so as well as the table


def test_publish_without_a_result_removes_an_earlier_result(case):
    """A result published by an earlier run (weights present then) must not sit beside new conditions."""
    stale = case["out"] / "good" / "generated.mp4"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an earlier run's result")
    code, out, err = finish(start(*run_args(case)[: -len(SLOW)], "--width", "64", "--height", "48",
                                  "--disable_adaptive_frame"))
    assert code == 3, out + err
    assert not stale.exists() and (case["out"] / "good" / "preview.mp4").is_file()
    assert json.loads((case["out"] / "good" / "manifest.json").read_text())["outputs"].get("generated.mp4") is None


def test_blocked_rerun_withdraws_the_published_outputs(case):
    """Replace the video by one without a provided geometry cache (DA3 weights missing): the rerun cannot
    render it, so the previous video's preview must not stay published."""
    fast = ["--width", "64", "--height", "48", "--disable_adaptive_frame"]
    args = run_args(case)[: -len(SLOW)] + fast
    assert finish(start(*args))[0] == 3
    published = case["out"] / "good"
    assert (published / "preview.mp4").is_file()
    (case["inp"] / "geometry" / "good.npz").unlink()
    (case["inp"] / "geometry" / "good.json").unlink()
    add_video(case["inp"], "good", n_frames=14, geometry=False)
    code, out, err = finish(start(*args))
    assert code == 3, out + err  # weights missing: not an error of the video
    assert_clean(out + err)
    assert "the outputs of an earlier run" in err and str(published) in err
    assert not published.exists()


def test_a_render_that_fails_leaves_no_empty_folder(case):
    """The geometry cache belongs to a 24-frame clip: the render fails inside the stage, naming the cache,
    and the folder it would have written is not left behind."""
    other = add_video(case["tmp"] / "other", "long", n_frames=24)
    out = case["tmp"] / "render"
    code, stdout, err = finish(start("render", "--video", str(case["inp"] / "good.mp4"), "--geometry",
                                     str(other.parent / "geometry" / "long.npz"), "--traj", str(case["traj"]),
                                     "--out", str(out), "--width", "64", "--height", "48"))
    assert code == 1 and "long.npz" in err, stdout + err
    assert_clean(stdout + err)
    assert not out.exists()
