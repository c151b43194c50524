"""Sharding videos over torchrun ranks (pipeline.dist), on CPU with gloo."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline.dist import Rank, current_rank, shard, torchrun_argv


@pytest.mark.parametrize("n", [0, 1, 5, 8, 13])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shards_partition_and_balance(n, world):
    items = [f"v{i:02d}.mp4" for i in range(n)]
    parts = [shard(items, r, world) for r in range(world)]
    assert sorted(x for p in parts for x in p) == items  # every video exactly once
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_shard_rejects_bad_rank():
    with pytest.raises(ValueError):
        shard([1, 2], 2, 2)


def test_rank_from_torchrun_env():
    assert current_rank({}) == Rank(0, 1, 0) and not current_rank({}).distributed
    r = current_rank({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert r == Rank(3, 4, 1) and r.distributed


def test_torchrun_argv_launches_this_package():
    argv = torchrun_argv(2, 29999, ["worker", "cfg.json"])
    assert argv[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert argv[argv.index("--nproc_per_node") + 1] == "2" and argv[-3:] == ["pipeline", "worker", "cfg.json"]


SCRIPT = """
import json, sys
from pipeline.dist import current_rank, finish, gather, shard
rank = current_rank()
mine = shard([f"v{i}" for i in range(5)], rank.rank, rank.world_size)
everyone = gather(mine, rank)
finish(rank)
if rank.rank == 0:
    print("RESULT " + json.dumps(everyone))
"""


def test_gloo_gather_under_torchrun(tmp_path):
    """Two real ranks started by torchrun shard a list and gather everyone's share over gloo."""
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29631", str(script)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    assert json.loads(line[len("RESULT "):]) == [["v0", "v2", "v4"], ["v1", "v3"]]


def test_pipeline_stage_sharded_over_two_ranks(tmp_path, capfd):
    """--step2_gpus 0,1 runs the geometry stage under torchrun with two ranks (gloo on CPU), one video each."""
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.manifest import read_manifest
    from pipeline_inputs import ARGS, make_input, write_traj

    inp = make_input(tmp_path / "in", names=("a", "b"))
    args = ["geometry", "--input_dir", str(inp), "--traj_txt_path", str(write_traj(tmp_path / "t.txt")),
            "--output_folder", str(tmp_path / "out"), "--work_dir", str(tmp_path / "work"),
            "--step2_gpus", "0,1", "--master_port", "29632", *ARGS]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    logs = capfd.readouterr().err
    assert "[rank 0] INFO pipeline: a.mp4: geometry run in" in logs
    assert "[rank 1] INFO pipeline: b.mp4: geometry run in" in logs
    assert all(read_manifest(tmp_path / "work" / v / "geometry") for v in ("a", "b"))
    assert "a.mp4" in result.output and "b.mp4" in result.output and "ERROR" not in result.output
