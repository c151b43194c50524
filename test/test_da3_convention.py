"""The cache's intrinsics mean what Depth-Anything-3 means by them.

Oracle: the ``depth-anything-3`` package's own ``InputProcessor`` maps a video camera to the depth
resolution (plain scaling, ``_resize_ixt``). A depth pixel unprojected with that K and projected
through the video camera DA3 was given lands on the video pixel it came from, (u * W / w, v * H / h);
projected through the cameras this project derives from the cache's K at other resolutions (the
output camera of either resize policy, the colour camera) it must land on that same pixel.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geometry.render import prepare_sources
from geometry.unproject import crop_box, unproject
from pipeline.stages.config import OutputSettings
from pipeline.stages.render import colour_size, output_intrinsics
from pipeline.video_io import VideoInfo

TOLERANCE_PX = 0.01


def _da3_camera(processor, video_hw: tuple[int, int], K_video: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """K at DA3's processing resolution and that resolution (h, w), from the package's own processor."""
    frame = np.zeros((*video_hw, 3), np.uint8)
    x, _, K = processor([frame], intrinsics=K_video[None], process_res=504, process_res_method="upper_bound_resize",
                        num_workers=1)
    return K[0].double().numpy(), tuple(x.shape[-2:])


def _project(points: torch.Tensor, c2w: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Pixel coordinates [..., 2] of world points [..., 3] in a camera (c2w [4,4], K [3,3])."""
    w2c = torch.linalg.inv(c2w)
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    uvw = cam @ K.T
    return uvw[..., :2] / uvw[..., 2:]


@pytest.mark.parametrize("video_hw, resize", [((480, 832), "stretch"), ((1080, 1920), "crop"), ((480, 832), "crop")])
def test_depth_pixels_land_on_the_video_pixels_they_came_from(package_input_processor, video_hw, resize):
    H, W = video_hw
    K_video = np.array([[0.9 * W, 0, W / 2 + 3.3], [0, 0.9 * W, H / 2 - 2.1], [0, 0, 1]])
    K_depth, (h, w) = _da3_camera(package_input_processor, video_hw, K_video)
    assert (h, w) != (H, W)

    g = torch.Generator().manual_seed(0)
    depth = 1 + 4 * torch.rand(1, h, w, generator=g, dtype=torch.float64)
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, 3] = torch.tensor([0.2, -0.1, 0.3])
    angle = torch.tensor(0.3, dtype=torch.float64)
    c2w[0, 0], c2w[0, 2], c2w[2, 0], c2w[2, 2] = angle.cos(), angle.sin(), -angle.sin(), angle.cos()
    points = unproject(depth, torch.from_numpy(K_depth)[None], c2w[None])[0]  # [h, w, 3]
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    came_from = _project(points, c2w, torch.from_numpy(K_video))  # through the camera DA3 was given
    torch.testing.assert_close(came_from, torch.stack([u * W / w, v * H / h], -1), rtol=0, atol=1e-4)  # DA3 scales plainly

    # The output camera (render stage, cameras.json) at 832x480 under the resize policy.
    settings = OutputSettings(width=832, height=480, resize=resize)
    K_out = torch.from_numpy(output_intrinsics(K_depth, (h, w), video_hw, settings))
    y0, x0, ch, cw = crop_box(video_hw, (480, 832)) if resize == "crop" else (0, 0, H, W)
    expected = torch.stack([(came_from[..., 0] - x0) * 832 / cw, (came_from[..., 1] - y0) * 480 / ch], -1)
    err = (_project(points, c2w, K_out) - expected).abs().max().item()
    assert err < TOLERANCE_PX, f"output camera misplaces depth pixels by {err:.4f} px"

    # The colour camera the renderer derives for the frame it reads (the whole frame, at colour_size).
    cW, cH = colour_size(VideoInfo(width=W, height=H, fps=24.0, num_frames=1), settings)
    colour = torch.zeros(1, cH, cW, 3, dtype=torch.uint8)
    src = prepare_sources(colour, depth.float(), torch.from_numpy(K_depth)[None].float(), c2w[None].float())
    expected = came_from * torch.tensor([cW / W, cH / H], dtype=torch.float64)
    err = (_project(points, c2w, src.K[0].double()) - expected).abs().max().item()
    assert err < TOLERANCE_PX, f"colour camera misplaces depth pixels by {err:.4f} px"
