"""Captions through the CLI with a tiny random Florence-2 loaded by the real loader (batched over videos)."""

from __future__ import annotations

from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.manifest import read_manifest
from pipeline_inputs import ARGS, add_video, table, write_traj
from test_florence import native_dir  # noqa: F401  (tiny native Florence-2 folder)


def test_caption_command_with_florence(tmp_path, native_dir):  # noqa: F811
    inp = tmp_path / "in"
    for name in ("a", "b"):
        add_video(inp, name)
    args = ["caption", "--input_dir", str(inp), "--traj_txt_path", str(write_traj(tmp_path / "t.txt")),
            "--output_folder", str(tmp_path / "out"), "--work_dir", str(tmp_path / "work"),
            "--florence_model_path", str(native_dir), *ARGS]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert table(first.output) == {v: ["ran", "-", "-", "-"] for v in ("a.mp4", "b.mp4")}
    for v in ("a", "b"):
        caption = (tmp_path / "work" / v / "caption" / "caption.txt").read_text()
        assert caption.strip() and read_manifest(tmp_path / "work" / v / "caption")["params"]["source"] == "florence"
    again = CliRunner().invoke(app, args)
    assert table(again.output) == {v: ["reused", "-", "-", "-"] for v in ("a.mp4", "b.mp4")}
    given = CliRunner().invoke(app, [*args, "--caption", "A room."])
    assert table(given.output)["a.mp4"][0] == "ran"
    assert (tmp_path / "work" / "a" / "caption" / "caption.txt").read_text().strip() == "A room."
