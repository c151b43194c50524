"""Every stage through the CLI, generation included, with tiny random models loaded by the real loaders."""

from __future__ import annotations

from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.video_io import probe_video
from pipeline_inputs import ARGS, make_input, table, write_traj
from test_generate import weights  # noqa: F401  (tiny DiT, VAE, umT5 in the published layout)


def test_run_with_generation(tmp_path, weights):  # noqa: F811
    inp = make_input(tmp_path / "in", names=("a",))
    out = tmp_path / "out"
    args = ["run", "--input_dir", str(inp), "--traj_txt_path", str(write_traj(tmp_path / "orbit.txt")),
            "--output_folder", str(out), "--work_dir", str(tmp_path / "work"),
            "--checkpoints_dir", str(tmp_path / "no-weights"), "--checkpoint_path", str(weights.dit),
            "--config_path", str(weights.wan_dir / "config.json"), *ARGS]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert table(first.output)["a.mp4"] == ["ran", "ran", "ran", "ran"]
    result = probe_video(out / "a" / "generated.mp4")
    assert (result.width, result.height, result.num_frames) == (64, 48, 12)
    preview = probe_video(out / "a" / "preview.mp4")
    assert (preview.width, preview.height, preview.num_frames) == (4 * 64, 48, 12)  # source | render | mask | result

    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and table(again.output)["a.mp4"] == ["reused"] * 4
    reseeded = CliRunner().invoke(app, [*args, "--seed", "7"])
    assert reseeded.exit_code == 0 and table(reseeded.output)["a.mp4"] == ["reused", "reused", "reused", "ran"]
