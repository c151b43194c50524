"""Which weight files each stage needs: ``pipeline.weights.expected_weights`` with the CLI's path overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from geometry.da3 import is_preset
from pipeline.stages.config import RunConfig, WeightPaths
from pipeline.weights import WeightFile, expected_weights


def _by_check(checkpoints_dir: Path) -> dict[str, WeightFile]:
    return {wf.check: wf for wf in expected_weights(checkpoints_dir)}


def default_weight_paths(checkpoints_dir: Path) -> WeightPaths:
    """The documented ``checkpoints/`` layout (what ``scripts/download.sh`` creates)."""
    files = _by_check(checkpoints_dir)
    return WeightPaths(checkpoints_dir=Path(checkpoints_dir), checkpoint=files["dit"].path, config=files["json"].path,
                       da3=files["da3"].path, florence=files["hf-model"].path, tae=files["taehv"].path,
                       spacetimepilot=files["spacetimepilot"].path)


def weights_identity(paths: list[Path]) -> dict[str, int | None]:
    """Weight files (or every file of a model folder) by name and size, for stage keys: hashing
    gigabytes on every run would be too slow, and a different checkpoint practically never has the
    same size."""
    sizes: dict[str, int | None] = {}
    for path in map(Path, paths):
        files = sorted(q for q in path.rglob("*") if q.is_file()) if path.is_dir() else [path]
        for f in files:
            sizes[str(f.relative_to(path.parent))] = f.stat().st_size if f.is_file() else None
    return sizes


def stage_weights(cfg: RunConfig) -> dict[str, list[WeightFile]]:
    """Weight files each stage reads when it has to compute (not when it reuses or is given its input),
    at the paths the command line chose (Wan files live beside --config_path)."""
    w = cfg.weights
    default_wan = default_weight_paths(w.checkpoints_dir).wan_dir
    override = {"dit": w.checkpoint, "json": w.config, "da3": w.da3, "hf-model": w.florence, "taehv": w.tae,
                "spacetimepilot": w.spacetimepilot}
    files = []
    for wf in expected_weights(w.checkpoints_dir):
        if wf.check in override:
            path = override[wf.check]
        elif wf.path.is_relative_to(default_wan):
            path = w.wan_dir / wf.path.relative_to(default_wan)
        else:
            path = wf.path
        files.append(dataclasses.replace(wf, path=Path(path)))
    need = {"caption": [], "geometry": [], "render": [], "generate": []}
    spacetimepilot = cfg.generator == "spacetimepilot"
    for wf in files:
        if wf.required_for == "tae":
            if cfg.use_tae and not spacetimepilot:
                need["generate"].append(wf)
        elif wf.required_for == "spacetimepilot":
            if spacetimepilot:
                need["generate"].append(wf)
        elif wf.check == "dit" and spacetimepilot:
            continue
        elif wf.required_for == "geometry" and is_preset(wf.path):
            continue
        else:
            need[wf.required_for].append(wf)
    return need
