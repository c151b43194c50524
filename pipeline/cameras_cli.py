"""``python -m pipeline cameras {convert,export}``: camera paths to and from other tools (formats:
``trajectories.formats``; reference: docs/camera_formats.md)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from trajectories.formats import CameraSet, format_cameras, read_cameras, read_cameras_json, relative_to

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False,
                  help="Convert camera paths between formats, and export a run's source and target cameras.")

FORMAT_HELP = ("tcw (one 4x4 world-to-camera matrix per line, .txt), camera_path (nerfstudio viewer, .json), "
               "transforms (nerfstudio transforms.json), colmap (a folder with cameras.txt + images.txt), "
               "cameras (this project's cameras.json; read only)")
EXPORT_FILES = {"tcw": "{which}_tcw.txt", "camera_path": "camera_path.json", "transforms": "transforms.json", "colmap": ""}


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def write_files(files: dict[Path, str]) -> None:
    from pipeline.fsutil import atomic_write

    for path, text in files.items():
        with atomic_write(path) as tmp:
            tmp.write_text(text)
        typer.echo(f"wrote {path}")


def with_intrinsics(cameras: CameraSet, width: int | None, height: int | None, vfov: float | None) -> CameraSet:
    """Give a camera list without intrinsics (a matrix file) a centred pinhole K of vertical field of view ``vfov`` degrees."""
    if None in (width, height, vfov):
        return cameras
    if not (width > 0 and height > 0 and 0 < vfov < 180):
        raise ValueError(f"--width {width} --height {height} --vfov {vfov}: sizes must be positive, vfov in (0, 180) degrees")
    f = (height / 2.0) / np.tan(np.deg2rad(vfov) / 2.0)
    K = np.array([[f, 0, (width - 1) / 2.0], [0, f, (height - 1) / 2.0], [0, 0, 1.0]])
    return replace(cameras, K=np.repeat(K[None], len(cameras), 0), width=width, height=height)


@app.command("convert")
def convert(
    source: Annotated[Path, typer.Argument(help="Input file or COLMAP folder.")],
    target: Annotated[Path, typer.Argument(help="Output file or COLMAP folder.")],
    from_format: Annotated[Optional[str], typer.Option("--from", help=f"Input format. [default: from the name] {FORMAT_HELP}")] = None,
    to_format: Annotated[Optional[str], typer.Option("--to", help="Output format. [default: from the name]")] = None,
    width: Annotated[Optional[int], typer.Option(help="Image width for inputs without intrinsics (tcw).")] = None,
    height: Annotated[Optional[int], typer.Option(help="Image height for inputs without intrinsics (tcw).")] = None,
    vfov: Annotated[Optional[float], typer.Option(help="Vertical field of view in degrees for inputs without intrinsics.")] = None,
) -> None:
    """Convert a camera path: IN and OUT formats come from the names (.txt = tcw, transforms.json, cameras.json,
    other .json = nerfstudio camera_path, a folder = COLMAP text) or from --from/--to. The world frame is kept."""
    try:
        cameras = with_intrinsics(read_cameras(source, from_format), width, height, vfov)
        write_files(format_cameras(cameras, target, to_format))
    except (ValueError, OSError) as exc:
        _fail(str(exc))


def find_geometry(run_dir: Path) -> Path | None:
    """The geometry cache of a render folder (``<work>/<video>/renders/<traj>``) or of a published
    output folder (``<output_folder>/<video>``, work folder at its default ``<output_folder>/../work``)."""
    candidates = [run_dir.parent.parent / "geometry" / "geometry.npz",
                  run_dir.parent.parent / "work" / run_dir.name / "geometry" / "geometry.npz"]
    return next((c for c in candidates if c.is_file()), None)


def source_cameras(geometry_file: Path) -> CameraSet:
    """The source video's cameras from a geometry cache, at the depth maps' resolution."""
    from geometry.cache import load_geometry

    geometry = load_geometry(geometry_file)
    h, w = geometry.resolution
    return CameraSet(geometry.c2w, geometry.intrinsics, w, h, geometry.meta.fps or 24.0,
                     tuple(f"source_{i:05d}.png" for i in range(geometry.num_frames)))


@app.command("export")
def export(
    run_dir: Annotated[Path, typer.Argument(help="A render folder or a published output folder (holds cameras.json).")],
    format: Annotated[str, typer.Option("--format", help="colmap, transforms, camera_path or tcw.")] = "colmap",
    out: Annotated[Optional[Path], typer.Option(help="Output folder. [default: RUN_DIR/cameras_<format>]")] = None,
    geometry: Annotated[Optional[Path], typer.Option(help="Geometry cache of the source. [default: found from RUN_DIR]")] = None,
) -> None:
    """Export the source cameras and the target path of a run, both in the first source camera's frame
    (the frame of target_tcw.txt), to OUT/source and OUT/target."""
    if format not in EXPORT_FILES:
        _fail(f"--format {format!r}: choose one of {', '.join(EXPORT_FILES)}")
    out = out or run_dir / f"cameras_{format}"
    try:
        target = read_cameras_json(run_dir / "cameras.json")
        target = replace(target, names=tuple(f"target_{i:05d}.png" for i in range(len(target))))
        geometry = geometry or find_geometry(run_dir)
        if geometry is None:
            raise FileNotFoundError(f"no geometry cache found for {run_dir}; pass --geometry <work>/<video>/geometry/geometry.npz")
        source = source_cameras(geometry)
        origin = source.c2w[0]
        files: dict[Path, str] = {}
        for which, cameras in (("source", source), ("target", target)):
            name = EXPORT_FILES[format].format(which=which)
            files.update(format_cameras(relative_to(cameras, origin), out / which / name if name else out / which, format))
        write_files(files)
    except (ValueError, OSError) as exc:
        _fail(str(exc))

