"""Tiny Depth-Anything-3 models for the tests: da3-small with seeded random weights, and model folders."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_model

from geometry.da3 import DA3Model, load_da3


def tiny_da3(seed: int = 0) -> DA3Model:
    """da3-small with seeded random weights; the camera head's FoV output set near 60° so the
    intrinsics are plausible (random weights otherwise give a near-zero FoV)."""
    torch.manual_seed(seed)
    model = load_da3("da3-small")
    with torch.no_grad():
        fov = model.net.cam_dec.fc_fov[0]
        fov.weight.mul_(1e-3)
        fov.bias.fill_(1.0)
    return model


class _Saved(torch.nn.Module):
    """The package's wrapper layout (network under ``model``) for writing a checkpoint folder."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.model = net


def write_da3_folder(path: Path, net: torch.nn.Module, name: str = "da3-small") -> Path:
    """A model folder in the published layout: ``config.json`` naming the preset + ``model.safetensors``."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_name": name}))
    save_model(_Saved(net), str(path / "model.safetensors"))  # stores tied weights once, like the package
    return path
