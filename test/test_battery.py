"""Bad-input battery: every case gives a clear error naming the problem and the file, leaves no partial
output, and lets the other videos of the batch finish."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from geometry.cache import load_geometry, save_geometry, sidecar_path
from pipeline.cli import app
from pipeline.manifest import read_manifest
from pipeline_inputs import ARGS, add_video, leftovers, make_input, synthetic_clip, write_traj

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def good_input(tmp_path_factory) -> Path:
    return make_input(tmp_path_factory.mktemp("good") / "in", names=("good",))


@pytest.fixture
def case(tmp_path, good_input):
    """A fresh copy of the one-good-video input folder, a trajectory, and empty output/work/weights folders."""
    inp = shutil.copytree(good_input, tmp_path / "in")
    return dict(tmp=tmp_path, inp=inp, traj=write_traj(tmp_path / "orbit.txt"), out=tmp_path / "out", work=tmp_path / "work")


def run(c: dict, *extra: str, input_dir: Path | None = None, traj: Path | None = None, out: Path | None = None):
    args = ["run", "--input_dir", str(input_dir or c["inp"]), "--traj_txt_path", str(traj or c["traj"]),
            "--output_folder", str(out or c["out"]), "--work_dir", str(c["work"]),
            "--checkpoints_dir", str(c["tmp"] / "no-weights"), *ARGS, *extra]
    return CliRunner().invoke(app, args)


def assert_nothing_written(c: dict) -> None:
    assert not c["out"].exists() and not c["work"].exists()


def assert_good_finished(c: dict) -> None:
    out = c["out"] / "good"
    assert (out / "preview.mp4").is_file() and (out / "render.mp4").is_file()
    assert read_manifest(out) is not None
    assert not leftovers(c["out"], c["work"])


# ---------------------------------------------------------------- run-level problems: nothing is written


def test_missing_input_folder(case):
    result = run(case, input_dir=case["tmp"] / "nowhere")
    assert result.exit_code == 1
    assert "does not exist" in result.output and "nowhere" in result.output
    assert_nothing_written(case)


def test_empty_input_folder(case):
    empty = case["tmp"] / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a video")
    result = run(case, input_dir=empty)
    assert result.exit_code == 1
    assert "contains no videos" in result.output and "empty" in result.output
    assert_nothing_written(case)


@pytest.mark.parametrize(
    "text, expected",
    [
        (None, "neither a file nor a preset"),
        ("", "missing the pitch line"),
        ("0 10\n0 ten\n1 1\n", "not a number"),
        ("0 nan\n0 10\n1 1\n", "non-finite"),
        ("0 10\n0 10\n", "missing the displacement line"),
        ("0 10\n0 10\n1 1\n0 1\n2\n", "unknown extra line"),
        ("0 10\n0 10\n1 1e38\n", "displacement beyond"),
    ],
    ids=["missing", "empty", "non-numeric", "nan", "missing-line", "five-lines", "huge-displacement"],
)
def test_bad_trajectory(case, text, expected):
    traj = case["tmp"] / "bad_traj.txt"
    if text is not None:
        traj.write_text(text)
    result = run(case, traj=traj)
    assert result.exit_code == 1
    assert expected in result.output and "bad_traj.txt" in result.output
    if text and text.strip():
        token = {"not a number": "'ten'", "non-finite": "'nan'", "unknown extra line": "'2'",
                 "displacement beyond": "'1e38'"}.get(expected, "")
        assert token in result.output
    assert_nothing_written(case)


def test_unwritable_output_folder(case):
    blocker = case["tmp"] / "blocker"
    blocker.write_text("a file where a folder should be")
    result = run(case, out=blocker / "out")
    assert result.exit_code == 1
    assert "not writable" in result.output and str(blocker / "out") in result.output
    assert not case["work"].exists()


# ---------------------------------------------------------------- one bad video: reported, the rest finish


def _zero_byte(folder: Path) -> Path:
    path = folder / "bad.mp4"
    path.write_bytes(b"")
    return path


def _text_file(folder: Path) -> Path:
    path = folder / "bad.mp4"
    path.write_text("this is a text file, not a video\n" * 20)
    return path


def _truncated(folder: Path) -> Path:
    src = add_video(folder / "tmp", "long", n_frames=24, geometry=False)
    data = src.read_bytes()
    path = folder / "bad.mp4"
    path.write_bytes(data[: len(data) // 2])
    shutil.rmtree(folder / "tmp")
    return path


def _frames(n: int):
    def make(folder: Path) -> Path:
        return add_video(folder, "bad", n_frames=n)
    return make


def _tiny(folder: Path) -> Path:
    return add_video(folder, "bad", size=(16, 12))


BAD_VIDEOS = {
    "zero-byte": (_zero_byte, "empty (0 bytes)"),
    "text-as-mp4": (_text_file, "not a video file"),
    "truncated": (_truncated, "truncated"),
    "one-frame": (_frames(1), "has 1 frame(s)"),
    "shorter-than-a-block": (_frames(5), "shorter than one generation block"),
    "tiny-resolution": (_tiny, "too small"),
}


@pytest.mark.parametrize("kind", list(BAD_VIDEOS))
def test_bad_video_is_skipped(case, kind):
    make, expected = BAD_VIDEOS[kind]
    bad = make(case["inp"])
    result = run(case)
    assert result.exit_code == 1, result.output
    assert expected in result.output and str(bad) in result.output
    assert "FAILED" in result.output or "ERROR" in result.output
    assert not (case["out"] / "bad").exists() and not (case["work"] / "bad").exists()
    assert_good_finished(case)


def test_odd_resolution_works(case):
    add_video(case["inp"], "odd", size=(67, 51))
    result = run(case)
    assert result.exit_code == 3, result.output  # only the generation weights are missing
    assert (case["out"] / "odd" / "preview.mp4").is_file()
    assert_good_finished(case)


# ---------------------------------------------------------------- geometry caches that do not fit their video


def _cache_wrong_frames(geometry: Path, video: Path) -> None:
    _, cache = synthetic_clip(10, 64, 48)
    meta = load_geometry(geometry).meta
    save_geometry(geometry, dataclasses.replace(cache, meta=dataclasses.replace(meta, frame_count=10)))


def _cache_wrong_hash(geometry: Path, video: Path) -> None:
    cache = load_geometry(geometry)
    save_geometry(geometry, dataclasses.replace(cache, meta=dataclasses.replace(cache.meta, video_sha256="0" * 64)))


def _cache_old_version(geometry: Path, video: Path) -> None:
    side = sidecar_path(geometry)
    data = json.loads(side.read_text())
    data["format_version"] = 0
    side.write_text(json.dumps(data))


BAD_CACHES = {
    "frame-count": (_cache_wrong_frames, "holds 10 frames but the video has 12"),
    "video-hash": (_cache_wrong_hash, "different video"),
    "old-format": (_cache_old_version, "older than the supported"),
}


@pytest.mark.parametrize("kind", list(BAD_CACHES))
def test_mismatched_geometry_cache(case, kind):
    spoil, expected = BAD_CACHES[kind]
    video = add_video(case["inp"], "bad")
    geometry = case["inp"] / "geometry" / "bad.npz"
    spoil(geometry, video)
    result = run(case)
    assert result.exit_code == 1, result.output
    assert expected in result.output and "bad" in result.output and "geometry" in result.output
    assert not (case["out"] / "bad").exists()
    assert read_manifest(case["work"] / "bad" / "geometry") is None
    assert_good_finished(case)


# ---------------------------------------------------------------- weights


def test_missing_weights_after_everything_that_could_run(case):
    add_video(case["inp"], "nodepth", geometry=False)  # needs DA3 and (no caption given) Florence-2
    result = run(case)
    assert result.exit_code == 3, result.output
    text = result.output
    for piece in ("Depth-Anything-3", str(case["tmp"] / "no-weights" / "DA3"), "bash scripts/download.sh da3",
                  "Florence-2", "bash scripts/download.sh florence",
                  "causal DiT", "bash scripts/download.sh inspatio", "bash scripts/download.sh wan"):
        assert piece in text
    assert text.count("bash scripts/download.sh da3") == 1  # one explanation per missing file
    assert not (case["out"] / "nodepth").exists() and not (case["work"] / "nodepth").exists()
    assert_good_finished(case)


# ---------------------------------------------------------------- killed mid-render, then rerun


def _cli(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def test_sigkill_mid_render_then_rerun(case):
    big = ["--width", "128", "--height", "80", "--disable_adaptive_frame", "--num_frames", "25"]
    common = ["run", "--input_dir", str(case["inp"]), "--traj_txt_path", str(case["traj"]),
              "--output_folder", str(case["out"]), "--work_dir", str(case["work"]),
              "--checkpoints_dir", str(case["tmp"] / "no-weights"), *big]
    first = CliRunner().invoke(app, common)
    assert first.exit_code == 3, first.output
    render_dir = case["work"] / "good" / "renders" / "orbit"
    old_cameras = (render_dir / "cameras.json").read_text()

    write_traj(case["traj"], "0 -4 -8\n0 -6 -12\n1 1 1\n")  # same name, new path: the render must be redone
    killed = _cli(*common)
    deadline = time.time() + 120
    while time.time() < deadline and killed.poll() is None:
        if any(render_dir.glob(".*tmp*")):  # the render stage has opened its outputs
            break
        time.sleep(0.005)
    assert killed.poll() is None, "the render finished before it could be interrupted"
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    assert read_manifest(render_dir) is None  # the old manifest was withdrawn before rendering began

    rerun = CliRunner().invoke(app, common)
    assert rerun.exit_code == 3, rerun.output
    assert "ran" in rerun.output
    assert read_manifest(render_dir) is not None
    assert (render_dir / "cameras.json").read_text() != old_cameras
    assert not leftovers(case["out"], case["work"])  # the killed run's temporary files were cleared

    reference = case["tmp"] / "reference"
    result = CliRunner().invoke(app, ["render", "--video", str(case["inp"] / "good.mp4"), "--geometry",
                                      str(case["inp"] / "geometry" / "good.npz"), "--traj", str(case["traj"]),
                                      "--out", str(reference), *big])
    assert result.exit_code == 0, result.output
    with np.load(render_dir / "mask.npz") as got, np.load(reference / "mask.npz") as want:
        assert got.files == want.files and all(np.array_equal(got[k], want[k]) for k in got.files)
    assert json.loads((render_dir / "cameras.json").read_text()) == json.loads((reference / "cameras.json").read_text())
    published = case["out"] / "good" / "cameras.json"
    assert published.read_text() == (render_dir / "cameras.json").read_text()
