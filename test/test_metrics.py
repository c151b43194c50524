import numpy as np
import pytest
from scipy import ndimage, signal

from geometry.metrics import depth_edges, edge_band, mask_iou, psnr, ssim, ssim_map

RNG = np.random.default_rng(0)


def smooth_image(h: int = 40, w: int = 50, c: int = 3) -> np.ndarray:
    return np.clip(ndimage.gaussian_filter(RNG.uniform(0, 1, (h, w, c)), (1.5, 1.5, 0)) * 1.5 - 0.25, 0, 1)


def test_psnr_of_a_known_error():
    a = RNG.uniform(0.2, 0.8, (2, 20, 30, 3))
    signs = RNG.choice([-1.0, 1.0], a.shape)
    assert psnr(a, a + 0.01 * signs) == pytest.approx(40.0, abs=1e-9)
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-9)
    assert psnr(a, a) == float("inf")


def test_psnr_mask_and_uint8():
    a = RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    b = a.copy()
    b[:, 8:] = 255 - b[:, 8:]
    mask = np.zeros((16, 16), dtype=bool)
    mask[:, :8] = True
    assert psnr(a, b, mask) == float("inf")
    c = a.astype(np.int64)
    c[:, :8] += np.where(c[:, :8] > 127, -3, 3)
    assert psnr(a, c.astype(np.uint8), mask) == pytest.approx(-10 * np.log10((3 / 255) ** 2), abs=1e-9)
    with pytest.raises(ValueError, match="selects no pixel"):
        psnr(a, b, np.zeros((16, 16), dtype=bool))
    with pytest.raises(ValueError, match="mask shape"):
        psnr(a, b, mask[:8])


def reference_ssim_valid(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Wang et al.'s SSIM with a 2-D 11x11 Gaussian window, 'valid' region only, mean over channels."""
    x = np.arange(-5, 6)
    g = np.exp(-(x[:, None] ** 2 + x[None] ** 2) / (2 * 1.5**2))
    g /= g.sum()
    c1, c2 = 0.01**2, 0.03**2
    maps = []
    for ch in range(a.shape[-1]):
        x, y = a[..., ch], b[..., ch]
        f = lambda z: signal.convolve2d(z, g, mode="valid")  # noqa: E731
        mx, my = f(x), f(y)
        sxx, syy, sxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
        maps.append(((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2)))
    return np.mean(maps, axis=0)


def test_ssim_matches_reference_formula_inside_the_image():
    a = smooth_image()
    b = np.clip(a + RNG.normal(0, 0.05, a.shape), 0, 1)
    ours = ssim_map(a, b)
    np.testing.assert_allclose(ours[5:-5, 5:-5], reference_ssim_valid(a, b), atol=1e-10)
    assert 0.3 < ssim(a, b) < 0.99


def test_ssim_analytic_cases():
    a = smooth_image()
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    x, y = 0.3, 0.7
    expected = (2 * x * y + 0.01**2) / (x**2 + y**2 + 0.01**2)
    assert ssim(np.full((20, 20), x), np.full((20, 20), y)) == pytest.approx(expected, abs=1e-12)
    assert ssim(a, 1 - a) < 0


def test_ssim_mask_excludes_outside_pixels():
    a = smooth_image()
    b = a.copy()
    b[:, 25:] = RNG.uniform(0, 1, b[:, 25:].shape)
    mask = np.zeros(a.shape[:2], dtype=bool)
    mask[:, :25] = True
    assert ssim(a, b, mask) == pytest.approx(1.0, abs=1e-9)
    assert ssim(a, b) < 0.8
    batch = np.stack([a, b])
    assert ssim(batch, np.stack([a, a]), np.stack([mask, mask])) == pytest.approx(1.0, abs=1e-9)


def test_mask_iou():
    a = np.zeros((10, 10), dtype=bool)
    b = np.zeros((10, 10), dtype=bool)
    assert mask_iou(a, b) == 1.0
    a[:, :6] = True
    b[:, 3:] = True
    assert mask_iou(a, b) == pytest.approx(30 / 100)
    assert mask_iou(a, a) == 1.0
    with pytest.raises(ValueError):
        mask_iou(a, b[:5])


def test_edge_band_of_a_step():
    depth = np.full((30, 40), 2.0)
    depth[:, 20:] = 4.0
    edges = depth_edges(depth)
    assert edges[:, 19:21].all() and edges.sum() == 60
    band = edge_band(depth, px=3)
    np.testing.assert_array_equal(band.any(axis=0), (np.arange(40) >= 16) & (np.arange(40) <= 23))
    assert band[:, 16:24].all()


def test_edge_band_ignores_smooth_slopes_and_marks_holes():
    v = np.arange(30)[:, None] * np.ones((1, 40))
    depth = 1.0 / (0.25 + 0.01 * v)  # a ground plane: continuous depth, up to 4 % per row
    assert not depth_edges(depth).any()
    depth[10:12, 5:8] = np.inf
    depth[20, 30] = 0.0
    edges = depth_edges(depth)
    assert edges[10:12, 5:8].all() and edges[20, 30] and edges[9, 5] and edges[21, 30]
    assert not edge_band(depth, px=2)[0].any()
    stacked = edge_band(np.stack([depth, np.ones_like(depth)]), px=2)
    assert stacked[0].any() and not stacked[1].any()


def test_edge_band_is_a_euclidean_distance():
    depth = np.full((21, 21), 2.0)
    depth[10, 10] = np.inf
    edge_pixels = np.argwhere(depth_edges(depth))
    assert len(edge_pixels) == 5  # the hole and its 4 neighbours
    grid = np.argwhere(np.ones((21, 21), dtype=bool))
    dist = np.sqrt(((grid[:, None, :] - edge_pixels[None]) ** 2).sum(-1)).min(axis=1)
    np.testing.assert_array_equal(edge_band(depth, px=3).ravel(), dist <= 3)
