"""On-disk layout of a pipeline run.

Work folder (trajectory-independent caches, shared by every trajectory of a video)::

  <work_dir>/<video stem>/
    caption/      caption.txt, manifest.json
    geometry/     geometry.npz, geometry.json (sidecar), manifest.json
    renders/<trajectory name>/   render.mp4, mask.mp4, mask.npz, cameras.json, manifest.json
    generated/<trajectory name>/ generated.mp4, manifest.json

Output folder (one per trajectory; default ``./output/<input dir name>/<trajectory name>``)::

  <output_folder>/<video stem>/
    generated.mp4   the result (absent when generation could not run)
    source.mp4      the source frames the model saw: working resolution, following the time map
    render.mp4, mask.mp4, cameras.json   the conditions used
    preview.mp4     side by side: source | render | mask | result (source | render | mask without a result)
    viewer.html     the videos playing frame-locked (``pipeline.viewer``); trajectory.png the camera path
    manifest.json
  <output_folder>/index.html   one row per video with a link to its viewer

The default work folder is ``<output_folder>/../work`` so that every trajectory rendered from one input
folder shares its captions and geometry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")

CAPTION_FILE = "caption.txt"
GEOMETRY_FILE = "geometry.npz"
GENERATED_FILE = "generated.mp4"


def default_output_folder(input_dir: Path, traj_path: Path) -> Path:
    """``./output/<input dir name>/<trajectory name>`` as in the reference system."""
    return Path("output") / Path(input_dir).resolve().name / Path(traj_path).stem


def default_work_dir(output_folder: Path) -> Path:
    return Path(output_folder).parent / "work"


@dataclass(frozen=True)
class VideoPaths:
    """Every folder one video uses for one trajectory (see module docstring)."""

    name: str
    work: Path
    output: Path
    traj_name: str

    @classmethod
    def make(cls, video: Path, work_dir: Path, output_folder: Path, traj_name: str) -> "VideoPaths":
        name = Path(video).stem
        return cls(name=name, work=Path(work_dir) / name, output=Path(output_folder) / name, traj_name=traj_name)

    @property
    def caption(self) -> Path:
        return self.work / "caption"

    @property
    def geometry(self) -> Path:
        return self.work / "geometry"

    @property
    def render(self) -> Path:
        return self.work / "renders" / self.traj_name

    @property
    def generated(self) -> Path:
        return self.work / "generated" / self.traj_name

    def stage_dir(self, stage: str) -> Path:
        """Output folder of ``stage`` (caption, geometry, render, generate, publish)."""
        return {"caption": self.caption, "geometry": self.geometry, "render": self.render,
                "generate": self.generated, "publish": self.output}[stage]
