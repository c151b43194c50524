"""Trajectory text files: parsing and validation.

Format (compatible with the reference system's 3-line files)::

    # comments start with '#', anywhere on a line
    0 10 20 10 0      <- line 1: pitch keyframes, degrees (+ = orbit up)
    0 0 15 30 0       <- line 2: yaw keyframes, degrees (+ = orbit left)
    1 1 1             <- line 3: displacement keyframes (orbit radius, or dolly distance, + = forward)
    0 0.5 1           <- optional line 4: time keyframes, normalised source time in [0, 1]
    zoom 1 1.5 1      <- optional zoom line, anywhere after line 3: focal-length multipliers (1 = source focal)

Numbers are whitespace-separated and each line has its own count of keyframes. Blank and
comment-only lines may appear anywhere except that a blank line between two data lines is an
error: it usually is a line whose numbers were deleted, and skipping it would silently turn the
yaw line into the pitch line. The zoom line is named by its first word (``zoom`` or ``zoom:``), so
3- and 4-line files keep their meaning; its keys are interpolated like the others.

Per-frame camera matrices (``target_tcw.txt``) have their own format: see ``trajectories.matrix_file``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_ANGLE_DEG = 360.0
# Displacements are multiples of the foreground depth (or scene units); beyond this the camera is so far
# away that the float32 renderer sees nothing or overflows, so such a key is a typo, not a path.
MAX_DISPLACEMENT = 1e4
LINE_NAMES = ("pitch", "yaw", "displacement", "time")
ZOOM_WORDS = ("zoom", "zoom:")
MAX_ZOOM = 20.0


class TrajectoryError(ValueError):
    """A trajectory file is malformed; the message names the file, the line and the token."""

    def __init__(self, source: str, line: int, token: str, problem: str, fix: str):
        self.source, self.line, self.token = source, line, token
        super().__init__(f"{source}:{line}: {problem} (token {token!r}); {fix}")


@dataclass(frozen=True)
class TrajectorySpec:
    """Keyframes of one trajectory file.

    pitch, yaw:    [K] float64 degrees (+pitch = orbit up, +yaw = orbit left).
    displacement:  [K] float64, orbit radius, or dolly distance when every angle is 0 (+ = forward);
                   in scene units or in multiples of the foreground depth (see ``PathOptions.radius``).
    time:          [K] float64 normalised source time in [0, 1] (0 = first, 1 = last source frame), or None.
    zoom:          [K] float64 focal-length multipliers in (0, 20] (1 = the source focal length), or None.
    source:        where the text came from (file path or a label), used in messages.
    text:          the raw text.
    Each array has its own length K >= 1; keys are spread evenly over the output, first to last frame.
    """

    pitch: np.ndarray
    yaw: np.ndarray
    displacement: np.ndarray
    time: np.ndarray | None
    source: str
    text: str
    zoom: np.ndarray | None = None


def _parse_number(token: str, source: str, line: int, name: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise TrajectoryError(
            source, line, token, f"{name} line holds a token that is not a number",
            "write plain decimal numbers separated by spaces",
        ) from None
    if not math.isfinite(value):
        raise TrajectoryError(source, line, token, f"{name} line holds a non-finite value", "use finite numbers")
    return value


def _check_range(values: list[float], tokens: list[str], source: str, line: int, name: str) -> None:
    for value, token in zip(values, tokens):
        if name in ("pitch", "yaw") and abs(value) > MAX_ANGLE_DEG:
            raise TrajectoryError(
                source, line, token, f"{name} angle beyond ±{MAX_ANGLE_DEG:g} degrees",
                "angles are in degrees; keep them within [-360, 360]",
            )
        if name == "zoom" and not 0.0 < value <= MAX_ZOOM:
            raise TrajectoryError(
                source, line, token, f"zoom key outside (0, {MAX_ZOOM:g}]",
                "zoom keys multiply the source focal length: 1 = unchanged, 2 = twice the focal length",
            )
        if name == "displacement" and abs(value) > MAX_DISPLACEMENT:
            raise TrajectoryError(
                source, line, token, f"displacement beyond ±{MAX_DISPLACEMENT:g}",
                "displacements are multiples of the subject's depth (or scene units with --radius_mode absolute); "
                "1 orbits at the subject's distance",
            )
        if name == "time" and not 0.0 <= value <= 1.0:
            raise TrajectoryError(
                source, line, token, "time keyframe outside [0, 1]",
                "time keys are normalised source time: 0 = first source frame, 1 = last",
            )


def parse_trajectory(text: str, source: str = "<string>") -> TrajectorySpec:
    """Parse trajectory text (see the module docstring); raises ``TrajectoryError`` on bad input."""
    rows: list[np.ndarray] = []
    zoom: np.ndarray | None = None
    pending_blank: int | None = None
    last_line = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        last_line = number
        content, has_comment, _ = raw.partition("#")
        tokens = content.split()
        if not tokens:
            if not has_comment and rows and pending_blank is None:
                pending_blank = number
            continue
        if tokens[0].lower() in ZOOM_WORDS:
            if zoom is not None or len(rows) < 3 or len(tokens) == 1:
                raise TrajectoryError(
                    source, number, tokens[0], "misplaced or empty zoom line",
                    "write one 'zoom K1 K2 ...' line after the pitch, yaw and displacement lines",
                )
            zoom = np.asarray([_parse_number(t, source, number, "zoom") for t in tokens[1:]], dtype=np.float64)
            _check_range(list(zoom), tokens[1:], source, number, "zoom")
            pending_blank = None
            continue
        if len(rows) == len(LINE_NAMES):
            raise TrajectoryError(
                source, number, tokens[0], f"unknown extra line after the {len(LINE_NAMES)} data lines",
                "a file holds pitch, yaw, displacement and an optional time line; comment it out with '#'",
            )
        if pending_blank is not None:
            raise TrajectoryError(
                source, pending_blank, "", f"empty line where the {LINE_NAMES[len(rows)]} line would follow",
                "every data line needs at least one number (use 0 for no motion); "
                "remove the blank line or make it a '#' comment",
            )
        name = LINE_NAMES[len(rows)]
        values = [_parse_number(t, source, number, name) for t in tokens]
        _check_range(values, tokens, source, number, name)
        rows.append(np.asarray(values, dtype=np.float64))
    if len(rows) < 3:
        raise TrajectoryError(
            source, last_line + 1, "<end of file>", f"missing the {LINE_NAMES[len(rows)]} line",
            "a trajectory needs three data lines: pitch, yaw, displacement",
        )
    return TrajectorySpec(
        pitch=rows[0], yaw=rows[1], displacement=rows[2], time=rows[3] if len(rows) > 3 else None,
        source=source, text=text, zoom=zoom,
    )


def read_trajectory_text(path: Path) -> str:
    """A trajectory file's text (UTF-8, optionally with a BOM, or UTF-16 with a BOM); raises
    ``TrajectoryError`` when missing or not text."""
    try:
        raw = path.read_bytes()
        # UTF-16 with a byte-order mark is what some Windows editors save as "Unicode".
        return raw.decode("utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig")
    except FileNotFoundError:
        raise TrajectoryError(str(path), 0, str(path), "trajectory file not found", "check the path") from None
    except UnicodeDecodeError as err:
        raise TrajectoryError(str(path), 0, "", f"not a UTF-8 text file ({err.reason})", "save it as plain text") from None


def load_trajectory(path: str | Path) -> TrajectorySpec:
    """Read and validate a trajectory file; raises ``TrajectoryError`` naming file, line and token."""
    return parse_trajectory(read_trajectory_text(Path(path)), str(path))
