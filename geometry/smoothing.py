"""Optional temporal smoothing of a camera trajectory (off by default; figures in docs/models.md, "Pose smoothing").

Rotations are smoothed on the rotation group, not on quaternion components: for frame i the
Gaussian-weighted mean of ``log(R_iᵀ R_j)`` (rotation vectors, free of the quaternion sign
ambiguity) is mapped back with ``R_i · exp(·)``. Camera centres get the same Gaussian. The sequence
is extended past both ends by point reflection about the end frame (``c₋ₖ = 2c₀ − cₖ`` and
``R₋ₖ = R₀ Rₖᵀ R₀``), so a constant-velocity path (linear centres, constant angular velocity) is
returned unchanged and the first and last cameras are kept exactly: frame 0 stays the world origin.
Cameras are camera-to-world [N, 4, 4], OpenCV axes; sigma is in frames.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def gaussian_weights(sigma: float, radius: int | None = None) -> np.ndarray:
    """Normalised Gaussian taps [-radius..radius] (radius defaults to ceil(3σ))."""
    radius = int(np.ceil(3 * sigma)) if radius is None else radius
    k = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (k / sigma) ** 2)
    return w / w.sum()


def _extend(c2w: np.ndarray, radius: int) -> np.ndarray:
    """Cameras for frames -radius .. N-1+radius (radius < N), past each end point-reflected about it."""
    n = len(c2w)
    idx = np.arange(-radius, n + radius)
    ext = c2w[np.where(idx < 0, -idx, np.where(idx > n - 1, 2 * (n - 1) - idx, idx))]
    for mask, end in ((idx < 0, c2w[0]), (idx > n - 1, c2w[n - 1])):
        r_end, c_end = end[:3, :3], end[:3, 3]
        ext[mask, :3, :3] = r_end @ np.transpose(ext[mask, :3, :3], (0, 2, 1)) @ r_end
        ext[mask, :3, 3] = 2 * c_end - ext[mask, :3, 3]
    return ext


def smooth_poses(c2w: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-smoothed cameras [N, 4, 4] (σ in frames; σ ≤ 0 or N < 3 returns a copy)."""
    c2w = np.asarray(c2w, dtype=np.float64)
    n = len(c2w)
    if sigma <= 0 or n < 3:
        return c2w.copy()
    weights = gaussian_weights(sigma, radius=min(int(np.ceil(3 * sigma)), n - 1))
    radius = len(weights) // 2
    ext = _extend(c2w, radius)
    rots_t = np.transpose(c2w[:, :3, :3], (0, 2, 1))
    tangent = np.zeros((n, 3))
    centre = np.zeros((n, 3))
    for k, w in enumerate(weights):
        window = ext[k:k + n]
        tangent += w * Rotation.from_matrix(rots_t @ window[:, :3, :3]).as_rotvec()
        centre += w * window[:, :3, 3]
    out = c2w.copy()
    out[:, :3, :3] = c2w[:, :3, :3] @ Rotation.from_rotvec(tangent).as_matrix()
    out[:, :3, 3] = centre
    out[[0, -1]] = c2w[[0, -1]]  # fixed points of the reflected filter; kept free of round-off
    return out
