"""Stage manifests: what a stage output was computed from, so it is reused only when nothing changed.

Every stage output folder holds ``manifest.json``, written last (atomically) after all its output
files. It records:
  stage, version   the stage name and its output format version (bumping it invalidates old outputs)
  inputs           name -> sha256 of each input (video content, trajectory text, caption text,
                   upstream manifests' digests, a provided geometry cache)
  params           every parameter that changes the output (JSON values)
  outputs          file name (relative to the folder) -> {"sha256", "bytes"} of each output file
The *key* is (stage, version, inputs, params); the *digest* of a manifest is the sha256 of its key and
its outputs, which is what downstream stages record as their input. A folder whose manifest is
missing, unreadable, keyed differently or whose files no longer match is stale.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from pipeline.fsutil import atomic_write
from pipeline.video_io import file_sha256

MANIFEST_NAME = "manifest.json"


def text_sha256(text: str) -> str:
    """sha256 hex digest of a text's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class StageKey:
    """What a stage output depends on (see module docstring)."""

    stage: str
    version: int
    inputs: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        # Round-trip through JSON so tuples/paths compare equal to what a manifest file holds.
        return json.loads(
            _canonical({"stage": self.stage, "version": self.version, "inputs": dict(self.inputs), "params": dict(self.params)})
        )


@dataclass(frozen=True)
class Check:
    """Result of comparing a folder's manifest with a key: ``ok`` or the reason it is stale."""

    ok: bool
    reason: str


def manifest_path(out_dir: Path) -> Path:
    return Path(out_dir) / MANIFEST_NAME


def read_manifest(out_dir: Path) -> dict | None:
    """The manifest of ``out_dir``, or None if absent or unreadable (an interrupted write never leaves one)."""
    try:
        data = json.loads(manifest_path(out_dir).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """Digest of a manifest's key and outputs: what downstream stages record as their input."""
    return text_sha256(_canonical({k: manifest.get(k) for k in ("stage", "version", "inputs", "params", "outputs")}))


def _diff(name: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    for k in sorted(set(old) | set(new)):
        if k not in old:
            return f"{name} '{k}' is new"
        if k not in new:
            return f"{name} '{k}' no longer applies"
        if old[k] != new[k]:
            if name == "input":
                return f"input '{k}' changed"
            return f"{name} '{k}' changed ({old[k]!r} -> {new[k]!r})"
    return None


def check_manifest(out_dir: Path, key: StageKey, verify_outputs: bool = True) -> Check:
    """Compare ``out_dir``'s manifest with ``key`` and (optionally) re-hash the recorded outputs."""
    manifest = read_manifest(out_dir)
    if manifest is None:
        return Check(False, "no manifest (never completed)")
    want = key.to_json()
    if manifest.get("stage") != want["stage"]:
        return Check(False, f"manifest is for stage {manifest.get('stage')!r}")
    if manifest.get("version") != want["version"]:
        return Check(False, f"format version {manifest.get('version')} -> {want['version']}")
    for part, label in (("inputs", "input"), ("params", "parameter")):
        reason = _diff(label, manifest.get(part) or {}, want[part])
        if reason:
            return Check(False, reason)
    outputs = manifest.get("outputs") or {}
    for name, rec in sorted(outputs.items()):
        path = Path(out_dir) / name
        if not path.is_file():
            return Check(False, f"output {name} is missing")
        if path.stat().st_size != rec.get("bytes"):
            return Check(False, f"output {name} was modified")
        if verify_outputs and file_sha256(path) != rec.get("sha256"):
            return Check(False, f"output {name} was modified")
    return Check(True, "up to date")


def invalidate(out_dir: Path) -> None:
    """Remove ``out_dir``'s manifest before recomputing, so a killed run leaves the folder stale."""
    manifest_path(out_dir).unlink(missing_ok=True)


def write_manifest(out_dir: Path, key: StageKey, outputs: list[str]) -> dict:
    """Record ``key`` and the hashes of ``outputs`` (names relative to ``out_dir``); call after they exist."""
    out_dir = Path(out_dir)
    records = {}
    for name in outputs:
        path = out_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"stage {key.stage} did not produce {path}")
        records[name] = {"sha256": file_sha256(path), "bytes": path.stat().st_size}
    manifest = {**key.to_json(), "outputs": records}
    with atomic_write(manifest_path(out_dir)) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest
