"""Static HTML pages to look at results: ``viewer.html`` per output folder, ``index.html`` per run.

The viewer plays the folder's videos (source, render, mask and, when present, the generated video)
frame-locked, with play/pause, a scrub bar, speed 0.5x-2x, arrow-key stepping and space to toggle;
it shows the output frame, its source frame (the time map) and the camera's pitch/yaw/displacement
(``trajectories.readout``) and plots the camera path from the top and the side. Everything it needs
is inlined (the template ``viewer_template.html`` plus the camera data as JSON), and the videos are
referenced by relative file name, so the page works opened from disk, offline.
The page exposes ``window.viewer`` (``seek(f)``, ``play()``, ``pause()``, ``state()``) for tests.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pipeline.fsutil import atomic_write
from trajectories.camera_path import CameraPath
from trajectories.readout import read_path

VIEWER_FILE = "viewer.html"
INDEX_FILE = "index.html"
# (label, file name) of the panels, in display order; the first present one is the clock.
PANELS = (("source", "source.mp4"), ("render", "render.mp4"), ("mask", "mask.mp4"), ("generated", "generated.mp4"))


def _template(name: str) -> str:
    return resources.files("pipeline").joinpath(name).read_text(encoding="utf-8")


def _script_json(data: dict) -> str:
    """JSON safe inside a <script> element (no '</' can close it)."""
    return json.dumps(data, separators=(",", ":")).replace("</", "<\\/")


def viewer_data(path: CameraPath, videos: list[tuple[str, str]]) -> dict:
    """What the page reads: fps, size, time map, per-frame pitch/yaw (degrees), displacement and
    camera centre (world frame = source camera 0), and the (label, relative src) of each video."""
    r = read_path(path.c2w)
    return {
        "fps": path.fps, "width": path.width, "height": path.height,
        "source_index": path.source_index.tolist(),
        "pitch": r.pitch_deg.round(3).tolist(), "yaw": r.yaw_deg.round(3).tolist(),
        "displacement": r.displacement.round(5).tolist(), "centre": r.centre.round(5).tolist(),
        "videos": [{"label": label, "src": src} for label, src in videos],
    }


def write_viewer(folder: str | Path, path: CameraPath, title: str) -> Path:
    """Write ``folder/viewer.html`` for the panel videos present in ``folder`` (see ``PANELS``)."""
    folder = Path(folder)
    videos = [(label, name) for label, name in PANELS if (folder / name).is_file()]
    if not videos:
        raise FileNotFoundError(f"{folder}: no video to show (expected one of {', '.join(n for _, n in PANELS)})")
    page = (_template("viewer_template.html").replace("__TITLE__", html.escape(title))
            .replace("__DATA__", _script_json(viewer_data(path, videos))))
    with atomic_write(folder / VIEWER_FILE) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return folder / VIEWER_FILE


@dataclass(frozen=True)
class IndexRow:
    """One video of a run: its name, status word, detail (output or error) and its folder (or None)."""

    video: str
    status: str
    detail: str
    folder: Path | None


def index_rows(summaries: list[dict], output_folder: Path) -> list[IndexRow]:
    """Rows of the run index from the batch summaries (``pipeline.batch.VideoRecord.summary``)."""
    rows = []
    for s in summaries:
        folder = Path(output_folder) / Path(s["video"]).stem
        if s["error"]:
            status, detail = "failed", s["error"]
        elif s["output"] and Path(s["output"]).name == "generated.mp4":
            status, detail = "generated", s["output"]
        elif s["missing"]:
            status, detail = "rendered (generation weights missing)", s["output"] or "-"
        else:
            status, detail = "rendered", s["output"] or "-"
        rows.append(IndexRow(s["video"], status, detail, folder if (folder / VIEWER_FILE).is_file() else None))
    return rows


def write_index(output_folder: str | Path, rows: list[IndexRow], title: str) -> Path:
    """Write ``output_folder/index.html``: one row per video with its status and a link to its viewer."""
    output_folder = Path(output_folder)
    cells = []
    for r in rows:
        link = (f'<a href="{html.escape(r.folder.relative_to(output_folder).as_posix())}/{VIEWER_FILE}">viewer</a>'
                if r.folder is not None else "-")
        cells.append(f"<tr class=\"{html.escape(r.status.split()[0])}\"><td>{html.escape(r.video)}</td>"
                     f"<td>{html.escape(r.status)}</td><td>{link}</td><td>{html.escape(r.detail)}</td></tr>")
    page = (_template("index_template.html").replace("__TITLE__", html.escape(title))
            .replace("__ROWS__", "\n".join(cells)))
    with atomic_write(output_folder / INDEX_FILE) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return output_folder / INDEX_FILE
