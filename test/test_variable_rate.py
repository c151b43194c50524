"""A variable-frame-rate source: the time map follows its timestamps (real time), not its frame count."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.video_io import frame_times, probe_video
from pipeline_inputs import add_video, write_traj

# 12 frames: 7 at 8 fps, a 0.5 s gap (frames dropped while recording), 5 at 8 fps (no output moment
# falls exactly halfway between two source frames, so "nearest" is unambiguous).
TIMES = np.r_[np.arange(7) / 8, 0.75 + 0.5 + np.arange(5) / 8]


def test_render_follows_the_source_timestamps(tmp_path):
    video = add_video(tmp_path / "in", "vfr", times=TIMES)
    np.testing.assert_allclose(frame_times(video) - frame_times(video)[0], TIMES - TIMES[0], atol=1e-3)
    assert probe_video(video).variable_rate
    out = tmp_path / "r"
    args = ["render", "--video", str(video), "--geometry", str(tmp_path / "in" / "geometry" / "vfr.npz"),
            "--traj", str(write_traj(tmp_path / "orbit.txt")), "--out", str(out), "--width", "64", "--height", "48",
            "--disable_adaptive_frame", "--num_frames", "23"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    shown = np.array([f["source_index"] for f in json.loads((out / "cameras.json").read_text())["frames"]])
    # Oracle: output frame i is at real time t_0 + i / 22 (t_last - t_0); it shows the nearest source frame.
    moments = TIMES[0] + np.linspace(0.0, 1.0, 23) * (TIMES[-1] - TIMES[0])
    np.testing.assert_array_equal(shown, np.abs(TIMES[None] - moments[:, None]).argmin(axis=1))
    assert (np.diff(shown) >= 0).all() and np.count_nonzero(shown == 6) >= 3  # the gap holds frame 6 longer
