"""``python -m pipeline evaluate``: numbers for results.

``grid`` — camera x time on the synthetic 4D scene (``geometry.synthetic``; the bundled example by
default). Every cell (a camera path x a time pattern) goes through the render stage's own code
(``pipeline.stages.render.produce_render``) and is scored against the scene's analytic ground truth
(``geometry.synthetic.ground_truth``: the frame a perfect renderer would show, and which of its pixels
the source frame can see at all):
  psnr_mask / ssim_mask  over the render's mask (the pixels it claims to cover),
  psnr_full / ssim_full  over the whole frame (uncovered pixels are black in the render),
  mask_iou               render mask vs analytic visibility, coverage = mean of the render mask.
PSNR pools every scored pixel of the clip (one MSE), SSIM is the mean of the per-pixel map
(``geometry.metrics``). Writes grid.csv, grid.md, heatmap.png and each cell's folder (render, mask,
cameras, viewer) under cells/. With a generator (``--generate``, when its weights are present) each cell
is also generated and the result scored the same way: gen_psnr_full / gen_ssim_full over the whole frame,
gen_psnr_mask over the render's mask (NaN without a generator).

``cameras`` — camera accuracy of any video against the path it was asked to follow: its cameras are
re-estimated by the geometry stage's model (Depth-Anything-3), aligned to the request by a similarity
transform and compared per frame (``geometry.camera_accuracy``). Writes cameras.csv and summary.md.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from geometry.camera_accuracy import CameraErrors, camera_errors
from geometry.cache import GeometryCache, load_geometry
from geometry.metrics import mask_iou, psnr, ssim
from geometry.synthetic import SourceClip, SyntheticScene, ground_truth
from geometry.unproject import scale_intrinsics
from pipeline.fsutil import atomic_write
from pipeline.render_output import load_mask
from pipeline.stages import render as render_stage
from pipeline.stages.config import OutputSettings
from pipeline.stages.source import SourceVideo, open_source
from pipeline.video_io import read_video
from pipeline.viewer import write_viewer
from trajectories import PathOptions, parse_trajectory
from trajectories.camera_path import CameraPath

log = logging.getLogger("pipeline")

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_VIDEO = REPO / "test" / "example" / "synthetic_orbit.mp4"
EXAMPLE_GEOMETRY = REPO / "test" / "example" / "geometry" / "synthetic_orbit.npz"

# Camera paths of the grid (trajectory file text: pitch, yaw, displacement lines; displacement in
# multiples of the first frame's foreground depth).
CAMERAS = {
    "static": "0\n0\n0\n",
    "orbit_left": "0\n0 10\n1\n",
    "orbit_up": "0 8\n0\n1\n",
    "dolly_in": "0\n0\n0 0.3\n",
    "arc": "0 4 0\n0 -8 -12\n1\n",
}
# Time patterns: (time keyframe line or None, PathOptions fields). freeze_repeat is a fraction of the frames.
TIMES = {
    "forward": (None, {}),
    "reverse": (None, {"time_mode": "reverse"}),
    "pingpong": (None, {"time_mode": "pingpong"}),
    "slowmo": (None, {"slowmo": 2.0}),
    "freeze": (None, {"freeze_repeat": 0.5}),
    "bullet": ("0.5", {}),
    "zigzag": ("0 0.75 0.25 1", {}),
}
METRICS = ("psnr_mask", "ssim_mask", "psnr_full", "ssim_full", "mask_iou", "coverage")


@dataclass(frozen=True)
class GridSettings:
    """The grid: camera and time pattern names (keys of CAMERAS / TIMES), output frames per cell before
    a freeze's copies, and the render size (pixels)."""

    cameras: tuple[str, ...] = tuple(CAMERAS)
    times: tuple[str, ...] = tuple(TIMES)
    frames: int = 17
    width: int = 208
    height: int = 120

    def __post_init__(self) -> None:
        for names, known, flag in ((self.cameras, CAMERAS, "--cameras"), (self.times, TIMES, "--times")):
            unknown = [n for n in names if n not in known]
            if unknown or not names:
                raise ValueError(f"{flag} {','.join(names)}: unknown or empty; choose from {', '.join(known)}")
        if self.frames < 2:
            raise ValueError(f"--frames {self.frames}: at least 2 output frames per cell")
        if self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            raise ValueError(f"--width {self.width} --height {self.height}: even sizes of at least 16 pixels")


@dataclass(frozen=True)
class CellScore:
    camera: str
    time: str
    frames: int
    psnr_mask: float
    ssim_mask: float
    psnr_full: float
    ssim_full: float
    mask_iou: float
    coverage: float
    seconds: float
    gen_psnr_full: float = float("nan")
    gen_ssim_full: float = float("nan")
    gen_psnr_mask: float = float("nan")


def source_clip(video: SourceVideo, geometry: GeometryCache) -> SourceClip:
    """The synthetic clip's cameras as ``ground_truth`` needs them: c2w from the cache, K scaled from the
    cache's resolution to the video's (plainly, as DA3 does), the video's fps. No frames are kept."""
    h, w = video.info.height, video.info.width
    K = scale_intrinsics(torch.from_numpy(geometry.intrinsics[0]), geometry.resolution, (h, w)).numpy()
    frames = np.broadcast_to(np.zeros((1, 1, 1, 3), np.uint8), (geometry.num_frames, h, w, 3))
    return SourceClip(frames, geometry.c2w, K, video.info.fps)


def check_synthetic(geometry: GeometryCache, scene: SyntheticScene, clip: SourceClip, name: str) -> None:
    """Refuse a cache that is not the synthetic scene: its frame-0 depth must match the ray-cast one."""
    h, w = geometry.resolution
    view = scene.render(geometry.c2w[0], geometry.intrinsics[0], w, h, 0.0)
    expected = np.where(np.isfinite(view.depth), view.depth, 0.0)
    if not np.allclose(geometry.depth[0], expected, rtol=2.0**-10, atol=1e-6):
        raise ValueError(f"{name}: its depth is not the synthetic scene's, so there is no analytic ground truth; "
                         "evaluate a clip written by scripts/make_synthetic.py (the default is test/example)")


def _path_options(camera: str, pattern: str, frames: int) -> tuple[str, PathOptions]:
    time_line, overrides = TIMES[pattern]
    text = CAMERAS[camera] + (time_line + "\n" if time_line else "")
    extra = dict(overrides)
    if "freeze_repeat" in extra:
        extra["freeze_repeat"] = round(extra["freeze_repeat"] * frames)
    return text, PathOptions(n_frames=frames, adaptive_frames=False, **extra)


Generator = Callable[[Path, SourceVideo], Path]  # (render folder, source) -> the generated video in that folder


def generator_for(checkpoints_dir: Path, caption: str, seed: int = 0, device: str = "auto") -> Generator:
    """The generate stage (``produce_generated``) with the weights of the ``checkpoints/`` layout; raises
    FileNotFoundError listing each missing file with the command that fetches it."""
    from pipeline.layout import GENERATED_FILE
    from pipeline.stages.cached import describe_missing
    from pipeline.stages.generate import produce_generated
    from pipeline.stages.weights import default_weight_paths
    from pipeline.weights import expected_weights

    missing = [w for w in expected_weights(checkpoints_dir) if w.required_for == "generate" and not w.path.exists()]
    if missing:
        raise FileNotFoundError("--generate needs weights that are missing:\n" + describe_missing(missing))
    weights = default_weight_paths(checkpoints_dir)

    def generate(cell: Path, source: SourceVideo) -> Path:
        produce_generated(cell, source, cell, caption, weights, seed, False, False, "stretch", device)
        return cell / GENERATED_FILE

    return generate


def score_cell(out: Path, video: SourceVideo, geometry_file: Path, clip: SourceClip, scene: SyntheticScene,
               camera: str, pattern: str, settings: GridSettings, generator: Generator | None = None) -> CellScore:
    """Render one cell into ``out`` with the render stage (and generate it with ``generator``), and score it
    against the analytic ground truth."""
    start = time.perf_counter()
    text, options = _path_options(camera, pattern, settings.frames)
    spec = parse_trajectory(text, f"<grid camera {camera}, time {pattern}>")
    output = OutputSettings(width=settings.width, height=settings.height)
    render_stage.produce_render(out, video, geometry_file, spec, options, output, "cpu")
    path = CameraPath.load(out / "cameras.json")
    rendered, mask = read_video(out / "render.mp4"), load_mask(out / "mask.npz")
    truth, visible = ground_truth(scene, path, clip)
    truth = np.round(truth * 255).astype(np.uint8)
    generated = {}
    if generator is not None:
        frames = read_video(generator(out, video))
        generated = {"gen_psnr_full": psnr(frames, truth), "gen_ssim_full": ssim(frames, truth),
                     "gen_psnr_mask": psnr(frames, truth, mask) if mask.any() else float("nan")}
    write_viewer(out, path, f"{camera} x {pattern}")
    return CellScore(
        camera, pattern, len(path),
        psnr_mask=psnr(rendered, truth, mask) if mask.any() else float("nan"),
        ssim_mask=ssim(rendered, truth, mask) if mask.any() else float("nan"),
        psnr_full=psnr(rendered, truth), ssim_full=ssim(rendered, truth),
        mask_iou=mask_iou(mask, visible), coverage=float(mask.mean()), seconds=time.perf_counter() - start,
        **generated,
    )


def run_grid(out_dir: Path, settings: GridSettings = GridSettings(), video: Path = EXAMPLE_VIDEO,
             geometry_file: Path = EXAMPLE_GEOMETRY, generator: Generator | None = None) -> list[CellScore]:
    """Score every camera x time cell (rendered, and generated with ``generator``); write grid.csv, grid.md,
    heatmap.png and cells/<camera>__<time>/."""
    out_dir = Path(out_dir)
    source = open_source(Path(video))
    geometry = load_geometry(geometry_file, expect_frames=source.info.num_frames)
    scene = SyntheticScene()
    clip = source_clip(source, geometry)
    check_synthetic(geometry, scene, clip, str(geometry_file))
    cells = [(c, t) for c in settings.cameras for t in settings.times]
    scores = []
    for camera, pattern in tqdm(cells, desc="evaluate", unit="cell", disable=None):
        score = score_cell(out_dir / "cells" / f"{camera}__{pattern}", source, Path(geometry_file), clip, scene,
                           camera, pattern, settings, generator)
        log.info("%s x %s: PSNR %.2f dB (mask) %.2f dB (full), IoU %.3f, %.1f s", camera, pattern,
                 score.psnr_mask, score.psnr_full, score.mask_iou, score.seconds)
        scores.append(score)
    write_table(out_dir, scores, settings, Path(video))
    write_heatmap(out_dir / "heatmap.png", scores, settings)
    return scores


def write_table(out_dir: Path, scores: list[CellScore], settings: GridSettings, video: Path) -> None:
    """grid.csv (one row per cell) and grid.md (the same table plus one camera x time table per metric)."""
    names = [f.name for f in fields(CellScore)]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, names, lineterminator="\n")
    writer.writeheader()
    for s in scores:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in asdict(s).items()})
    with atomic_write(out_dir / "grid.csv") as tmp:
        tmp.write_text(buf.getvalue())
    by_cell = {(s.camera, s.time): s for s in scores}
    lines = [f"# Camera x time evaluation of the render stage", "",
             f"Scene: {video.name} (analytic ground truth), {settings.width}x{settings.height}, "
             f"{settings.frames} output frames per cell (+ the freeze's copies). PSNR in dB.", ""]
    generated = ("gen_psnr_full", "gen_psnr_mask") if any(np.isfinite(s.gen_psnr_full) for s in scores) else ()
    for metric in ("psnr_mask", "ssim_mask", "psnr_full", "mask_iou", *generated):
        lines += [f"## {metric}", "", "| camera | " + " | ".join(settings.times) + " |",
                  "|---|" + "---|" * len(settings.times)]
        for c in settings.cameras:
            lines.append(f"| {c} | " + " | ".join(f"{getattr(by_cell[c, t], metric):.3f}" for t in settings.times) + " |")
        lines.append("")
    lines += ["## All cells", "", "| " + " | ".join(names) + " |", "|---" * len(names) + "|"]
    for s in scores:
        lines.append("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in asdict(s).values()) + " |")
    with atomic_write(out_dir / "grid.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def write_heatmap(out_png: Path, scores: list[CellScore], settings: GridSettings) -> None:
    """Camera x time heat maps of PSNR (mask), SSIM (mask) and mask IoU, values written in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_cell = {(s.camera, s.time): s for s in scores}
    panels = (("psnr_mask", "PSNR over the mask (dB)"), ("ssim_mask", "SSIM over the mask"), ("mask_iou", "mask IoU"))
    if any(np.isfinite(s.gen_psnr_full) for s in scores):
        panels += (("gen_psnr_full", "generated: PSNR over the frame (dB)"),)
    fig, axes = plt.subplots(len(panels), 1, squeeze=False,
                             figsize=(3 + 0.9 * len(settings.times), len(panels) * (1.4 + 0.4 * len(settings.cameras))))
    for ax, (metric, title) in zip(axes[:, 0], panels):
        grid = np.array([[getattr(by_cell[c, t], metric) for t in settings.times] for c in settings.cameras])
        im = ax.imshow(grid, cmap="viridis", aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, f"{v:.2f}" if metric.startswith("psnr") else f"{v:.3f}", ha="center", va="center",
                    color="w" if v < np.nanmean(grid) else "k", fontsize=8)
        ax.set_xticks(range(len(settings.times)), settings.times, rotation=45, ha="right")
        ax.set_yticks(range(len(settings.cameras)), settings.cameras)
        ax.set_title(title)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    with atomic_write(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


CameraEstimator = Callable[[Path], np.ndarray]  # video -> estimated c2w [N, 4, 4]


def da3_estimator(model_path: Path, device: str, process_res: int, chunk_size: int, overlap: int) -> CameraEstimator:
    """The geometry stage's Depth-Anything-3 as a camera estimator (the model is loaded once)."""
    from geometry.da3 import estimate_geometry, load_da3
    from pipeline.video_io import VideoReader

    model = load_da3(model_path, device)

    def estimate(video: Path) -> np.ndarray:
        with VideoReader(video) as frames:
            cache = estimate_geometry(frames, model, chunk_size=chunk_size, overlap=overlap, process_res=process_res)
        return cache.c2w

    return estimate


def evaluate_cameras(video: Path, cameras_json: Path, estimator: CameraEstimator) -> CameraErrors:
    """Re-estimate ``video``'s cameras and compare them with the path in ``cameras_json`` (see module doc)."""
    requested = CameraPath.load(cameras_json)
    estimated = np.asarray(estimator(Path(video)), dtype=np.float64)
    if estimated.shape != (len(requested), 4, 4):
        raise ValueError(f"{video}: {len(estimated)} frames were estimated but {cameras_json} has {len(requested)}; "
                         "evaluate a video against the cameras.json it was rendered or generated with")
    return camera_errors(estimated, requested.c2w)


def write_camera_report(out_dir: Path, errors: CameraErrors, video: Path, cameras_json: Path) -> None:
    """cameras.csv (frame, rotation_deg, translation) and summary.md (means, medians, maxima, the alignment)."""
    out_dir = Path(out_dir)
    rows = ["frame,rotation_deg,translation"] + [
        f"{i},{r:.4f},{t:.5f}" for i, (r, t) in enumerate(zip(errors.rotation_deg, errors.translation))]
    with atomic_write(out_dir / "cameras.csv") as tmp:
        tmp.write_text("\n".join(rows) + "\n")
    a = errors.alignment
    text = "\n".join([
        f"# Camera accuracy of {video.name}", "",
        f"Requested path: {cameras_json} ({len(errors.rotation_deg)} frames, path scale {errors.path_scale:.4g} scene units).",
        f"Alignment (estimate -> request): scale {a.scale:.4g}, rotation "
        f"{np.rad2deg(np.arccos(np.clip((np.trace(a.rotation) - 1) / 2, -1, 1))):.2f} deg.", "",
        "| error | mean | median | max |", "|---|---|---|---|",
        *(f"| {name} | {np.mean(v):.4f} | {np.median(v):.4f} | {np.max(v):.4f} |"
          for name, v in (("rotation (deg, geodesic)", errors.rotation_deg),
                          ("translation (/ path scale)", errors.translation))),
        "", "Translation is NaN when the requested camera does not move (no scale to normalise by).", ""])
    with atomic_write(out_dir / "summary.md") as tmp:
        tmp.write_text(text)
