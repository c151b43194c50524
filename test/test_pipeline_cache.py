"""Stage manifests and the reuse / recompute / refuse decisions (pipeline.manifest, pipeline.stages.cached)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.manifest import StageKey, check_manifest, manifest_digest, read_manifest, write_manifest
from pipeline.stages.cached import MissingWeightsError, Policy, StageError, run_cached
from pipeline.weights import WeightFile

KEY = StageKey("render", 1, inputs={"video": "aa", "trajectory": "bb"}, params={"width": 64, "path": {"slowmo": 1.0}})


def _producer(calls: list, fail_after_first: bool = False):
    def produce(out: Path) -> None:
        calls.append(out)
        (out / "a.txt").write_text(f"a{len(calls)}")
        if fail_after_first:
            raise RuntimeError("killed")
        (out / "b.txt").write_text("b")

    return produce


def test_manifest_matches_only_the_same_key_and_outputs(tmp_path):
    assert check_manifest(tmp_path, KEY).reason.startswith("no manifest")
    (tmp_path / "a.txt").write_text("x")
    write_manifest(tmp_path, KEY, ["a.txt"])
    assert check_manifest(tmp_path, KEY).ok

    changed = StageKey("render", 1, inputs=KEY.inputs, params={**KEY.params, "width": 32})
    check = check_manifest(tmp_path, changed)
    assert not check.ok and "width" in check.reason and "64" in check.reason and "32" in check.reason
    check = check_manifest(tmp_path, StageKey("render", 1, inputs={**KEY.inputs, "trajectory": "cc"}, params=KEY.params))
    assert not check.ok and "trajectory" in check.reason
    check = check_manifest(tmp_path, StageKey("render", 2, inputs=KEY.inputs, params=KEY.params))
    assert not check.ok and "version" in check.reason

    (tmp_path / "a.txt").write_text("y")  # same size, other content
    assert "modified" in check_manifest(tmp_path, KEY).reason
    (tmp_path / "a.txt").unlink()
    assert "missing" in check_manifest(tmp_path, KEY).reason


def test_digest_follows_outputs_not_time(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    d1 = manifest_digest(write_manifest(tmp_path, KEY, ["a.txt"]))
    d2 = manifest_digest(write_manifest(tmp_path, KEY, ["a.txt"]))
    assert d1 == d2 == manifest_digest(read_manifest(tmp_path))
    (tmp_path / "a.txt").write_text("z")
    assert manifest_digest(write_manifest(tmp_path, KEY, ["a.txt"])) != d1


def test_run_reuse_force(tmp_path):
    calls: list = []
    first = run_cached("render", tmp_path, KEY, ["a.txt", "b.txt"], _producer(calls), Policy())
    assert first.action == "run" and len(calls) == 1
    again = run_cached("render", tmp_path, KEY, ["a.txt", "b.txt"], _producer(calls), Policy())
    assert again.action == "reuse" and again.digest == first.digest and len(calls) == 1
    forced = run_cached("render", tmp_path, KEY, ["a.txt", "b.txt"], _producer(calls), Policy(force=True))
    assert forced.action == "run" and forced.reason == "--force" and len(calls) == 2


def test_interrupted_run_is_never_reused(tmp_path):
    calls: list = []
    run_cached("render", tmp_path, KEY, ["a.txt", "b.txt"], _producer(calls), Policy())
    other = StageKey("render", 1, inputs={**KEY.inputs, "trajectory": "new"}, params=KEY.params)
    with pytest.raises(RuntimeError, match="killed"):
        run_cached("render", tmp_path, other, ["a.txt", "b.txt"], _producer(calls, fail_after_first=True), Policy())
    # The old manifest was removed before recomputing, so neither key trusts the half-updated folder.
    assert not (tmp_path / "manifest.json").exists()
    assert not check_manifest(tmp_path, KEY).ok and not check_manifest(tmp_path, other).ok
    out = run_cached("render", tmp_path, other, ["a.txt", "b.txt"], _producer(calls), Policy())
    assert out.action == "run" and (tmp_path / "b.txt").read_text() == "b"


def test_reuse_only_refuses_stale_output(tmp_path):
    policy = Policy(reuse_only="--skip_step2 was given", fix="run without --skip_step2 to recompute it")
    with pytest.raises(StageError, match=r"--skip_step2 was given.*no manifest.*run without --skip_step2"):
        run_cached("geometry", tmp_path, KEY, ["a.txt"], _producer([]), policy)
    run_cached("geometry", tmp_path, KEY, ["a.txt", "b.txt"], _producer([]), Policy())
    assert run_cached("geometry", tmp_path, KEY, ["a.txt"], _producer([]), policy).action == "reuse"
    stale = StageKey("render", 1, inputs=KEY.inputs, params={**KEY.params, "width": 1})
    with pytest.raises(StageError, match="parameter 'width' changed"):
        run_cached("geometry", tmp_path, stale, ["a.txt"], _producer([]), policy)


def test_missing_weights_and_dry_run(tmp_path):
    need = [WeightFile("causal DiT", tmp_path / "ckpt" / "dit.safetensors", "bash scripts/download.sh inspatio", "generate", "dit")]
    calls: list = []
    with pytest.raises(MissingWeightsError) as err:
        run_cached("generate", tmp_path / "out", KEY, ["a.txt"], _producer(calls), Policy(), need)
    assert str(need[0].path) in str(err.value) and "bash scripts/download.sh inspatio" in str(err.value)
    plan = run_cached("generate", tmp_path / "out", KEY, ["a.txt"], _producer(calls), Policy(dry_run=True), need)
    assert plan.action == "run" and plan.digest is None and "missing" in plan.reason
    assert calls == [] and not (tmp_path / "out").exists()


def test_manifest_file_is_json_with_hashes(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    write_manifest(tmp_path, KEY, ["a.txt"])
    data = json.loads((tmp_path / "manifest.json").read_text())
    assert data["stage"] == "render" and data["params"]["width"] == 64
    assert data["outputs"]["a.txt"]["sha256"] == "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"


def test_recompute_clears_a_killed_runs_temporary_files(tmp_path):
    (tmp_path / ".render.k3j2.tmp.mp4").write_bytes(b"half a video")
    run_cached("render", tmp_path, KEY, ["a.txt", "b.txt"], _producer([]), Policy())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "manifest.json"]


def test_stage_weights_follow_the_command_line(tmp_path):
    import dataclasses

    from pipeline.stages.config import RunConfig
    from pipeline.stages.weights import default_weight_paths, stage_weights, weights_identity

    paths = default_weight_paths(tmp_path / "ckpt")
    cfg = RunConfig(input_dir=tmp_path, traj_path=tmp_path / "t.txt", output_folder=tmp_path / "o",
                    work_dir=tmp_path / "w", weights=dataclasses.replace(paths, config=tmp_path / "wan" / "config.json"))
    need = stage_weights(cfg)
    generate = {w.name: w.path for w in need["generate"]}
    assert generate["Wan2.1 VAE"] == tmp_path / "wan" / "Wan2.1_VAE.pth"
    assert generate["umT5 tokenizer"] == tmp_path / "wan" / "google" / "umt5-xxl"
    assert generate["causal DiT"] == tmp_path / "ckpt" / "InSpatio-World-1.3B" / "InSpatio-World-1.3B.safetensors"
    assert [w.name for w in need["geometry"]] == ["Depth-Anything-3"] and need["render"] == []
    assert not any("TAEHV" in w.name for w in need["generate"])
    with_tae = stage_weights(dataclasses.replace(cfg, use_tae=True, weights=dataclasses.replace(paths, da3=Path("da3-small"))))
    assert any("TAEHV" in w.name for w in with_tae["generate"]) and with_tae["geometry"] == []

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(b"12")
    before = weights_identity([tmp_path / "m"])
    assert before == {"m/w.bin": 2}
    (tmp_path / "m" / "w.bin").write_bytes(b"123")
    assert weights_identity([tmp_path / "m"]) != before


@pytest.mark.parametrize("earlier_run", [False, True])
def test_interrupt_at_any_point_leaves_no_temporary_file(tmp_path, earlier_run):
    """Ctrl-C can land between creating a temporary file and guarding it (e.g. inside ExitStack.enter_context):
    the stage clears its folder's temporary files, and removes the folder if it created it for nothing."""
    key = StageKey("render", 1, inputs={"video": "v"}, params={})
    out = tmp_path / "stage"
    if earlier_run:
        out.mkdir()
        (out / "old.mp4").write_text("an earlier output")

    def interrupted(folder: Path) -> None:
        (folder / ".render.abc123.tmp.mp4").write_text("unguarded")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_cached("render", out, key, ["render.mp4"], interrupted, Policy())
    if earlier_run:
        assert sorted(p.name for p in out.iterdir()) == ["old.mp4"] and read_manifest(out) is None
    else:
        assert not out.exists()
