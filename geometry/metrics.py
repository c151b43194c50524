"""Image metrics for render and generation quality: PSNR and SSIM over a mask, mask IoU, depth-edge band.

Images are float in [0, 1] or uint8 (divided by 255), shaped [..., H, W, C] (or [H, W] for one
channel); masks are bool [..., H, W] selecting the pixels that count. Scores pool every selected
pixel of every frame (one MSE for a whole clip, not a mean of per-frame PSNRs).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # 11x11 Gaussian window, as in Wang et al. 2004
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _as_float(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)


def _pair(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images as float [..., H, W, C] and the mask as bool [..., H, W] (all True when None)."""
    a, b = _as_float(a), _as_float(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if mask is None:
        mask = np.ones(a.shape[:-1], dtype=bool)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != a.shape[:-1]:
        raise ValueError(f"mask shape {mask.shape} does not match the images' pixel shape {a.shape[:-1]}")
    if not mask.any():
        raise ValueError("the mask selects no pixel")
    return a, b, mask


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB (peak 1.0) over the masked pixels; inf when they are equal."""
    a, b, mask = _pair(a, b, mask)
    mse = float(np.mean((a[mask] - b[mask]) ** 2))
    return float("inf") if mse == 0 else float(-10.0 * np.log10(mse))


def _window() -> np.ndarray:
    x = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=np.float64)
    g = np.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()


def _blur(x: np.ndarray, h_axis: int) -> np.ndarray:
    """Separable Gaussian over the H and W axes (zero outside the image)."""
    g = _window()
    x = ndimage.correlate1d(x, g, axis=h_axis, mode="constant")
    return ndimage.correlate1d(x, g, axis=h_axis + 1, mode="constant")


def ssim_map(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel SSIM [..., H, W] (mean over channels), Gaussian window sigma 1.5 (11x11), K1 0.01, K2 0.03, L 1.

    Local statistics are mask-weighted (normalised convolution): pixels outside the mask and
    outside the image do not enter any window, so a window is renormalised over what remains.
    Where the whole window lies inside the mask and the image this is the standard formula.
    Values at pixels outside the mask are meaningless.
    """
    a, b, mask = _pair(a, b, mask)
    h_axis = a.ndim - 3
    m = mask[..., None].astype(np.float64)
    weight = np.maximum(_blur(m, h_axis), 1e-12)

    def mean(x: np.ndarray) -> np.ndarray:
        return _blur(m * x, h_axis) / weight

    mu_a, mu_b = mean(a), mean(b)
    var_a = mean(a * a) - mu_a**2
    var_b = mean(b * b) - mu_b**2
    cov = mean(a * b) - mu_a * mu_b
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean(axis=-1)


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM over the masked pixels (see :func:`ssim_map`); 1.0 for identical images."""
    _, _, m = _pair(a, b, mask)
    return float(ssim_map(a, b, mask)[m].mean())


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks of one shape; 1.0 when both are empty."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def depth_edges(depth: np.ndarray, rel_jump: float = 0.05) -> np.ndarray:
    """Bool [..., H, W]: pixels at a depth discontinuity with a 4-neighbour.

    A pixel holds a surface where depth is finite and > 0. Two neighbours form an edge when one has
    a surface and the other not, or when both do and |d1 - d2| > rel_jump * min(d1, d2). Both
    pixels of an edge pair are marked.
    """
    d = np.asarray(depth, dtype=np.float64)
    surface = np.isfinite(d) & (d > 0)
    d = np.where(surface, d, 0.0)
    edges = np.zeros(d.shape, dtype=bool)
    for axis in (-2, -1):
        n = d.shape[axis]
        lo = [slice(None)] * d.ndim
        hi = [slice(None)] * d.ndim
        lo[axis], hi[axis] = slice(0, n - 1), slice(1, n)
        lo, hi = tuple(lo), tuple(hi)
        s_lo, s_hi = surface[lo], surface[hi]
        jump = np.abs(d[lo] - d[hi]) > rel_jump * np.minimum(d[lo], d[hi])
        pair = (s_lo != s_hi) | (s_lo & s_hi & jump)
        edges[lo] |= pair
        edges[hi] |= pair
    return edges


def edge_band(depth: np.ndarray, px: float = 5, rel_jump: float = 0.05) -> np.ndarray:
    """Bool [..., H, W]: pixels within ``px`` (Euclidean, in pixels) of a depth edge (:func:`depth_edges`)."""
    edges = depth_edges(depth, rel_jump)
    flat = edges.reshape(-1, *edges.shape[-2:])
    band = np.stack([ndimage.distance_transform_edt(~e) <= px if e.any() else np.zeros_like(e) for e in flat])
    return band.reshape(edges.shape)
