"""Item: outputs keep the source frame rate unless --fps says otherwise, and every requested frame is written."""

from __future__ import annotations

import numpy as np
import pytest

from geometry.cache import GeometryCache
from pipeline.generate_output import plan_frames
from pipeline.stages.config import OutputSettings
from pipeline.stages.render import build_camera_path
from pipeline.video_io import VideoInfo
from trajectories import PathOptions, format_matrix_trajectory, parse_matrix_trajectory, parse_trajectory

K = np.array([[300.0, 0.0, 160.0], [0.0, 300.0, 90.0], [0.0, 0.0, 1.0]])


def _geometry(n: int) -> GeometryCache:
    return GeometryCache(depth=np.full((n, 180, 320), 2.0, np.float32), extrinsics=np.tile(np.eye(4), (n, 1, 1)),
                         intrinsics=np.tile(K, (n, 1, 1)))


@pytest.mark.parametrize("fps, expected", [(None, 12.5), (30.0, 30.0)])
def test_output_frame_rate_is_the_source_one_unless_given(fps, expected):
    path = build_camera_path(_geometry(9), parse_trajectory("0\n0 10\n1\n"), PathOptions(adaptive_frames=False),
                             OutputSettings(width=320, height=176, fps=fps), VideoInfo(320, 180, 12.5, 9))
    assert path.fps == expected and len(path) == 9


@pytest.mark.parametrize("n", [1, 5, 17, 45, 46, 81])
def test_matrix_path_frames_are_all_generated_and_written(n):
    traj = parse_matrix_trajectory(format_matrix_trajectory(np.repeat(np.eye(4)[None], n, 0)))
    path = build_camera_path(_geometry(7), traj, PathOptions(), OutputSettings(width=320, height=176),
                             VideoInfo(320, 180, 25.0, 7))
    plan = plan_frames(len(path))
    assert len(path) == n and path.fps == 25.0
    # whole blocks of 3 latent frames (4 video frames each after the first), padding dropped on output
    assert plan.requested == n and plan.generated >= n and (plan.generated + 3) % 12 == 0
    assert plan.generated - n < 12


@pytest.mark.parametrize("n", [1, 9, 10, 21, 22, 81])
def test_frame_blocks_follow_the_generation_plan(n):
    from pipeline.generate_output import frame_blocks

    blocks = frame_blocks(n)
    plan = plan_frames(n)
    assert blocks[0] == 0 and np.all(np.diff(blocks) >= 0) and blocks[-1] + 1 == plan.blocks
    sizes = np.bincount(blocks)
    assert sizes[0] == min(n, 9) and np.all(sizes[1:-1] == 12)  # 1 + 4·2 frames, then 4·3 per block
