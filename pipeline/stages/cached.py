"""The one place that decides whether a stage output is reused, recomputed, or refused.

Protocol for every stage output folder (see ``pipeline.manifest``):
  decide  compare the folder's manifest with the key; apply --force / --skip_stepN / --dry_run and
          the weights check (under a shared folder lock: waits while another run writes the folder)
  lock    take the folder's exclusive lock (``pipeline.fsutil.folder_lock``) and decide again: another
          run may have produced the same output while this one waited, which is then reused
  begin   delete the manifest (a killed run now leaves a stale folder, never a trusted one) and
          the temporary files of an earlier killed run (only the lock holder writes, so every
          temporary file there belongs to a dead run)
  produce the stage writes its files (each atomically); if it fails (Ctrl-C included), its temporary
          files are removed, and the folder if that empties it
  commit  write the manifest last, then release the lock
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Sequence

from pipeline.fsutil import folder_lock, remove_if_empty
from pipeline.manifest import StageKey, check_manifest, invalidate, manifest_digest, read_manifest, write_manifest

log = logging.getLogger("pipeline")

Action = Literal["reuse", "run"]


class StageError(RuntimeError):
    """A stage cannot produce its output for one video; the message names the file and the fix."""


class MissingWeightsError(StageError):
    """A stage needs weight files that are not on disk."""

    def __init__(self, stage: str, missing: Sequence) -> None:
        self.stage = stage
        self.missing = list(missing)
        super().__init__(f"{stage} needs weights that are missing:\n" + describe_missing(self.missing))


def describe_missing(missing: Sequence) -> str:
    """One paragraph per missing weight file: what, where it goes, the command that fetches it."""
    return "\n".join(f"  - {w.name}: {w.path} not found; fetch it with: {w.download_cmd}" for w in missing)


@dataclass(frozen=True)
class Policy:
    """How a stage treats existing outputs.

    force:    recompute even when up to date.
    reuse_only: never recompute (``--skip_stepN``, or a stage upstream of the one a command runs):
              the text says why (e.g. "--skip_step2 was given") and ``fix`` what to do when the
              output is missing or stale.
    dry_run:  decide only.
    """

    force: bool = False
    reuse_only: str = ""
    fix: str = ""
    dry_run: bool = False


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    missing: tuple = ()  # weights a dry run found missing


def decide(stage: str, out_dir: Path, key: StageKey, policy: Policy, weights: Sequence = ()) -> Decision:
    """Reuse or run; raises StageError for a stale output under ``reuse_only``, MissingWeightsError
    when the stage must run without its weights (reported, not raised, in a dry run)."""
    check = check_manifest(out_dir, key)
    if policy.reuse_only:
        if check.ok:
            return Decision("reuse", f"{check.reason} ({policy.reuse_only})")
        raise StageError(
            f"{policy.reuse_only}, but the {stage} output in {out_dir} cannot be reused: {check.reason}; {policy.fix}"
        )
    if check.ok and not policy.force:
        return Decision("reuse", check.reason)
    reason = "--force" if check.ok else check.reason
    missing = [w for w in weights if not Path(w.path).exists()]
    if missing:
        if policy.dry_run:
            return Decision("run", f"{reason}; cannot run: missing {', '.join(w.name for w in missing)}", tuple(missing))
        raise MissingWeightsError(stage, missing)
    return Decision("run", reason)


def begin(out_dir: Path) -> None:
    """Withdraw the manifest and clear temporary files a killed run left."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    invalidate(out_dir)
    clear_temporary(out_dir)


def clear_temporary(out_dir: Path) -> None:
    """Remove the temporary files in ``out_dir`` (``pipeline.fsutil`` names them ``.*.tmp*``); call with
    the folder's lock held, when no other writer can be using them."""
    for leftover in Path(out_dir).glob(".*.tmp*"):
        if leftover.is_file():
            leftover.unlink()


def commit(out_dir: Path, key: StageKey, outputs: list[str]) -> str:
    """Write the manifest (last) and return its digest."""
    return manifest_digest(write_manifest(out_dir, key, outputs))


def current_digest(out_dir: Path) -> str:
    """Digest of the manifest now in ``out_dir`` (after a reuse)."""
    manifest = read_manifest(out_dir)
    if manifest is None:
        raise StageError(f"no manifest in {out_dir}")
    return manifest_digest(manifest)


@dataclass(frozen=True)
class Outcome:
    """What happened to one stage of one video; ``digest`` is None in a dry run when it would run."""

    stage: str
    action: Action
    reason: str
    digest: str | None
    missing: tuple = ()


def run_cached(
    stage: str,
    out_dir: Path,
    key: StageKey,
    outputs: list[str],
    produce: Callable[[Path], None],
    policy: Policy,
    weights: Sequence = (),
) -> Outcome:
    """decide -> lock -> decide -> begin -> produce(out_dir) -> commit (module docstring), logging what
    was done and why."""
    with folder_lock(out_dir, shared=True):
        decision = decide(stage, out_dir, key, policy, weights)
        log.debug("%s %s: %s (%s)", stage, out_dir, decision.action, decision.reason)
        if decision.action == "reuse":
            return Outcome(stage, "reuse", decision.reason, current_digest(out_dir))
    if policy.dry_run:
        return Outcome(stage, "run", decision.reason, None, decision.missing)
    with folder_lock(out_dir):
        now = decide(stage, out_dir, key, policy, weights)
        if now.action == "reuse":
            return Outcome(stage, "reuse", f"{now.reason} (written by another run meanwhile)", current_digest(out_dir))
        return Outcome(stage, "run", decision.reason, produce_and_commit(out_dir, key, outputs, produce))


def produce_and_commit(out_dir: Path, key: StageKey, outputs: list[str], produce: Callable[[Path], None]) -> str:
    """begin -> produce(out_dir) -> commit; returns the manifest digest. The caller holds the folder's
    exclusive lock. On any failure (Ctrl-C included) the temporary files go, and the folder if empty."""
    begin(out_dir)
    try:
        produce(Path(out_dir))
    except BaseException:  # e.g. Ctrl-C between creating a temporary file and guarding it
        clear_temporary(out_dir)
        remove_if_empty(out_dir)  # a failed first run leaves no empty folder behind
        raise
    return commit(out_dir, key, outputs)
