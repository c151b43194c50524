"""Weight layout, download commands and the load checks, on tiny files (nothing is downloaded)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file, save_model

from geometry.da3 import build_network
from pipeline.weights import WeightFile, check_weight, check_weights, expected_weights, main

REPO = Path(__file__).resolve().parents[1]
TINY = {"dit": {"model.a.weight": (2, 3), "model.b": (4,)}, "vae": {"enc.w": (3, 3), "dec.b": (2,)}}


def tiny(kind: str) -> dict[str, torch.Tensor]:
    return {k: torch.zeros(s) for k, s in TINY[kind].items()}


def weight(tmp_path: Path, name: str) -> WeightFile:
    return next(w for w in expected_weights(tmp_path) if w.name == name)


def dry_run(ckpt: Path, target: str) -> list[list[str]]:
    env = {**os.environ, "INSPATIO_CHECKPOINTS": str(ckpt)}
    out = subprocess.run(["bash", "scripts/download.sh", "--dry-run", target], cwd=REPO, env=env,
                         capture_output=True, text=True, check=True).stdout
    return [shlex.split(line[2:]) for line in out.splitlines() if line.startswith("+ ")]


def covered(cmds: list[list[str]]) -> list[tuple[Path, bool]]:
    """(path, is_prefix) pairs the dry-run commands write: files named, include patterns, whole repos."""
    out = []
    for cmd in cmds:
        if "download" in cmd:
            args = cmd[cmd.index("download") + 1:]
            local = Path(args[args.index("--local-dir") + 1])
            includes = [args[i + 1] for i, a in enumerate(args) if a == "--include"]
            files = [a for a in args[1:] if not a.startswith("--") and a not in includes and Path(a) != local]
            out += [(local / f, False) for f in files]
            out += [(local / p.rstrip("*").rstrip("/"), True) for p in includes]
            if not files and not includes:
                out.append((local, True))
        elif cmd[0] == "mv":
            out.append((Path(cmd[-1]), False))
    return out


def test_every_expected_file_is_fetched_by_its_download_command(tmp_path):
    for wf in expected_weights(tmp_path):
        target = wf.download_cmd.split()[-1]
        assert wf.download_cmd == f"bash scripts/download.sh {target}"
        spots = covered(dry_run(tmp_path, target))
        assert any(wf.path == p or (prefix and wf.path.is_relative_to(p)) for p, prefix in spots), (wf, spots)


def test_download_script_rejects_unknown_targets():
    r = subprocess.run(["bash", "scripts/download.sh", "wann"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and "unknown argument 'wann'" in r.stderr


def test_safetensors_keys_and_shapes(tmp_path):
    wf = weight(tmp_path, "causal DiT")
    wf.path.parent.mkdir(parents=True)
    save_file(tiny("dit"), str(wf.path))
    assert check_weight(wf, TINY) == []
    save_file({"model.a.weight": torch.zeros(2, 3), "model.b": torch.zeros(5)}, str(wf.path))
    assert "shape [5], expected [4]" in check_weight(wf, TINY)[0]
    save_file({"model.a.weight": torch.zeros(2, 3)}, str(wf.path))
    assert "missing, first: 'model.b'" in check_weight(wf, TINY)[0]
    wf.path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header")
    assert "cannot be read" in check_weight(wf, TINY)[0]


def test_torch_files_are_checked_memory_mapped(tmp_path):
    wf = weight(tmp_path, "Wan2.1 VAE")
    wf.path.parent.mkdir(parents=True)
    torch.save(tiny("vae"), wf.path)
    assert check_weight(wf, TINY) == []
    torch.save({"state_dict": tiny("vae")}, wf.path)
    assert check_weight(wf, TINY) == []
    torch.save({**tiny("vae"), "extra": torch.zeros(1)}, wf.path)
    assert "unexpected key" in check_weight(wf, TINY)[0]
    wf.path.write_bytes(wf.path.read_bytes()[:100])  # a truncated download
    assert "cannot be read" in check_weight(wf, TINY)[0] and "download again" in check_weight(wf, TINY)[0]


@pytest.mark.parametrize("name", ["causal DiT", "Wan2.1 VAE", "umT5-XXL text encoder", "TAEHV decoder (optional)"])
def test_default_manifests_are_the_official_layouts(tmp_path, name):
    wf = weight(tmp_path, name)
    wf.path.parent.mkdir(parents=True)
    if wf.path.suffix == ".safetensors":
        save_file({"x": torch.zeros(1)}, str(wf.path))
    else:
        torch.save({"x": torch.zeros(1)}, wf.path)
    (problem,) = check_weight(wf)
    assert str(wf.path) in problem and "missing" in problem


def test_folders_json_and_tokenizer(tmp_path):
    cfg = weight(tmp_path, "Wan2.1 config")
    cfg.path.parent.mkdir(parents=True)
    cfg.path.write_text("{")
    assert "not valid JSON" in check_weight(cfg)[0]
    cfg.path.write_text("{}")
    assert check_weight(cfg) == []

    tok = weight(tmp_path, "umT5 tokenizer")
    tok.path.mkdir(parents=True)
    assert "no tokenizer.json" in check_weight(tok)[0]
    (tok.path / "spiece.model").write_bytes(b"x")
    assert check_weight(tok) == []

    flo = weight(tmp_path, "Florence-2")
    flo.path.mkdir()
    problems = check_weight(flo)
    assert any("config.json" in p for p in problems) and any("pytorch_model.bin" in p for p in problems)
    (flo.path / "config.json").write_text("{}")
    (flo.path / "tokenizer.json").write_text("{}")
    save_file({"w": torch.zeros(2)}, str(flo.path / "model.safetensors"))
    assert check_weight(flo) == []


def test_da3_folder_is_checked_against_its_preset(tmp_path):
    wf = weight(tmp_path, "Depth-Anything-3")
    wf.path.mkdir()
    (wf.path / "config.json").write_text(json.dumps({"model_name": "da3-small"}))

    class Saved(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = build_network("da3-small")

    save_model(Saved(), str(wf.path / "model.safetensors"))
    assert check_weight(wf) == []
    (wf.path / "config.json").write_text(json.dumps({"model_name": "da3-large"}))
    assert "model.safetensors: missing key 'backbone" in check_weight(wf)[0]


def test_report_and_exit_status(tmp_path, capsys, monkeypatch):
    problems = check_weights(tmp_path, stages=["geometry"])
    assert [p.file.name for p in problems] == ["Depth-Anything-3"]
    assert "fix: bash scripts/download.sh da3" in str(problems[0])
    assert main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "bash scripts/download.sh wan" in out and "bash scripts/download.sh florence" in out

    # the optional TAEHV decoder alone missing fails the check only when it was asked for
    import pipeline.weights as weights

    only_tae = [p for p in check_weights(tmp_path) if p.file.required_for == "tae"]
    monkeypatch.setattr(weights, "check_weights", lambda *a, **k: only_tae)
    assert main([str(tmp_path)]) == 0
    assert main([str(tmp_path), "--only", "tae"]) == 1


def test_download_check_subcommand_reports_missing_files(tmp_path):
    env = {**os.environ, "INSPATIO_CHECKPOINTS": str(tmp_path)}
    r = subprocess.run(["bash", "scripts/download.sh", "check"], cwd=REPO, env=env, capture_output=True, text=True)
    assert r.returncode == 1
    assert "Depth-Anything-3 (geometry)" in r.stdout and "fix: bash scripts/download.sh da3" in r.stdout
