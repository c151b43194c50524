"""The geometry stage through the command line with a tiny Depth-Anything-3 model folder (da3-small, CPU)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from da3_models import tiny_da3, write_da3_folder
from geometry.cache import load_geometry, save_geometry
from geometry.da3 import estimate_geometry, load_da3, processed_size
from pipeline.cli import app
from pipeline.manifest import read_manifest
from pipeline.video_io import file_sha256, read_video
from pipeline_inputs import ARGS, add_video, table, write_traj

N_FRAMES = 9  # the shortest clip the pipeline accepts (one generation block)
DA3_ARGS = ["--da3_process_res", "42", "--da3_chunk_size", "6", "--da3_overlap", "2"]  # 64x48 -> 42x28, 2 chunks


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("geometry")
    video = add_video(root / "in", "a", n_frames=N_FRAMES, geometry=False)
    return dict(root=root, video=video, model=write_da3_folder(root / "DA3", tiny_da3().net),
                traj=write_traj(root / "orbit.txt"))


def cli(s: dict, work: Path, *extra: str, command: str = "geometry", model: str | None = None,
        input_dir: Path | None = None):
    args = [command, "--input_dir", str(input_dir or s["video"].parent), "--traj_txt_path", str(s["traj"]),
            "--output_folder", str(work.parent / "out"), "--work_dir", str(work),
            "--checkpoints_dir", str(s["root"] / "no-weights"), "--da3_model_path", model or str(s["model"]),
            "--caption", "A synthetic room.", *ARGS, *extra]
    return CliRunner().invoke(app, args)


def test_geometry_stage_runs_da3_and_caches_by_its_options(setup, tmp_path):
    work = tmp_path / "work"
    first = cli(setup, work, *DA3_ARGS)
    assert first.exit_code == 0, first.output
    assert table(first.output)["a.mp4"] == ["-", "ran", "-", "-"]

    cache_file = work / "a" / "geometry" / "geometry.npz"
    cache = load_geometry(cache_file, expect_frames=N_FRAMES, expect_video_sha256=file_sha256(setup["video"]))
    assert cache.depth.shape == (N_FRAMES, *processed_size(48, 64, 42)) == (N_FRAMES, 28, 42)
    assert np.array_equal(cache.extrinsics[0], np.eye(4))
    assert cache.meta.extra["chunks"] == [[0, 6], [3, 9]] and cache.meta.extra["weights"] == str(setup["model"])
    # Oracle: the library called directly on the decoded frames with the same model and options.
    direct = estimate_geometry(read_video(setup["video"]), load_da3(setup["model"]), chunk_size=6, overlap=2,
                               process_res=42, progress=False)
    assert np.array_equal(cache.depth, direct.depth) and np.array_equal(cache.conf, direct.conf)
    np.testing.assert_allclose(cache.extrinsics, direct.extrinsics, atol=1e-9)
    np.testing.assert_allclose(cache.intrinsics, direct.intrinsics, atol=1e-9)

    manifest = read_manifest(work / "a" / "geometry")
    again = cli(setup, work, *DA3_ARGS)
    assert table(again.output)["a.mp4"] == ["-", "reused", "-", "-"]
    assert read_manifest(work / "a" / "geometry") == manifest

    for flag, value in (("--da3_chunk_size", "5"), ("--da3_overlap", "3")):
        plan = cli(setup, work, *DA3_ARGS, flag, value, "--dry_run")
        assert f"geometry  would run parameter '{flag[2:]}' changed" in plan.output, plan.output
    finer = cli(setup, work, *DA3_ARGS, "--da3_process_res", "56")
    assert table(finer.output)["a.mp4"] == ["-", "ran", "-", "-"], finer.output
    assert load_geometry(cache_file).depth.shape == (N_FRAMES, 42, 56)

    run = cli(setup, work, *DA3_ARGS, "--da3_process_res", "56", command="run")
    assert run.exit_code == 3, run.output  # generation weights are missing here
    assert table(run.output)["a.mp4"] == ["ran", "reused", "ran", "missing weights"]


def test_random_weight_preset_needs_the_flag_and_reports_implausible_output(setup, tmp_path):
    refused = cli(setup, tmp_path / "work", *DA3_ARGS, model="da3-small")
    assert refused.exit_code == 1
    assert "--da3_model_path da3-small names a Depth-Anything-3 preset" in refused.output
    assert "--da3_random_weights" in refused.output and not (tmp_path / "work").exists()

    torch.manual_seed(0)  # untrained camera head: its field of view comes out as 0 for this seed
    allowed = cli(setup, tmp_path / "work", *DA3_ARGS, "--da3_random_weights", model="da3-small")
    assert allowed.exit_code == 1
    assert "RANDOM DA3 weights" in allowed.output
    assert table(allowed.output)["a.mp4"][1] == "FAILED"
    assert "preset 'da3-small' (random weights) produced implausible geometry for a.mp4" in allowed.output
    assert "--force" not in allowed.output


def test_unusable_provided_cache_names_the_file_not_force(setup, tmp_path):
    add_video(tmp_path / "in", "b", n_frames=N_FRAMES)
    provided = tmp_path / "in" / "geometry" / "b.npz"
    cache = load_geometry(provided)
    save_geometry(provided, dataclasses.replace(cache, meta=dataclasses.replace(cache.meta, video_sha256="0" * 64)))
    result = cli(setup, tmp_path / "work", input_dir=tmp_path / "in")
    assert result.exit_code == 1
    assert f"provided geometry cache {provided} cannot be used for b.mp4: was computed from a different video" \
        in result.output
    assert "--force" not in result.output


def test_bad_da3_options_are_refused(setup, tmp_path):
    for args, message in ((["--da3_overlap", "6"], "--da3_overlap 6: must be at least 1 and less than"),
                          (["--da3_chunk_size", "1"], "--da3_chunk_size 1: must be at least 2"),
                          (["--da3_process_res", "13"], "--da3_process_res 13: must be at least 14")):
        result = cli(setup, tmp_path / "work", *DA3_ARGS, *args)
        assert result.exit_code == 1 and message in result.output, result.output
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize("flag, default", [("--da3_process_res", 504), ("--da3_chunk_size", 128),
                                           ("--da3_overlap", 32)])
def test_help_describes_the_da3_options(flag, default):
    from geometry import da3

    result = CliRunner().invoke(app, ["geometry", "--help"], terminal_width=200)
    block = re.search(rf"{flag} <int>(.*?)(\n  --|$)", result.output, re.DOTALL)
    assert block and f"[default: {default}]" in block.group(1)
    library_default = {"--da3_process_res": da3.DEFAULT_PROCESS_RES, "--da3_chunk_size": da3.DEFAULT_CHUNK_SIZE,
                       "--da3_overlap": da3.DEFAULT_OVERLAP}[flag]
    assert default == library_default


def test_da3_options_reach_torchrun_workers(tmp_path):
    """Workers rebuild the run from its JSON; the DA3 options must survive the round trip."""
    from pipeline.stages.config import GeometrySettings, RunConfig
    from pipeline.stages.weights import default_weight_paths

    cfg = RunConfig(input_dir=tmp_path, traj_path=tmp_path / "t.txt", output_folder=tmp_path / "o",
                    work_dir=tmp_path / "w", weights=default_weight_paths(tmp_path),
                    geometry=GeometrySettings(process_res=42, chunk_size=6, overlap=2))
    assert RunConfig.from_json(cfg.to_json()) == cfg
