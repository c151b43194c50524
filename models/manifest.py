"""Strict checkpoint checking against the key/shape manifests of the public checkpoints.

Each manifest in ``models/manifests/`` is a TSV of ``key<TAB>[d0, d1, ...]`` lines for the full-size
official file, after ``#`` header lines that say where the layout comes from and how it was checked.
Tiny test models are checked against the same key set with their own shapes.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Mapping, Sequence

import torch

MANIFESTS = {
    "dit": "inspatio_world_1.3b_dit.tsv",
    "vae": "wan2.1_vae.tsv",
    "umt5": "wan2.1_umt5_xxl_encoder.tsv",
    "taehv": "taew2_1.tsv",
    "spacetimepilot": "spacetimepilot_1.3b_dit.tsv",
}


class CheckpointError(ValueError):
    """A checkpoint file does not match the layout the model expects."""


def load_manifest(name: str) -> dict[str, tuple[int, ...]]:
    """Key → shape of a full-size official checkpoint (``name`` is a key of ``MANIFESTS``)."""
    text = resources.files("models.manifests").joinpath(MANIFESTS[name]).read_text()
    out: dict[str, tuple[int, ...]] = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            key, shape = line.split("\t")
            out[key] = tuple(json.loads(shape))
    return out


def strip_prefix(state_dict: Mapping, prefix: str) -> dict:
    """Remove ``prefix`` from every key that has it (e.g. the DiT's optional ``model.``)."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def check_state_dict(
    state_dict: Mapping,
    expected: Mapping[str, Sequence[int]],
    source: str | Path = "checkpoint",
    check_shapes: bool = True,
) -> None:
    """Raise ``CheckpointError`` naming the first missing key, extra key or shape mismatch.

    ``expected`` maps key → shape (a manifest, or a model's own ``state_dict()`` shapes).
    """
    missing = [k for k in expected if k not in state_dict]
    extra = [k for k in state_dict if k not in expected]
    if missing:
        raise CheckpointError(
            f"{source}: {len(missing)} expected key(s) missing, first: '{missing[0]}'. "
            "Is this the right file (see docs/models.md, 'Weights')?"
        )
    if extra:
        raise CheckpointError(f"{source}: {len(extra)} unexpected key(s), first: '{extra[0]}'")
    if check_shapes:
        for k, shape in expected.items():
            got = tuple(state_dict[k].shape)
            if got != tuple(shape):
                raise CheckpointError(f"{source}: key '{k}' has shape {list(got)}, expected {list(shape)}")


def model_shapes(module) -> dict[str, tuple[int, ...]]:
    """Key → shape of a module's own state dict (the expected layout for a tiny config)."""
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}



def read_state_dict(path: str | Path, what: str, fix: str) -> dict:
    """Read a checkpoint's tensors: ``.safetensors``, or a torch ``.pth`` memory-mapped with ``weights_only``.

    ``what`` names the file in errors ("VAE checkpoint"), ``fix`` says how to get it.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} not found ({fix})")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state_dict = load_file(str(path))
        else:
            state_dict = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read the {what} ({e}); delete it and download it again") from e
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"{path}: expected a state dict of tensors, got {type(state_dict).__name__}")
    return dict(state_dict)
