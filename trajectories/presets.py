"""Bundled trajectory files (``trajectories/presets/*.txt``)."""

from __future__ import annotations

from pathlib import Path

PRESET_DIR = Path(__file__).resolve().parent / "presets"


def list_presets() -> dict[str, Path]:
    """Preset name (file stem) -> path, sorted by name."""
    return {p.stem: p for p in sorted(PRESET_DIR.glob("*.txt"))}


def find_trajectory(name_or_path: str | Path) -> Path:
    """An existing file path as given, else the preset of that name (with or without ``.txt``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    presets = list_presets()
    stem = path.name[:-4] if path.name.endswith(".txt") else path.name
    if path.parent == Path(".") and stem in presets:
        return presets[stem]
    raise FileNotFoundError(
        f"trajectory {str(name_or_path)!r} is neither a file nor a preset; presets: {', '.join(presets)}"
    )
