"""Static synthetic scenes seen from several cameras (photo sets), and their analytic ground truth."""

from __future__ import annotations

import numpy as np

from geometry.synthetic import SourceClip, SyntheticScene, ground_truth_frame, make_source_clip
from trajectories.camera_path import CameraPath
from trajectories.orbit import orbit_c2w

# The clip's frame i shows time i / fps ~ 0: every view sees the scene at one moment.
STATIC_FPS = 1e9
PITCH = np.array([0.0, 6.0, 3.0, 0.0])
YAW = np.array([0.0, 10.0, 20.0, -10.0])


def photo_set(n_views: int, width: int, height: int) -> tuple[SyntheticScene, SourceClip]:
    """The synthetic room photographed from ``n_views`` (<= 4) cameras on a 1 m orbit (view 0 = the identity)."""
    scene = SyntheticScene()
    c2w = orbit_c2w(PITCH[:n_views], YAW[:n_views], np.ones(n_views))
    return scene, make_source_clip(scene, n_views, width, height, STATIC_FPS, c2w)


def union_ground_truth(scene: SyntheticScene, clip: SourceClip, path: CameraPath):
    """rgb [N,H,W,3], visible [N,H,W] (seen by ANY view: the union of each view's visibility) and z-depth
    [N,H,W] of every frame of ``path`` (its source indices are ignored)."""
    frames, visible, depths = [], [], []
    for i in range(len(path)):
        seen = np.zeros((path.height, path.width), dtype=bool)
        for v in range(len(clip.c2w)):
            one = CameraPath(path.c2w[i : i + 1], path.intrinsics[i : i + 1], path.width, path.height, 24.0, np.array([v]))
            rgb, vis, depth = ground_truth_frame(scene, one, clip, 0)
            seen |= vis
        frames.append(rgb), visible.append(seen), depths.append(depth)
    return np.stack(frames), np.stack(visible), np.stack(depths)
