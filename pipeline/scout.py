"""Scout mode: iterate on a trajectory in seconds, without any model.

``python -m pipeline scout --input_dir DIR --traj_txt_path T [--scale 0.25]`` renders every video of the
folder at ``scale`` times the working size through the render stage's own code
(``pipeline.stages.render.produce_render``; only the size differs) and writes, per video, into
``<scout folder>/<video stem>/``: render.mp4, mask.mp4, mask.npz, cameras.json, source.mp4 (time-mapped),
trajectory.png and viewer.html, plus index.html for the folder. The scout folder defaults to
``./output/<input dir name>/<trajectory name>-scout``; the work folder (and with it the geometry) is the
one the full run uses.

Geometry is never estimated here: a provided cache (``--geometry_dir`` or ``<input_dir>/geometry``) is
used directly, otherwise the geometry the full pipeline cached must exist and be current ("run
`python -m pipeline geometry` first" when it is not). Each video's scout folder is cached by its
manifest like a stage; one failing video does not stop the others.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.batch import Batch, open_records, prepare
from pipeline.layout import GEOMETRY_FILE, VideoPaths
from pipeline.stages import geometry as geometry_stage
from pipeline.stages import render as render_stage
from pipeline.stages.cached import Policy, current_digest, decide, run_cached
from pipeline.stages.config import OutputSettings, RunConfig
from pipeline.stages.publish import write_source_video
from pipeline.stages.source import SourceVideo
from pipeline.trajectory_plot import TRAJECTORY_FILE, write_trajectory_plot
from pipeline.video_io import file_sha256
from pipeline.viewer import VIEWER_FILE, IndexRow, write_index, write_viewer
from trajectories.camera_path import CameraPath

log = logging.getLogger("pipeline")

DEFAULT_SCALE = 0.25
OUTPUTS = [*render_stage.OUTPUTS, "source.mp4", TRAJECTORY_FILE, VIEWER_FILE]


def scout_folder_for(output_folder: Path) -> Path:
    """The default scout folder beside a run's output folder: ``<output_folder>-scout``."""
    return output_folder.with_name(output_folder.name + "-scout")


def scout_settings(render: OutputSettings, scale: float) -> OutputSettings:
    """``render`` at ``scale`` times its size, each side rounded to an even number of pixels (H.264 4:2:0)
    and at least 16."""
    if not 0 < scale <= 1:
        raise ValueError(f"--scale {scale}: must be in (0, 1] (0.25 renders a quarter of the width and height)")

    def side(n: int) -> int:
        return max(16, 2 * round(n * scale / 2))

    return dataclasses.replace(render, width=side(render.width), height=side(render.height))


def geometry_for(cfg: RunConfig, source: SourceVideo, paths: VideoPaths) -> tuple[Path, str]:
    """(geometry cache file, its digest) without running a model: a provided cache, else the full run's
    cached geometry if it is current (raises StageError saying what to run otherwise)."""
    provided = geometry_stage.provided_cache(cfg.geometry_dir, source)
    if provided is not None:
        return provided, file_sha256(provided)
    key = geometry_stage.geometry_key(source, None, cfg.weights.da3, cfg.render, cfg.geometry)
    decide("geometry", paths.geometry, key,
           Policy(reuse_only="scout mode runs no model", fix="run `python -m pipeline geometry` (or `run`) first"))
    return paths.geometry / GEOMETRY_FILE, current_digest(paths.geometry)


def produce_scout(out: Path, batch: Batch, source: SourceVideo, geometry_file: Path, settings: OutputSettings,
                  device: str) -> None:
    """The render stage at ``settings`` into ``out``, then source.mp4, trajectory.png and viewer.html."""
    render_stage.produce_render(out, source, geometry_file, batch.spec, batch.path_options, settings, device)
    path = CameraPath.load(out / "cameras.json")
    write_source_video(out / "source.mp4", source, path, settings.resize)
    title = f"{source.name} / {batch.cfg.traj_path.stem} (scout, {settings.width}x{settings.height})"
    write_trajectory_plot(out / TRAJECTORY_FILE, path, geometry_file, source.path, title)
    write_viewer(out, path, title)


@dataclass(frozen=True)
class ScoutResult:
    video: str
    folder: Path | None
    action: str  # "rendered", "reused" or "failed"
    detail: str  # the reason, or the error


def run_scout(cfg: RunConfig, scout_folder: Path, scale: float) -> list[ScoutResult]:
    """Scout every video of ``cfg.input_dir`` into ``scout_folder`` (see module doc) and write its index."""
    videos, batch = prepare(cfg)
    settings = scout_settings(cfg.render, scale)
    results = []
    for r in open_records(batch, videos):
        out = scout_folder / r.paths.name
        if r.error is not None:
            results.append(ScoutResult(r.path.name, None, "failed", r.error))
            continue
        start = time.perf_counter()
        try:
            geometry_file, geometry_digest = geometry_for(cfg, r.source, r.paths)
            key = dataclasses.replace(
                render_stage.render_key(r.source, geometry_digest, batch.spec, batch.path_options, settings),
                stage="scout")
            outcome = run_cached(
                "scout", out, key, OUTPUTS,
                lambda o: produce_scout(o, batch, r.source, geometry_file, settings, batch.device("render")),
                Policy(force=cfg.force, dry_run=cfg.dry_run))
        except Exception as exc:  # noqa: BLE001 - reported per video, the others go on
            log.error("%s: scout failed: %s", r.path.name, exc)
            log.debug("traceback", exc_info=exc)
            results.append(ScoutResult(r.path.name, None, "failed", str(exc)))
            continue
        action = {"run": "would render" if cfg.dry_run else "rendered", "reuse": "reused"}[outcome.action]
        log.info("%s: scout %s in %.1f s (%s)", r.path.name, action, time.perf_counter() - start, outcome.reason)
        results.append(ScoutResult(r.path.name, out, action, outcome.reason))
    if not cfg.dry_run:
        rows = [IndexRow(s.video, s.action, s.detail, s.folder if s.folder and (s.folder / VIEWER_FILE).is_file() else None)
                for s in results]
        write_index(scout_folder, rows, f"{cfg.input_dir.name} / {cfg.traj_path.stem} (scout)")
    return results
