"""``trajectory.png``: the target camera path over the first frame's point cloud, from the top and the side.

Views (world frame = the geometry cache's, OpenCV axes): top = x to the right, z (forward) up the
page; side = z to the right, up (= -y) up the page; equal scale on both axes. The target cameras are a
line coloured by output frame with a frustum every few frames (same colours); the source cameras are
grey. Points: a random subsample of the first source frame's valid depth, in its own colours.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from geometry.cache import GeometryCache
from geometry.unproject import unproject
from pipeline.fsutil import atomic_write
from trajectories.camera_path import CameraPath

TRAJECTORY_FILE = "trajectory.png"
MAX_POINTS = 20000
FRUSTUMS = 8  # target frustums drawn along the path
# (horizontal, vertical) world coordinates of each view: x/z for the top, z/-y for the side.
VIEWS = (("top", (0, 1.0), (2, 1.0), "x", "z (forward)"), ("side", (2, 1.0), (1, -1.0), "z (forward)", "up (-y)"))


def frustum_segments(c2w: np.ndarray, K: np.ndarray, width: int, height: int, depth: float) -> np.ndarray:
    """World line segments [8, 2, 3] of one camera's frustum cut at z-depth ``depth``: centre to the four
    image corners (pixel-centre convention, corners at -0.5 and size - 0.5), then the rectangle."""
    u = np.array([-0.5, width - 0.5, width - 0.5, -0.5])
    v = np.array([-0.5, -0.5, height - 0.5, height - 0.5])
    cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones(4)], -1) * depth
    corners = cam @ c2w[:3, :3].T + c2w[:3, 3]
    centre = np.broadcast_to(c2w[:3, 3], (4, 3))
    rect = np.stack([corners, np.roll(corners, -1, axis=0)], 1)
    return np.concatenate([np.stack([centre, corners], 1), rect])


def first_frame_points(geometry: GeometryCache, colours: np.ndarray | None, max_points: int = MAX_POINTS,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``max_points`` world points [M, 3] of frame 0's valid depth and their RGB in [0, 1] [M, 3]
    (``colours`` uint8 [h, w, 3] at the depth resolution; grey without)."""
    depth = torch.from_numpy(np.asarray(geometry.depth[:1], dtype=np.float64))
    pts = unproject(depth, torch.from_numpy(geometry.intrinsics[:1]), torch.from_numpy(geometry.c2w[:1]))[0].numpy()
    valid = np.isfinite(geometry.depth[0]) & (geometry.depth[0] > 0)
    idx = np.flatnonzero(valid)
    if len(idx) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_points, replace=False))
    rgb = (colours.reshape(-1, 3)[idx] / 255.0) if colours is not None else np.full((len(idx), 3), 0.6)
    return pts.reshape(-1, 3)[idx], rgb


def _xy(points: np.ndarray, view: tuple) -> tuple[np.ndarray, np.ndarray]:
    (_, (ih, sh), (iv, sv), _, _) = view
    return points[..., ih] * sh, points[..., iv] * sv


def plot_trajectory(out_png: str | Path, path: CameraPath, geometry: GeometryCache,
                    colours: np.ndarray | None = None, title: str = "") -> Path:
    """Write the two-view plot of ``path`` over ``geometry``'s first frame to ``out_png`` (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    points, rgb = first_frame_points(geometry, colours)
    scene_depth = float(np.median(geometry.depth[0][geometry.depth[0] > 0])) if (geometry.depth[0] > 0).any() else 1.0
    size = 0.12 * scene_depth
    n = len(path)
    frame_colour = plt.get_cmap("viridis")(np.linspace(0, 1, n))
    marked = np.unique(np.linspace(0, n - 1, min(FRUSTUMS, n)).round().astype(int))
    src_c2w = geometry.c2w
    src_K = geometry.intrinsics
    gh, gw = geometry.resolution
    src_marked = np.unique(np.linspace(0, len(src_c2w) - 1, min(4, len(src_c2w))).round().astype(int))
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), dpi=100)
    for ax, view in zip(axes, VIEWS):
        h, v = _xy(points, view)
        ax.scatter(h, v, s=0.8, c=rgb, linewidths=0, rasterized=True)
        sh, sv = _xy(src_c2w[:, :3, 3], view)
        ax.plot(sh, sv, color="0.55", lw=1.2, label="source cameras")
        for i in src_marked:
            seg = frustum_segments(src_c2w[i], src_K[i], gw, gh, size)
            ax.add_collection(LineCollection(np.stack(_xy(seg, view), -1), colors="0.55", linewidths=0.8))
        th, tv = _xy(path.c2w[:, :3, 3], view)
        line = np.stack([th, tv], -1)
        ax.add_collection(LineCollection(np.stack([line[:-1], line[1:]], 1), colors=frame_colour[:-1], linewidths=2))
        for i in marked:
            seg = frustum_segments(path.c2w[i], path.intrinsics[i], path.width, path.height, size)
            ax.add_collection(LineCollection(np.stack(_xy(seg, view), -1), colors=[frame_colour[i]], linewidths=1))
        # Frame the cameras and the central 96% of the points (a few far points must not shrink the plot).
        ch, cv = np.concatenate([th, sh]), np.concatenate([tv, sv])
        lo_h, hi_h = np.percentile(h, [2, 98]) if len(h) else (ch.min(), ch.max())
        lo_v, hi_v = np.percentile(v, [2, 98]) if len(v) else (cv.min(), cv.max())
        pad = size * 1.5
        ax.set_xlim(min(lo_h, ch.min()) - pad, max(hi_h, ch.max()) + pad)
        ax.set_ylim(min(lo_v, cv.min()) - pad, max(hi_v, cv.max()) + pad)
        ax.set_aspect("equal", adjustable="box")
        ax.set_title(view[0])
        ax.set_xlabel(view[3])
        ax.set_ylabel(view[4])
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower left", fontsize=8)
    mappable = plt.cm.ScalarMappable(cmap="viridis", norm=plt.Normalize(0, n - 1))
    fig.colorbar(mappable, ax=axes, label="output frame", shrink=0.8)
    if title:
        fig.suptitle(title)
    out_png = Path(out_png)
    with atomic_write(out_png) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out_png


def write_trajectory_plot(out_png: str | Path, path: CameraPath, geometry_file: str | Path, video: str | Path,
                          title: str = "") -> Path:
    """``plot_trajectory`` for a geometry cache file, its points coloured by the video's first frame."""
    from geometry.cache import load_geometry
    from pipeline.video_io import VideoReader

    geometry = load_geometry(geometry_file)
    h, w = geometry.resolution
    with VideoReader(video, size=(w, h), min_frames=1) as reader:
        colours = reader[0]
    return plot_trajectory(out_png, path, geometry, colours, title)
