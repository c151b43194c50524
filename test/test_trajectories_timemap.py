"""Time maps: which source frame each output frame shows."""

from __future__ import annotations

import numpy as np
import pytest

from trajectories import PathOptions, make_camera_path, parse_trajectory, source_times, time_map

K = np.diag([100.0, 100.0, 1.0])


def cams(text: str, n_source: int = 49, **options):
    return make_camera_path(
        parse_trajectory(text), np.tile(np.eye(4), (n_source, 1, 1)), K, 64, 48, 24.0,
        PathOptions(radius="absolute", adaptive_frames=False, **options),
    )


def test_forward_is_identity_when_counts_match():
    np.testing.assert_array_equal(time_map(49, 49), np.arange(49))


def test_freeze_matches_the_reference_insertion():
    out = time_map(49 + 6, 49, freeze_frame=10, freeze_repeat=6)
    expected = np.r_[np.arange(11), [10] * 6, np.arange(11, 49)]
    np.testing.assert_array_equal(out, expected)
    middle = time_map(49 + 3, 49, freeze_repeat=3)
    np.testing.assert_array_equal(middle, np.r_[np.arange(25), [24] * 3, np.arange(25, 49)])
    path = cams("0\n0 20\n1\n", freeze_frame=10, freeze_repeat=6)
    np.testing.assert_array_equal(path.source_index, expected)
    assert len(np.unique(path.c2w[10:17, 0, 3])) == 7  # the camera keeps moving through the freeze
    with pytest.raises(ValueError, match="freeze_frame"):
        time_map(60, 49, freeze_frame=49, freeze_repeat=3)


def test_reverse_and_pingpong():
    np.testing.assert_array_equal(time_map(49, 49, time_mode="reverse"), np.arange(48, -1, -1))
    pp = time_map(97, 49, time_mode="pingpong")
    np.testing.assert_array_equal(pp, np.r_[np.arange(49), np.arange(47, -1, -1)])


def test_slowmo_plays_the_start_at_reduced_speed():
    np.testing.assert_array_equal(time_map(49, 49, slowmo=2.0), np.r_[0, np.repeat(np.arange(1, 25), 2)])
    with pytest.raises(ValueError, match="slowmo"):
        source_times(10, slowmo=0.5)


def test_time_line_and_bullet_time():
    np.testing.assert_array_equal(cams("0\n0\n0\n0 1\n").source_index, np.arange(49))
    np.testing.assert_array_equal(cams("0\n0\n0\n1 0\n").source_index, np.arange(48, -1, -1))
    half = cams("0\n0\n0\n0 0.5\n", n_frames=25).source_index
    np.testing.assert_array_equal(half, np.arange(25))
    bullet = cams("0\n0 30\n1\n0.25\n")
    np.testing.assert_array_equal(bullet.source_index, np.full(49, 12))
    assert bullet.c2w[-1, 0, 3] < -0.4  # the camera orbits while time stands still
    keys = np.array([0.0, 0.8, 0.8, 0.2, 1.0])
    tau = source_times(401, keys)
    np.testing.assert_allclose(tau[::100], keys, atol=1e-12)  # exact mode hits every time key
    assert tau.min() >= 0.0 and tau.max() <= 1.0


def test_longer_output_stretches_the_clip_once():
    out = time_map(121, 49)
    assert out[0] == 0 and out[-1] == 48
    assert (np.diff(out) >= 0).all() and (np.diff(out) <= 1).all()
    np.testing.assert_array_equal(np.unique(out), np.arange(49))
    short = time_map(25, 49)
    np.testing.assert_array_equal(short, np.arange(0, 49, 2))


def test_adaptive_count_scales_the_freeze():
    path = make_camera_path(
        parse_trajectory("0\n0 40\n1\n"), np.tile(np.eye(4), (49, 1, 1)), K, 64, 48, 24.0,
        PathOptions(radius="absolute", freeze_frame=20, freeze_repeat=10),
    )
    assert len(path) == 121  # 59 nominal frames, raised to the adaptive minimum
    repeat = round(10 * 121 / 59)
    starts = np.flatnonzero(np.r_[True, np.diff(path.source_index) != 0])
    lengths = np.diff(np.r_[starts, len(path)])
    longest = int(np.argmax(lengths))
    assert path.source_index[starts[longest]] == 20 and lengths[longest] >= repeat + 1
    assert path.source_index[0] == 0 and path.source_index[-1] == 48


# A variable-rate source: 25 fps, then a 0.4 s gap (dropped frames), then 25 fps again.
VFR_TIMES = np.r_[np.arange(20) * 0.04, 0.76 + 0.4 + np.arange(29) * 0.04]


@pytest.mark.parametrize("time_mode, slowmo", [("forward", 1.0), ("reverse", 1.0), ("pingpong", 1.0), ("forward", 2.0)])
def test_source_timestamps_map_real_time(time_mode, slowmo):
    """With timestamps, output frame i shows the source frame nearest in time to the time map's moment
    t = t_0 + tau_i (t_last - t_0) (brute-force nearest as the oracle; ties take the later frame)."""
    n = 97
    got = time_map(n, len(VFR_TIMES), time_mode=time_mode, slowmo=slowmo, timestamps=VFR_TIMES)
    tau = source_times(n, time_mode=time_mode, slowmo=slowmo)
    moments = VFR_TIMES[0] + tau * (VFR_TIMES[-1] - VFR_TIMES[0])
    distance = np.abs(VFR_TIMES[None, :] - moments[:, None])
    nearest = np.array([np.flatnonzero(d <= d.min() + 1e-9).max() for d in distance])
    np.testing.assert_array_equal(got, nearest)
    counted = time_map(n, len(VFR_TIMES), time_mode=time_mode, slowmo=slowmo)
    assert not np.array_equal(got, counted)  # frame counting would play the gap at the wrong speed


def test_evenly_spaced_timestamps_equal_frame_counting():
    times = 3.0 + np.arange(49) / 24.0
    for n in (25, 49, 121):
        np.testing.assert_array_equal(time_map(n, 49, timestamps=times), time_map(n, 49))
    np.testing.assert_array_equal(time_map(60, 49, freeze_repeat=5, timestamps=times), time_map(60, 49, freeze_repeat=5))
