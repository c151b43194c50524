"""Shared test configuration: offline hub, and the ``../shared`` reference material."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
