"""Mask packing: against a plain loop with an explicit bilinear resize, and hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.conditions import pack_mask


def bilinear_half_pixel(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres (align_corners=False), edges clamped, no antialias."""
    H, W = img.shape
    out = np.zeros((h, w))
    for y in range(h):
        sy = max((y + 0.5) * H / h - 0.5, 0.0)
        y0 = min(int(np.floor(sy)), H - 1)
        y1, fy = min(y0 + 1, H - 1), sy - y0
        for x in range(w):
            sx = max((x + 0.5) * W / w - 0.5, 0.0)
            x0 = min(int(np.floor(sx)), W - 1)
            x1, fx = min(x0 + 1, W - 1), sx - x0
            top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
            bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
            out[y, x] = top * (1 - fy) + bottom * fy
    return out


def loop_pack(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    """Latent frame k, channel c shows pixel frame 0 for k = 0, else frame 4k - 3 + c."""
    n_lat = 1 + (mask.shape[0] - 1) // 4
    out = np.zeros((1, n_lat, 4, h, w))
    for k in range(n_lat):
        for c in range(4):
            src = 0 if k == 0 else 4 * k - 3 + c
            out[0, k, c] = bilinear_half_pixel(mask[src] * 2 - 1, h, w)
    return out


@pytest.mark.parametrize("frames, hw, lat", [(1, (8, 12), (2, 3)), (9, (16, 24), (2, 3)), (14, (10, 14), (3, 5)),
                                             (6, (6, 8), (6, 8))])
def test_matches_loop_reference(frames, hw, lat):
    mask = np.random.default_rng(frames).random((frames, *hw))
    packed = pack_mask(mask, lat)
    assert packed.shape == (1, 1 + (frames - 1) // 4, 4, *lat) and packed.dtype == torch.float32
    np.testing.assert_allclose(packed.numpy(), loop_pack(mask, *lat), atol=1e-6)


def test_first_frame_repeated_then_groups_of_four():
    values = np.array([0.0, 1.0, 0.25, 0.5, 0.75, 1.0, 0.0])  # frames 5, 6 are left over
    mask = np.broadcast_to(values[:, None, None], (7, 16, 16))
    packed = pack_mask(mask, (2, 2))
    assert packed.shape == (1, 2, 4, 2, 2)
    assert torch.equal(packed[0, 0], torch.full((4, 2, 2), -1.0))
    expected = torch.tensor([1.0, -0.5, 0.0, 0.5])[:, None, None].expand(4, 2, 2)
    assert torch.equal(packed[0, 1], expected)


def test_covered_is_plus_one_and_resize_is_area_consistent():
    mask = np.zeros((1, 8, 8))
    mask[0, :, 4:] = 1.0  # right half covered
    packed = pack_mask(mask, (2, 2))[0, 0, 0]
    assert torch.equal(packed, torch.tensor([[-1.0, 1.0], [-1.0, 1.0]]))


def test_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"\[T, H, W\]"):
        pack_mask(np.zeros((8, 8)), (1, 1))
    with pytest.raises(ValueError, match="T >= 1"):
        pack_mask(np.zeros((0, 8, 8)), (1, 1))
