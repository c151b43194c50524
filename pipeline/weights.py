"""The checkpoint files the pipeline reads, where they go, how to fetch them, and whether they load.

Layout under ``checkpoints/`` (what ``scripts/download.sh`` creates):
  InSpatio-World-1.3B/InSpatio-World-1.3B.safetensors   causal DiT (inspatio/world)
  Wan2.1-T2V-1.3B/config.json, Wan2.1_VAE.pth, models_t5_umt5-xxl-enc-bf16.pth,
                  google/umt5-xxl/ (tokenizer)            Wan2.1 base (Wan-AI/Wan2.1-T2V-1.3B)
  DA3/config.json, model.safetensors                      depth + poses (depth-anything/DA3NESTED-GIANT-LARGE)
  Florence-2-large/                                       captions (microsoft/Florence-2-large)
  taehv/taew2_1.pth                                       optional fast decoder (madebyollin/taehv)
  SpaceTimePilot/SpacetimePilot_1.3B_v1.ckpt              optional second generator (zhening/SpaceTimePilot)

Checks read headers and keys only: safetensors headers, ``torch.load(mmap=True)`` for ``.pth``
files (tensor data is mapped, not read), and compare keys and shapes against the manifests in
``models/manifests`` (DiT, VAE, umT5, TAEHV, SpaceTimePilot) or, for DA3, against the network built from the
preset its ``config.json`` names. ``python -m pipeline.weights [checkpoints_dir]`` prints the report.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import torch

DOWNLOAD = "bash scripts/download.sh"
STAGES = ("caption", "geometry", "generate", "tae", "spacetimepilot")
OPTIONAL = ("tae", "spacetimepilot")  # needed only with --use_tae / --generator spacetimepilot


@dataclass(frozen=True)
class WeightFile:
    """One file (or folder) the pipeline reads.

    ``required_for``: the stage that needs it ("caption", "geometry", "generate", or "tae" for the
    optional ``--use_tae`` decoder, "spacetimepilot" for ``--generator spacetimepilot``). ``check``:
    how it is verified — "dit", "vae", "umt5", "taehv", "spacetimepilot"
    (keys/shapes against that manifest), "da3" (DA3 model folder), "json", "tokenizer" (folder with
    a tokenizer), "hf-model" (a transformers model folder).
    """

    name: str
    path: Path
    download_cmd: str
    required_for: str
    check: str


@dataclass(frozen=True)
class WeightProblem:
    file: WeightFile
    problem: str

    def __str__(self) -> str:
        return f"{self.file.name} ({self.file.required_for}): {self.problem}\n    fix: {self.file.download_cmd}"


def expected_weights(checkpoints_dir: str | Path) -> list[WeightFile]:
    """Every checkpoint file of the documented layout with its download command."""
    c = Path(checkpoints_dir)
    wan = c / "Wan2.1-T2V-1.3B"
    return [
        WeightFile("causal DiT", c / "InSpatio-World-1.3B" / "InSpatio-World-1.3B.safetensors",
                   f"{DOWNLOAD} inspatio", "generate", "dit"),
        WeightFile("Wan2.1 config", wan / "config.json", f"{DOWNLOAD} wan", "generate", "json"),
        WeightFile("Wan2.1 VAE", wan / "Wan2.1_VAE.pth", f"{DOWNLOAD} wan", "generate", "vae"),
        WeightFile("umT5-XXL text encoder", wan / "models_t5_umt5-xxl-enc-bf16.pth", f"{DOWNLOAD} wan", "generate", "umt5"),
        WeightFile("umT5 tokenizer", wan / "google" / "umt5-xxl", f"{DOWNLOAD} wan", "generate", "tokenizer"),
        WeightFile("Depth-Anything-3", c / "DA3", f"{DOWNLOAD} da3", "geometry", "da3"),
        WeightFile("Florence-2", c / "Florence-2-large", f"{DOWNLOAD} florence", "caption", "hf-model"),
        WeightFile("TAEHV decoder (optional)", c / "taehv" / "taew2_1.pth", f"{DOWNLOAD} tae", "tae", "taehv"),
        WeightFile("SpaceTimePilot DiT (optional)", c / "SpaceTimePilot" / "SpacetimePilot_1.3B_v1.ckpt",
                   f"{DOWNLOAD} spacetimepilot", "spacetimepilot", "spacetimepilot"),
    ]


def _safetensors_shapes(path: Path) -> dict[str, torch.Tensor]:
    """Key → empty meta tensor of the stored shape (reads the header only)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}


def _torch_state_dict(path: Path) -> Mapping:
    """A ``.pth`` state dict with memory-mapped storage (nothing read beyond the pickle)."""
    obj = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ValueError(f"holds a {type(obj).__name__}, not a state dict")
    return obj


def _manifest(kind: str, manifests: Optional[Mapping[str, Mapping]]) -> Mapping:
    if manifests is not None and kind in manifests:
        return manifests[kind]
    from models.manifest import load_manifest

    return load_manifest(kind)


def _check_keys(wf: WeightFile, manifests: Optional[Mapping[str, Mapping]]) -> list[str]:
    from models.manifest import CheckpointError, check_state_dict

    try:
        state = _safetensors_shapes(wf.path) if wf.path.suffix == ".safetensors" else _torch_state_dict(wf.path)
    except Exception as e:  # any reader error means the file is truncated, corrupt or of another kind
        return [f"{wf.path}: cannot be read ({type(e).__name__}: {e}); delete it and download again"]
    try:
        check_state_dict(state, _manifest(wf.check, manifests), wf.path)
    except CheckpointError as e:
        return [str(e)]
    return []


def _check_json(path: Path) -> list[str]:
    try:
        json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return [f"{path}: not valid JSON ({e})"]
    return []


def _check_tokenizer(path: Path) -> list[str]:
    if not any((path / f).is_file() for f in ("tokenizer.json", "spiece.model")):
        return [f"{path}: no tokenizer.json or spiece.model"]
    return []


def _check_hf_model(path: Path) -> list[str]:
    problems = _check_json(path / "config.json")
    weights = [path / f for f in ("model.safetensors", "pytorch_model.bin") if (path / f).is_file()]
    if not weights:
        problems.append(f"{path}: no model.safetensors or pytorch_model.bin")
    for w in weights[:1]:
        try:
            _safetensors_shapes(w) if w.suffix == ".safetensors" else _torch_state_dict(w)
        except Exception as e:  # reader errors of either format: the file is damaged
            problems.append(f"{w}: cannot be read ({type(e).__name__}: {e})")
    return problems + _check_tokenizer(path)


def check_weight(wf: WeightFile, manifests: Optional[Mapping[str, Mapping]] = None) -> list[str]:
    """Problems of one file (empty = present and loadable). ``manifests`` overrides kind → key/shape map."""
    if not wf.path.exists():
        return [f"{wf.path}: missing"]
    if wf.check in ("dit", "vae", "umt5", "taehv", "spacetimepilot"):
        return _check_keys(wf, manifests)
    if wf.check == "json":
        return _check_json(wf.path)
    if wf.check == "tokenizer":
        return _check_tokenizer(wf.path)
    if wf.check == "hf-model":
        return _check_hf_model(wf.path)
    if wf.check == "da3":
        from geometry.da3 import check_da3_folder

        return check_da3_folder(wf.path)
    raise ValueError(f"unknown check kind '{wf.check}' for {wf.name}")


def check_weights(
    checkpoints_dir: str | Path,
    stages: Optional[Sequence[str]] = None,
    manifests: Optional[Mapping[str, Mapping]] = None,
) -> list[WeightProblem]:
    """Problems of every expected file (or of those ``required_for`` one of ``stages``)."""
    return [
        WeightProblem(wf, p)
        for wf in expected_weights(checkpoints_dir)
        if stages is None or wf.required_for in stages
        for p in check_weight(wf, manifests)
    ]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.weights", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints_dir", nargs="?", default="checkpoints")
    parser.add_argument("--only", action="append", choices=STAGES, help="check only the files of this stage")
    parser.add_argument("--dit", type=Path, help="check only this causal DiT file (e.g. InSpatio-World 1.5) against the DiT manifest")
    args = parser.parse_args(argv)
    if args.dit is not None:
        problems = check_weight(WeightFile("causal DiT", args.dit, f"{DOWNLOAD} inspatio15", "generate", "dit"))
        print("\n".join(f"PROBLEM  {p}" for p in problems) or f"ok       causal DiT: {args.dit}")
        return 1 if problems else 0
    problems = check_weights(args.checkpoints_dir, args.only)
    failed = {p.file for p in problems}
    for wf in expected_weights(args.checkpoints_dir):
        if (args.only is None or wf.required_for in args.only) and wf not in failed:
            print(f"ok       {wf.name}: {wf.path}")
    for p in problems:
        print(f"PROBLEM  {p}")
    # the TAEHV decoder and SpaceTimePilot are optional: their absence fails the check only when asked for
    fatal = [p for p in problems if p.file.required_for not in OPTIONAL or (args.only and p.file.required_for in args.only)]
    return 1 if fatal else 0


if __name__ == "__main__":
    sys.exit(main())
