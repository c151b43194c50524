"""Trajectory files of one 4x4 world-to-camera matrix per output frame (InSpatio-World 1.5's ``target_tcw.txt``).

Format::

    # comments start with '#', anywhere on a line; blank lines are ignored
    1 0 0 0  0 1 0 0  0 0 1 0  0 0 0 1          <- output frame 0: 16 numbers, row-major
    0.9998 0 0.0175 -0.05  0 1 0 0  -0.0175 0 0.9998 0.001  0 0 0 1   <- output frame 1 ...

Each data line is an OpenCV world-to-camera matrix (x right, y down, z forward) whose world is the
first source camera's frame (origin at its centre, its axes) in the geometry's scale (the depth
units), so the identity is the first source view. The number of data lines is the output frame
count (no adaptive resampling, no ``n_frames``). Every matrix must have finite entries, bottom row
``0 0 0 1`` and a rotation block that is orthonormal within ``ORTHONORMAL_TOL`` with determinant +1.

A file is read as a matrix file when its name ends with ``tcw.txt`` or its first data line holds 16
numbers ending in ``0 0 0 1`` (a keyframe file's pitch line never looks like that in practice).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from trajectories.spec import TrajectoryError

ORTHONORMAL_TOL = 1e-4
MATRIX_SUFFIX = "tcw.txt"


@dataclass(frozen=True)
class MatrixTrajectory:
    """Per-frame target cameras of a matrix file.

    w2c:    [N, 4, 4] float64 world-to-camera, OpenCV axes, world = the first source camera's frame.
    source: where the text came from (file path or a label), used in messages.
    text:   the raw text (its hash keys the render cache).
    """

    w2c: np.ndarray
    source: str
    text: str

    def __len__(self) -> int:
        return len(self.w2c)


def _data_lines(text: str):
    for number, raw in enumerate(text.splitlines(), start=1):
        tokens = raw.partition("#")[0].split()
        if tokens:
            yield number, tokens


def looks_like_matrix_text(text: str, name: str = "") -> bool:
    """Whether ``text`` (from a file called ``name``) is a matrix file (see the module docstring)."""
    if name.lower().endswith(MATRIX_SUFFIX):
        return True
    for _, tokens in _data_lines(text):
        try:
            return len(tokens) == 16 and [float(t) for t in tokens[12:]] == [0.0, 0.0, 0.0, 1.0]
        except ValueError:
            return False
    return False


def check_w2c(matrix: np.ndarray, source: str, line: int, token: str) -> None:
    """Raise ``TrajectoryError`` unless ``matrix`` [4, 4] is a finite rigid transform (rotation det +1)."""
    if not np.all(np.isfinite(matrix)):
        raise TrajectoryError(source, line, token, "matrix holds a non-finite value", "use finite numbers")
    if np.max(np.abs(matrix[3] - [0.0, 0.0, 0.0, 1.0])) > ORTHONORMAL_TOL:
        raise TrajectoryError(source, line, token, f"bottom row is {matrix[3].tolist()}, not 0 0 0 1",
                              "write a rigid world-to-camera matrix [[R, t], [0, 0, 0, 1]] row by row")
    rotation = matrix[:3, :3]
    error = float(np.max(np.abs(rotation @ rotation.T - np.eye(3))))
    if error > ORTHONORMAL_TOL:
        raise TrajectoryError(source, line, token,
                              f"rotation block is not orthonormal (max |R Rᵀ - I| = {error:.2e} > {ORTHONORMAL_TOL:g})",
                              "the 3x3 block must be a pure rotation: no scale, no shear; re-orthonormalise it")
    det = float(np.linalg.det(rotation))
    if abs(det - 1.0) > ORTHONORMAL_TOL:
        raise TrajectoryError(source, line, token, f"rotation block has determinant {det:+.4f}, not +1",
                              "a mirrored (left-handed) frame: flip one axis back, e.g. convert OpenGL axes to OpenCV")


def parse_matrix_trajectory(text: str, source: str = "<string>") -> MatrixTrajectory:
    """Parse and validate a matrix file's text; raises ``TrajectoryError`` naming source, line and problem."""
    matrices = []
    for number, tokens in _data_lines(text):
        if len(tokens) != 16:
            raise TrajectoryError(source, number, " ".join(tokens[:4]) + (" ..." if len(tokens) > 4 else ""),
                                  f"line holds {len(tokens)} numbers, not 16",
                                  "write one 4x4 world-to-camera matrix per line, 16 numbers row by row")
        values = []
        for token in tokens:
            try:
                values.append(float(token))
            except ValueError:
                raise TrajectoryError(source, number, token, "matrix line holds a token that is not a number",
                                      "write plain decimal numbers separated by spaces") from None
        bad = next((t for t, v in zip(tokens, values) if not math.isfinite(v)), tokens[0])
        matrix = np.asarray(values, dtype=np.float64).reshape(4, 4)
        check_w2c(matrix, source, number, bad)
        matrices.append(matrix)
    if not matrices:
        raise TrajectoryError(source, 1, "<end of file>", "no matrix lines",
                              "write one 4x4 world-to-camera matrix (16 numbers) per output frame")
    return MatrixTrajectory(w2c=np.stack(matrices), source=source, text=text)


def format_matrix_trajectory(w2c: np.ndarray, comment: str = "") -> str:
    """Text of a matrix file for ``w2c`` [N, 4, 4] (world-to-camera, OpenCV); round-trips exactly (repr floats)."""
    lines = [f"# {line}" for line in comment.splitlines()]
    lines += [" ".join(repr(float(v)) for v in m.reshape(16)) for m in np.asarray(w2c, dtype=np.float64)]
    return "\n".join(lines) + "\n"
