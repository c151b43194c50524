"""SpaceTimePilot's 13 time modes as presets of the one time map, against the spec's index formulas
(SPACETIMEPILOT_SPEC.md section 7, T = 81)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trajectories import PathOptions, make_camera_path, parse_trajectory
from trajectories.timemap import TIME_PRESETS, time_map, time_preset

I = np.arange(81)
SPEC = {  # written from the spec's formulas, index i = 0..80
    "forward": I,
    "reverse": 80 - I,
    "pingpong": np.where(I <= 40, 40 + I, 121 - I),
    "bounce_late": np.where(I <= 24, 60 + I, 109 - I),
    "bounce_early": np.where(I <= 64, 20 + I, 149 - I),
    "slowmo_first_half": np.array([0] + [math.ceil(i / 2) for i in range(1, 81)]),
    "slowmo_second_half": np.array([40] + [40 + math.ceil(i / 2) for i in range(1, 81)]),
    "ramp_then_freeze": np.minimum(I, 40),
    "freeze_start": np.full(81, 0),
    "freeze_early": np.full(81, 20),
    "freeze_mid": np.full(81, 40),
    "freeze_late": np.full(81, 60),
    "freeze_end": np.full(81, 80),
}


def _preset_map(name: str, n: int = 81, n_source: int = 81) -> np.ndarray:
    p = time_preset(name)
    knots, keys = p.time_line()
    return time_map(n, n_source, keys, "exact", p.time_mode, p.slowmo, time_knots=knots)


def test_thirteen_presets():
    assert set(TIME_PRESETS) == set(SPEC)


@pytest.mark.parametrize("name", sorted(SPEC))
def test_preset_equals_spec_formula(name):
    """Equal everywhere the spec shows an existing source frame; the spec's 81..84 show the last one."""
    got = _preset_map(name)
    want = SPEC[name]
    assert np.array_equal(got, np.minimum(want, 80))
    beyond = np.flatnonzero(want > 80)
    assert name.startswith("bounce") or beyond.size == 0
    assert np.all(got[beyond] == 80)


def test_presets_stretch_over_other_lengths():
    """Ping-pong over 41 output frames of a 21-frame source: starts mid-clip, turns at the end, comes back."""
    got = _preset_map("pingpong", n=41, n_source=21)
    assert got[0] == 10 and got.max() == 20 and got[-1] in (10, 11)
    assert np.all(np.diff(got[: np.argmax(got)]) >= 0) and np.all(np.diff(got[np.argmax(got) + 1:]) <= 0)


def test_camera_path_uses_the_preset():
    spec = parse_trajectory("0 10\n0 20\n1\n")
    c2w = np.repeat(np.eye(4)[None], 81, axis=0)
    K = np.array([[50.0, 0, 32], [0, 50, 24], [0, 0, 1]])
    opts = PathOptions(n_frames=81, adaptive_frames=False, radius="absolute", time_preset="bounce_early")
    path = make_camera_path(spec, c2w, K, 64, 48, 8.0, opts)
    assert np.array_equal(path.source_index, np.minimum(SPEC["bounce_early"], 80))


def test_preset_conflicts_are_explained():
    with pytest.raises(ValueError, match="unknown time preset 'zigzag'; choose one of forward"):
        PathOptions(time_preset="zigzag")
    with pytest.raises(ValueError, match="--time_mode/--slowmo"):
        PathOptions(time_preset="pingpong", slowmo=2.0)
    spec = parse_trajectory("0\n0\n1\n0.5\n", source="bullet.txt")
    opts = PathOptions(n_frames=9, adaptive_frames=False, radius="absolute", time_preset="reverse")
    with pytest.raises(ValueError, match="bullet.txt: has a time line"):
        make_camera_path(spec, np.eye(4)[None], np.eye(3), 8, 8, 8.0, opts)


def test_cli_names_the_presets_on_a_bad_name(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    out = CliRunner().invoke(app, ["run", "--input_dir", str(tmp_path), "--traj_txt_path", "orbit_left",
                                   "--time_preset", "zigzag"])
    assert out.exit_code == 1
    assert "unknown time preset 'zigzag'; choose one of forward, reverse, pingpong" in out.output
