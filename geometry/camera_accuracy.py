"""Camera accuracy: estimated camera poses against requested ones, up to a similarity transform.

Camera poses are camera-to-world ``c2w`` [N, 4, 4] (OpenCV axes). An estimator (e.g. DA3 on a generated
video) works in its own world frame and scale, so the estimate is first aligned to the request by a
similarity transform x -> s·R·x + t:
  R  the rotation closest (Frobenius) to sum_i R_req_i · R_est_i^T (chordal mean of the per-frame rotation
     offsets; well defined for any path, including pure rotations and straight lines);
  s, t  least squares on the camera centres given R: s = sum <R ĉ_est_i, ĉ_req_i> / sum |ĉ_est_i|^2 with ĉ the
     centres minus their mean (s = 1 when the estimated centres do not move), t = mean_req - s·R·mean_est.
Errors per frame:
  rotation     geodesic angle between R·R_est_i and R_req_i, degrees;
  translation  |s·R·c_est_i + t - c_req_i| divided by the requested path's scale, the RMS distance of its
               centres from their mean (NaN when the requested camera does not move: nothing sets a scale).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Similarity:
    """x -> scale · rotation @ x + translation."""

    scale: float
    rotation: np.ndarray
    translation: np.ndarray

    def apply_c2w(self, c2w: np.ndarray) -> np.ndarray:
        """The poses [N, 4, 4] moved by the transform (rotation composed, centres mapped; no scaling of axes)."""
        out = np.array(c2w, dtype=np.float64)
        out[:, :3, :3] = self.rotation @ out[:, :3, :3]
        out[:, :3, 3] = self.scale * out[:, :3, 3] @ self.rotation.T + self.translation
        return out


@dataclass(frozen=True)
class CameraErrors:
    """Per-frame rotation error (degrees) and scale-normalised translation error, with the alignment used."""

    rotation_deg: np.ndarray
    translation: np.ndarray
    alignment: Similarity
    path_scale: float

    @property
    def mean_rotation_deg(self) -> float:
        return float(self.rotation_deg.mean())

    @property
    def mean_translation(self) -> float:
        return float(self.translation.mean())


def nearest_rotation(m: np.ndarray) -> np.ndarray:
    """The rotation matrix closest to ``m`` [3, 3] in the Frobenius norm (SVD, determinant +1)."""
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def geodesic_deg(ra: np.ndarray, rb: np.ndarray) -> np.ndarray:
    """Angle in degrees of ra_i^T rb_i for rotation stacks [N, 3, 3]."""
    cos = (np.einsum("nij,nij->n", ra, rb) - 1.0) / 2.0
    return np.rad2deg(np.arccos(np.clip(cos, -1.0, 1.0)))


def align_similarity(est_c2w: np.ndarray, req_c2w: np.ndarray) -> Similarity:
    """The similarity transform taking the estimated poses onto the requested ones (see module doc)."""
    est, req = np.asarray(est_c2w, np.float64), np.asarray(req_c2w, np.float64)
    if est.shape != req.shape or est.shape[1:] != (4, 4):
        raise ValueError(f"estimated and requested poses must both be [N, 4, 4], got {est.shape} and {req.shape}")
    R = nearest_rotation(np.einsum("nij,nkj->ik", req[:, :3, :3], est[:, :3, :3]))
    ce, cr = est[:, :3, 3], req[:, :3, 3]
    de, dr = ce - ce.mean(0), cr - cr.mean(0)
    spread = float(np.sum(de * de))
    scale = float(np.sum((de @ R.T) * dr) / spread) if spread > 1e-18 else 1.0
    return Similarity(scale, R, cr.mean(0) - scale * R @ ce.mean(0))


def camera_errors(est_c2w: np.ndarray, req_c2w: np.ndarray) -> CameraErrors:
    """Align ``est_c2w`` to ``req_c2w`` (both [N, 4, 4]) and measure per-frame errors (see module doc)."""
    req = np.asarray(req_c2w, np.float64)
    sim = align_similarity(est_c2w, req)
    aligned = sim.apply_c2w(est_c2w)
    centres = req[:, :3, 3]
    path_scale = float(np.sqrt(np.mean(np.sum((centres - centres.mean(0)) ** 2, axis=1))))
    dist = np.linalg.norm(aligned[:, :3, 3] - centres, axis=1)
    translation = dist / path_scale if path_scale > 1e-12 else np.full(len(dist), np.nan)
    return CameraErrors(geodesic_deg(aligned[:, :3, :3], req[:, :3, :3]), translation, sim, path_scale)
