"""Shared test configuration: offline hub, and the ``../shared`` reference material."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INSPATIO_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The reference fixtures folder; tests using it skip where it is absent (a user's clone)."""
    if not (SHARED / "fixtures").is_dir():
        pytest.skip(f"reference fixtures not found at {SHARED} (present in CI; set INSPATIO_SHARED to point elsewhere)")
    return SHARED


def _torchvision_stand_in() -> dict[str, types.ModuleType]:
    """The three torchvision transforms the package's input processor uses (test oracle only)."""
    tv = types.ModuleType("torchvision")
    tr = types.ModuleType("torchvision.transforms")

    class ToTensor:
        def __call__(self, img):
            return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)

    class Normalize:
        def __init__(self, mean, std):
            self.mean, self.std = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]

        def __call__(self, x):
            return (x - self.mean) / self.std

    tr.ToTensor, tr.Normalize, tr.CenterCrop = ToTensor, Normalize, None
    tv.transforms = tr
    return {"torchvision": tv, "torchvision.transforms": tr, "imageio": types.ModuleType("imageio")}


@pytest.fixture
def package_input_processor(monkeypatch):
    """The ``depth-anything-3`` package's own InputProcessor, importable without torchvision."""
    for name, module in _torchvision_stand_in().items():
        monkeypatch.setitem(sys.modules, name, module)
    for name in ("depth_anything_3.utils.io.input_processor", "depth_anything_3.utils.parallel_utils"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    from depth_anything_3.utils.io.input_processor import InputProcessor

    yield InputProcessor()
    for name in ("depth_anything_3.utils.io.input_processor", "depth_anything_3.utils.parallel_utils"):
        sys.modules.pop(name, None)
