"""Output frame count and the time map (which source frame each output frame shows).

One mechanism: each output frame gets a normalised source time tau in [0, 1] (0 = first source
frame, 1 = last), built from the playback position u = linspace(0, 1, n) by pointwise steps

    v   = u (forward) | 1 - u (reverse) | 1 - |1 - 2u| (pingpong: forward, then back)
    tau = time_keys(v) if the trajectory has a time line, else v   (a constant line = bullet time)
    tau = tau / slowmo                                             (slow motion: the first 1/slowmo of the clip)

then ``index = round(tau * (M - 1))`` (halves round up) for M source frames, and a freeze holds one frame for extra
output frames. With the source's timestamps (a variable-rate video), tau is source *time* instead:
output frame i shows the frame nearest to ``t_0 + tau (t_last - t_0)`` (ties go to the later frame),
which equals the frame-count rule for evenly spaced frames. The map always spans the whole output: when the output has more frames than the
source (a longer ``n_frames`` or the adaptive count), the clip plays once, stretched (each source
frame shown for several output frames); it never loops. This keeps the time line's meaning ("0 -> 1
= the clip plays once across the path") independent of the frame count and never shows time
running backwards unless asked (the reference ping-ponged the rendered video instead).

Named presets (``TIME_PRESETS``, SpaceTimePilot's 13 time modes) are settings of this same map: a
time line given by (u, tau) corners joined linearly, plus a playback mode and a slow-motion factor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from trajectories.interpolate import Interpolation, interpolate_keys

TimeMode = Literal["forward", "reverse", "pingpong"]

MIN_DEG_PER_FRAME = 0.3
MAX_DEG_PER_FRAME = 0.8
MIN_ADAPTIVE_FRAMES = 121
ROUNDING_SLACK = 1e-6  # so that exact halves, computed as 3.4999999..., still round up


def adaptive_frame_count(pitch_keys: np.ndarray, yaw_keys: np.ndarray, n: int) -> int:
    """Output frame count keeping the camera between 0.3 and 0.8 degrees per frame.

    total = max(sum |delta pitch|, sum |delta yaw|) over the keyframes (degrees); the count is ``n``
    clamped to [ceil(total / 0.8) + 1, floor(total / 0.3) + 1], where the lower bound is at least 121
    and wins when the bounds cross. A path without rotation (total ~ 0) keeps ``n``.
    """
    total = max(float(np.abs(np.diff(pitch_keys)).sum()), float(np.abs(np.diff(yaw_keys)).sum()))
    if total < 1e-6:
        return n
    low = max(math.ceil(total / MAX_DEG_PER_FRAME) + 1, MIN_ADAPTIVE_FRAMES)
    high = math.floor(total / MIN_DEG_PER_FRAME) + 1
    return max(min(n, high), low)


def source_times(
    n: int,
    time_keys: np.ndarray | None = None,
    interpolation: Interpolation = "exact",
    time_mode: TimeMode = "forward",
    slowmo: float = 1.0,
    time_knots: np.ndarray | None = None,
) -> np.ndarray:
    """[n] float64 normalised source time per output frame (see the module docstring).

    ``time_knots``: positions in [0, 1] of the ``time_keys`` (increasing), joined linearly; by default
    the keys are spread evenly and joined by ``interpolation``. Keys beyond [0, 1] are clipped after.
    """
    if n < 1:
        raise ValueError(f"a time map needs at least one frame, got {n}")
    if not slowmo >= 1.0:
        raise ValueError(f"slowmo must be a factor >= 1 (2 = half speed), got {slowmo}")
    u = np.linspace(0.0, 1.0, n)
    if time_mode == "forward":
        v = u
    elif time_mode == "reverse":
        v = 1.0 - u
    elif time_mode == "pingpong":
        v = 1.0 - np.abs(1.0 - 2.0 * u)
    else:
        raise ValueError(f"unknown time mode {time_mode!r}; use 'forward', 'reverse' or 'pingpong'")
    if time_keys is None:
        tau = v
    elif time_knots is not None:
        tau = np.interp(v, time_knots, time_keys)
    else:
        tau = interpolate_keys(time_keys, v, interpolation)
    return np.clip(tau / slowmo, 0.0, 1.0)


def time_map(
    n: int,
    n_source: int,
    time_keys: np.ndarray | None = None,
    interpolation: Interpolation = "exact",
    time_mode: TimeMode = "forward",
    slowmo: float = 1.0,
    freeze_frame: int | None = None,
    freeze_repeat: int = 0,
    time_knots: np.ndarray | None = None,
    timestamps: np.ndarray | None = None,
) -> np.ndarray:
    """[n] int64 source frame index per output frame.

    ``timestamps``: [n_source] increasing source frame times in seconds (module docstring); None = evenly spaced.

    The first ``n - freeze_repeat`` frames come from ``source_times``; then ``freeze_repeat`` copies
    of the freeze frame (default: the middle one, ``n_source // 2``) are inserted right after the
    first output frame that shows it (or, if the map skips it, the frame nearest to it), as the
    reference does, while the camera keeps moving.
    """
    if n_source < 1:
        raise ValueError(f"the source needs at least one frame, got {n_source}")
    if not 0 <= freeze_repeat < n:
        raise ValueError(f"freeze_repeat must be in [0, {n - 1}] for {n} output frames, got {freeze_repeat}")
    tau = source_times(n - freeze_repeat, time_keys, interpolation, time_mode, slowmo, time_knots)
    if timestamps is None:
        position = tau * (n_source - 1)
    else:
        times = np.asarray(timestamps, dtype=np.float64)
        if times.shape != (n_source,) or not np.all(np.diff(times) > 0):
            raise ValueError(f"timestamps must be {n_source} increasing times, got shape {times.shape}")
        # Fractional frame position of each moment: nearest in time between the two frames around it.
        position = np.interp(times[0] + tau * (times[-1] - times[0]), times, np.arange(n_source, dtype=np.float64))
    index = np.floor(position + 0.5 + ROUNDING_SLACK).astype(np.int64)
    if freeze_repeat:
        frame = n_source // 2 if freeze_frame is None else freeze_frame
        if not 0 <= frame < n_source:
            raise ValueError(f"freeze_frame must be a source frame index in [0, {n_source - 1}], got {frame}")
        at = int(np.argmin(np.abs(index - frame)))
        index = np.insert(index, at + 1, np.full(freeze_repeat, index[at]))
    return index



@dataclass(frozen=True)
class TimePreset:
    """A named setting of the time map: a time line given as (playback position u, source time tau)
    corners joined linearly (None = no time line), a playback mode and a slow-motion factor."""

    corners: tuple[tuple[float, float], ...] | None = None
    time_mode: TimeMode = "forward"
    slowmo: float = 1.0

    def time_line(self) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
        """(knots, keys) for ``source_times``."""
        if self.corners is None:
            return None, None
        knots, keys = np.asarray(self.corners, dtype=np.float64).T
        return knots, keys


def _frames(*corners: tuple[int, int]) -> tuple[tuple[float, float], ...]:
    """Corners given in frames of the spec's 81-frame window (output frame i, source frame s)."""
    return tuple((i / 80, s / 80) for i, s in corners)


# SpaceTimePilot's 13 time modes (SPACETIMEPILOT_SPEC.md section 7) as settings of the one time map,
# stretched over any output length. At 81 output and 81 source frames all 13 reproduce the spec's
# index lists, except that the bounces stop at the last source frame where the spec runs past it
# (bounce_late to 84 at i = 21..28, bounce_early at i = 61..68; frames 81..84 do not exist in the source).
TIME_PRESETS: dict[str, TimePreset] = {
    "forward": TimePreset(),
    "reverse": TimePreset(time_mode="reverse"),
    "pingpong": TimePreset(_frames((0, 40), (40, 80), (41, 80), (80, 41))),
    "bounce_late": TimePreset(_frames((0, 60), (24, 84), (25, 84), (80, 29))),
    "bounce_early": TimePreset(_frames((0, 20), (64, 84), (65, 84), (80, 69))),
    "slowmo_first_half": TimePreset(slowmo=2.0),
    "slowmo_second_half": TimePreset(_frames((0, 40), (80, 80))),
    "ramp_then_freeze": TimePreset(_frames((0, 0), (40, 40), (80, 40))),
    "freeze_start": TimePreset(_frames((0, 0), (80, 0))),
    "freeze_early": TimePreset(_frames((0, 20), (80, 20))),
    "freeze_mid": TimePreset(_frames((0, 40), (80, 40))),
    "freeze_late": TimePreset(_frames((0, 60), (80, 60))),
    "freeze_end": TimePreset(_frames((0, 80), (80, 80))),
}


def time_preset(name: str) -> TimePreset:
    """The preset of that name; ValueError listing the names otherwise."""
    if name not in TIME_PRESETS:
        raise ValueError(f"unknown time preset {name!r}; choose one of {', '.join(TIME_PRESETS)}")
    return TIME_PRESETS[name]
