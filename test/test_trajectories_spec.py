"""Trajectory file parsing: accepted forms, and errors that name file, line and token."""

from __future__ import annotations

import numpy as np
import pytest

from trajectories import TrajectoryError, load_trajectory, parse_trajectory


def test_reference_three_line_file_with_trailing_spaces_and_blank_line(tmp_path):
    path = tmp_path / "ref.txt"
    path.write_text("0 10 20 \n0 -5  0 0 \n1 1 1 1 1 1 \n\n")
    spec = load_trajectory(path)
    np.testing.assert_array_equal(spec.pitch, [0, 10, 20])
    np.testing.assert_array_equal(spec.yaw, [0, -5, 0, 0])
    np.testing.assert_array_equal(spec.displacement, [1] * 6)
    assert spec.time is None and spec.source == str(path) and spec.text == path.read_text()


def test_comments_blank_lines_and_time_line():
    spec = parse_trajectory("# header\n\n  # indented comment\n0 1e1 -2.5 # pitch\n# between\n0\n1\n0 0.5 1\n\n# tail\n")
    np.testing.assert_array_equal(spec.pitch, [0, 10, -2.5])
    np.testing.assert_array_equal(spec.yaw, [0])
    np.testing.assert_array_equal(spec.time, [0, 0.5, 1])


@pytest.mark.parametrize(
    "text, line, token, words",
    [
        ("0 10\n0 5\n", 3, "<end of file>", "missing the displacement line"),
        ("# only a comment\n", 2, "<end of file>", "missing the pitch line"),
        ("0 10\n0 abc 5\n1\n", 2, "abc", "not a number"),
        ("0 10\n0 5\n1 1,5\n", 3, "1,5", "not a number"),
        ("0 nan\n0\n1\n", 1, "nan", "non-finite"),
        ("0\n0 -inf\n1\n", 2, "-inf", "non-finite"),
        ("0\n0\n1e999\n", 3, "1e999", "non-finite"),
        ("0 10\n\n0 5\n1\n", 2, "", "empty line where the yaw line"),
        ("0 10\n0 5\n1\n0 1\n2 3\n", 5, "2", "unknown extra line"),
        ("0 361\n0\n1\n", 1, "361", "beyond"),
        ("0\n-400 0\n1\n", 2, "-400", "beyond"),
        ("0\n0\n1\n0 1.5\n", 4, "1.5", "outside [0, 1]"),
        ("0\n0\n1\n-0.1\n", 4, "-0.1", "outside [0, 1]"),
        ("0\n0\n1 1e38\n", 3, "1e38", "displacement beyond"),
        ("0 10\n0\n-1e308\n", 3, "-1e308", "displacement beyond"),
        ("0\n0\n1 10001\n", 3, "10001", "displacement beyond"),
    ],
)
def test_errors_name_file_line_and_token(tmp_path, text, line, token, words):
    path = tmp_path / "bad traj.txt"
    path.write_text(text)
    with pytest.raises(TrajectoryError) as info:
        load_trajectory(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: ")
    assert f"(token {token!r})" in message
    assert words in message
    assert (info.value.source, info.value.line, info.value.token) == (str(path), line, token)
    assert isinstance(info.value, ValueError)


def test_missing_file_is_a_trajectory_error(tmp_path):
    with pytest.raises(TrajectoryError, match="not found"):
        load_trajectory(tmp_path / "absent.txt")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-8-sig"])
def test_unicode_text_with_a_byte_order_mark_is_read(tmp_path, encoding):
    path = tmp_path / "windows.txt"
    text = "0 10\r\n0\t5\r\n1 1\r\n"
    data = text.encode(encoding)
    path.write_bytes(b"\xfe\xff" + data if encoding == "utf-16-be" else data)  # utf-16-be has no BOM by itself
    spec = load_trajectory(path)
    np.testing.assert_array_equal(spec.pitch, [0, 10])
    np.testing.assert_array_equal(spec.yaw, [0, 5])
